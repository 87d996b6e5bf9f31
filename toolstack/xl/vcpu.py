"""xl vcpu-list, vcpu-pin, vcpu-set (xl_vcpu.c)."""
from __future__ import annotations

from toolstack.xc import XcError
from toolstack.xl.utils import (ERROR_FAIL, XTL_ERROR, G, ctx, err, find_domain, getopts, log,
                                parse_cpurange, print_bitmap)


def _nr_cpus() -> int:
    return ctx().xc.physinfo()["max_cpu_id"] + 1


def _vcpu_rows(domid: int, nr_cpus: int) -> list[str]:
    """print_domain_vcpuinfo: libxl_list_vcpu, then one row per vCPU. A domain that is gone
    prints nothing (libxl logs the failure)."""
    xc = ctx().xc
    info = xc.domain_getinfo(domid)
    if info is None:
        log(XTL_ERROR, "libxl_domain.c:2002", "libxl_list_vcpu", "Getting infolist", domid)
        return []
    name = ctx().domain_name(domid)
    rows = []
    for n in range(info["max_vcpu_id"] + 1):
        v = xc.vcpu_getinfo(domid, n)
        aff = xc.vcpu_getaffinity(domid, n)
        #          NAME  ID  VCPU: "%-32s %5u %5u"
        row = f"{name:<32} {domid:5d} {n:5d}"
        if not v["online"]:
            row += f"{'-':>5} {'-':>3}-p "           # "%5c %3c%cp "
        else:                                         # "%5u %3c%c- "
            row += f"{v['cpu']:5d} {'r' if v['running'] else '-':>3}" \
                   f"{'b' if v['blocked'] else '-'}- "
        row += f"{v['cpu_time'] / 1e9:9.1f}  "        # "%9.1f  "
        row += f"{print_bitmap(aff['cpumap_hard'], nr_cpus)} / " \
               f"{print_bitmap(aff['cpumap_soft'], nr_cpus)}"
        rows.append(row)
    return rows


def main_vcpu_list(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "vcpu-list", 0)
    nr = _nr_cpus()
    print(f"{'Name':<32} {'ID':>5} {'VCPU':>5} {'CPU':>5} {'State':>5} {'Time(s)':>9} "
          "Affinity (Hard / Soft)")
    if not args:
        domids = [i["domain"] for i in ctx().xc.domain_getinfolist()]
    else:
        domids = []
    for d in domids:
        for row in _vcpu_rows(d, nr):
            print(row)
    for spec in args:                       # in argument order, each looked up as it comes
        for row in _vcpu_rows(find_domain(spec), nr):
            print(row, flush=True)
    return 0


def main_vcpu_pin(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "fi", ["force", "ignore-global-affinity-masks"],
                         "vcpu-pin", 3)
    force = any(o in ("-f", "--force") for o, _ in opts)
    domid = find_domain(args[0])
    vcpu, hard_str = args[1], args[2]
    soft_str = args[3] if len(args) > 3 else None
    import re
    m = re.match(r"\s*([+-]?\d+)", vcpu)
    vcpuid = int(m.group(1)) if m else -1
    if m is None or vcpuid < 0:
        if vcpu != "all":
            err(f"Error: Invalid argument {vcpu} as VCPU.")
            return 1
        if force:
            err("Error: --force and 'all' as VCPU not allowed.")
            return 1
        vcpuid = -1
    nr = _nr_cpus()
    hard = soft = None
    if hard_str != "-":
        hard = parse_cpurange(hard_str, nr)
        if hard is None:
            return 1
    if soft_str is not None and soft_str != "-":
        soft = parse_cpurange(soft_str, nr)
        if soft is None:
            return 1
    if G.dryrun_only:
        line = "cpumap: " + (print_bitmap(hard, nr) if hard is not None else "-")
        if soft is not None:
            line += " " + print_bitmap(soft, nr)
        print(line)
        return 0
    xc = ctx().xc
    if vcpuid == -1:
        info = xc.domain_getinfo(domid)
        if info is None:
            err("libxl_list_vcpu failed.")
            return 1
        failed = False
        for n in range(info["max_vcpu_id"] + 1):
            if not _setaffinity(domid, n, hard, soft):
                failed = True
        if failed:
            err("Could not set affinity.")
        return 0
    if not _setaffinity(domid, vcpuid, hard, soft):
        err(f"Could not set affinity for vcpu `{vcpuid}'.")
        return 1
    return 0


def _setaffinity(domid: int, vcpu: int, hard: set[int] | None, soft: set[int] | None) -> bool:
    """libxl_set_vcpuaffinity: DOMCTL_setvcpuaffinity with the maps given (None: unchanged)."""
    try:
        ctx().xc.vcpu_setaffinity(domid, vcpu, sorted(hard) if hard is not None else None,
                                  sorted(soft) if soft is not None else None)
    except XcError as e:
        import os
        log(XTL_ERROR, "libxl_sched.c:96", "libxl_set_vcpuaffinity",
            f"setting vcpu affinity: {os.strerror(e.errno)}", domid)
        return False
    return True


def main_vcpu_set(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "i", ["ignore-host"], "vcpu-set", 2)
    check_host = not any(o in ("-i", "--ignore-host") for o, _ in opts)
    domid = find_domain(args[0])
    import re
    m = re.match(r"\s*\+?(\d+)", args[1])
    if m is None or int(m.group(1)) > 2**31 - 1:
        err("Error: Invalid argument.")
        return 1
    want = int(m.group(1))
    lx = ctx()
    info = lx.xc.domain_getinfo(domid)
    if info is None:
        err(f"Domain {domid} does not exist.")
        return 1
    if check_host:
        host = _nr_cpus()
        if want > info["nr_online_vcpus"] and want > host:
            err(f"You are overcommmitting! You have {host} physical CPUs and want {want} "
                f"vCPUs! Aborting, use --ignore-host to continue")
            return 1
    rc = set_vcpuonline(domid, want, info["max_vcpu_id"])
    if rc:
        err(f"libxl_set_vcpuonline failed domid={domid} max_vcpus={want}, rc: {rc}")
        return 1
    return 0


def set_vcpuonline(domid: int, want: int, max_vcpu_id: int) -> int:
    """libxl_set_vcpuonline for a PV/PVH guest: vCPUs 0..want-1 "online", the others
    "offline", in ~/cpu/N/availability (one transaction); the guest's own code acts on it."""
    if want == 0:
        log(XTL_ERROR, "libxl_domain.c:1867", "libxl_set_vcpuonline", "Requested 0 VCPUs!",
            domid)
        return ERROR_FAIL
    if want > max_vcpu_id + 1:
        log(XTL_ERROR, "libxl_domain.c:1873", "libxl_set_vcpuonline",
            f"Requested {want} VCPUs, however maxcpus is {max_vcpu_id + 1}!", domid)
        return ERROR_FAIL
    xs = ctx().xs
    dom = f"/local/domain/{domid}"

    def write(tx: int) -> None:
        for n in range(max_vcpu_id + 1):
            xs.write(f"{dom}/cpu/{n}/availability", "online" if n < want else "offline", tx)
    xs.transact(write)
    return 0
