"""xl list, vm-list, info, domid, domname, uptime, dmesg (xl_info.c)."""
from __future__ import annotations

import json
import platform
import time
from typing import Any

from toolstack.libxl_cpupool import scheduler_to_string
from toolstack.xl.utils import (ctx, domid_to_name, domids_to_names, err, fail, find_domain,
                                getopts, help_, print_bitmap)

SHUTDOWN_REASON_LETTERS = "-rscwS"
# dominfo flags (domctl.h XEN_DOMINF_*)
DYING, SHUTDOWN, PAUSED, BLOCKED, RUNNING = 1 << 0, 1 << 2, 1 << 3, 1 << 4, 1 << 5


# -- list ---------------------------------------------------------------------------------------

def main_list(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "lvZcn", ["long", "verbose", "context", "cpupool", "numa"],
                         "list", 0)
    long_names = {"--long": "l", "--verbose": "v", "--context": "Z", "--cpupool": "c",
                  "--numa": "n"}
    flags = {long_names.get(o, o[1:]) for o, _ in opts}
    details, verbose, context = "l" in flags, "v" in flags, "Z" in flags
    cpupool, numa = "c" in flags, "n" in flags
    lx = ctx()
    if not args:
        infos = lx.xc.domain_getinfolist()
    elif len(args) == 1:
        domid = find_domain(args[0])
        info = lx.xc.domain_getinfo(domid)
        if info is None:
            raise fail(f"Error: Domain '{args[0]}' does not exist.")
        infos = [info]
    else:
        help_("list")
        return 1
    if details:
        list_domains_details(infos)
    else:
        list_domains(infos, verbose=verbose, context=context, cpupool=cpupool, numa=numa)
    return 0


def pool_name(poolid: int) -> str | None:
    try:
        return ctx().xs.read(f"/local/pool/{poolid}/name").decode()
    except Exception:  # noqa: BLE001 - no such node
        return None


def list_domains(infos: list[dict[str, Any]], *, verbose: bool = False, context: bool = False,
                 claim: bool = False, cpupool: bool = False, numa: bool = False) -> None:
    import uuid as uuidlib
    head = "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    if verbose:
        head += "   UUID                            Reason-Code\tSecurity Label"
    if context and not verbose:
        head += "   Security Label"
    if claim:
        head += "  Claimed"
    if cpupool:
        head += "         Cpupool"
    nr_nodes = 1
    if numa:
        nr_nodes = ctx().xc.physinfo()["nr_nodes"]
        head += " NODE Affinity"
    print(head)
    names = domids_to_names([i["domain"] for i in infos])
    for i in infos:
        f = i["flags"]
        shutdown = bool(f & SHUTDOWN)
        reason = i.get("shutdown_reason", 0) if shutdown else 0
        name = names[i["domain"]] or "(null)"
        mem_mb = (i["tot_pages"] * 4 + i.get("outstanding_pages", 0) * 4) // 1024
        letters = ("r" if f & RUNNING else "-") + ("b" if f & BLOCKED else "-") + \
                  ("p" if f & PAUSED else "-") + ("s" if shutdown else "-") + \
                  (SHUTDOWN_REASON_LETTERS[reason] if 0 <= reason < 6 else "?") + \
                  ("d" if f & DYING else "-")
        row = (f"{name:<40} {i['domain']:5d} {mem_mb:5d} {i['nr_online_vcpus']:5d}     "
               f"{letters}  {i['cpu_time'] / 1e9:8.1f}")
        if verbose:
            row += f" {uuidlib.UUID(i['handle'])}"
            row += f" {reason:8x}" if shutdown else f" {'-':>8}"
        if claim:
            row += f" {i.get('outstanding_pages', 0) * 4 // 1024:5d}"
        if verbose or context:
            row += f" {'-':>16}"          # no XSM/FLASK label: libxl prints "-"
        if cpupool:                          # libxl_cpupoolid_to_name, "%16s"
            row += f"{pool_name(i.get('cpupool', 0)) or '(null)':>16}"
        if numa:
            row += " " + print_bitmap(set(range(nr_nodes)), nr_nodes)
        print(row)


def retrieve_domain_configuration(domid: int) -> dict[str, Any] | None:
    """libxl_retrieve_domain_configuration: the stored config brought up to date with what
    changed since creation (the name, the memory target and maximum, the online vCPUs)."""
    from toolstack.libxl import userdata_path
    try:
        config = json.loads(userdata_path(domid).read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None                     # dom0, or a domain xl did not create: no config
    lx = ctx()
    dom = f"/local/domain/{domid}"
    name = domid_to_name(domid)
    if name is not None:
        config["c_info"]["name"] = name
    info = lx.xc.domain_getinfo(domid)
    if info is not None:
        import uuid as uuidlib
        config["c_info"]["uuid"] = str(uuidlib.UUID(info["handle"]))
    b = config.setdefault("b_info", {})
    for key, node in (("target_memkb", "memory/target"), ("max_memkb", "memory/static-max")):
        try:
            b[key] = int(lx.xs.read(f"{dom}/{node}"))
        except Exception:  # noqa: BLE001 - node missing: keep the stored value
            pass
    online = []
    for n in range(int(b.get("max_vcpus", 1))):
        try:
            if lx.xs.read(f"{dom}/cpu/{n}/availability") == b"online":
                online.append(n)
        except Exception:  # noqa: BLE001
            pass
    if online:
        b["avail_vcpus"] = online
    return _reorder(config)


_B_ORDER = ("max_vcpus", "avail_vcpus", "vcpu_hard_affinity", "vcpu_soft_affinity",
            "max_memkb", "target_memkb")


def _reorder(config: dict[str, Any]) -> dict[str, Any]:
    """Keep b_info's keys in the IDL's order after the updates above added some."""
    b = config.get("b_info", {})
    first = {k: b[k] for k in _B_ORDER if k in b}
    config["b_info"] = {**first, **{k: v for k, v in b.items() if k not in first}}
    return config


def list_domains_details(infos: list[dict[str, Any]]) -> None:
    from toolstack.libxl_json import yajl_dumps
    out = []
    for i in infos:
        config = retrieve_domain_configuration(i["domain"])
        if config is None:
            continue
        out.append({"domid": i["domain"], "config": config})
    print(yajl_dumps(out))          # puts() after yajl's own final newline


def main_vm_list(argv: list[str]) -> int:
    getopts(argv[1:], "", [], "vm-list", 0)
    import uuid as uuidlib
    print("UUID                                  ID    name")
    for i in ctx().xc.domain_getinfolist():
        if i["domain"] == 0 or i["flags"] & DYING:
            continue
        name = domid_to_name(i["domain"]) or "(null)"
        print(f"{uuidlib.UUID(i['handle'])}  {i['domain']}    {name:<30}")
    return 0


# -- info -------------------------------------------------------------------------------------

class _Out:
    """maybe_printf: everything, or with `xl info NAME` the values of the lines whose text
    starts with NAME (a prefix match), without their label."""

    def __init__(self, name: str | None) -> None:
        self.name = name

    def __call__(self, line: str) -> None:
        if self.name is None:
            print(line)
            return
        if line.startswith(self.name):
            k = line.find(":")
            if k >= 0 and line[k + 1:k + 2] == " ":
                print(line[k + 2:])


def main_info(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "nx", ["numa", "xenstore"], "info", 0)
    numa = any(o in ("-n", "--numa") for o, _ in opts)
    xs = any(o in ("-x", "--xenstore") for o, _ in opts)
    out = _Out(args[0] if args and not numa else None)
    lx = ctx()
    p, v = lx.xc.physinfo(), lx.xc.version()
    u = platform.uname()
    for k, val in (("host", u.node), ("release", u.release), ("version", u.version),
                   ("machine", "armv7l")):
        out(f"{k:<23}: {val}")
    out(f"{'nr_cpus':<23}: {p['nr_cpus']}")
    out(f"{'max_cpu_id':<23}: {p['max_cpu_id']}")
    out(f"{'nr_nodes':<23}: {p['nr_nodes']}")
    out(f"{'cores_per_socket':<23}: {p['cores_per_socket']}")
    out(f"{'threads_per_core':<23}: {p['threads_per_core']}")
    out(f"{'cpu_mhz':<23}: {p['cpu_khz'] // 1000}.{p['cpu_khz'] % 1000:03d}")
    hw = (list(p["hw_cap"]) + [0] * 8)[:8]
    out(f"{'hw_caps':<23}: " + ":".join(f"{c:08x}" for c in hw))
    out(f"{'virt_caps':<23}:" + "".join(f" {c}" for c in p["capabilities"]))
    # arch_capabilities_arm_sve: the SVE vector length; an arm32 board has no SVE.
    out(f"{'arm_sve_vector_length':<23}: {p.get('arm_sve_vl', 0)}")
    per_mb = (1 << 20) // 4096
    outstanding = p.get("outstanding_pages", 0)
    out(f"{'total_memory':<23}: {p['total_pages'] // per_mb}")
    out(f"{'free_memory':<23}: {(p['free_pages'] - outstanding) // per_mb}")
    out(f"{'sharing_freed_memory':<23}: 0")
    out(f"{'sharing_used_memory':<23}: 0")
    out(f"{'outstanding_claims':<23}: {outstanding // per_mb}")
    out(f"{'free_cpus':<23}: {len(lx.xc.cpupool_freeinfo())}")   # in no cpupool
    if numa:
        _topology(p)
    out(f"{'xen_major':<23}: {v['major']}")
    out(f"{'xen_minor':<23}: {v['minor']}")
    out(f"{'xen_extra':<23}: {v['extra']}")
    out(f"{'xen_version':<23}: {v['major']}.{v['minor']}{v['extra']}")
    out(f"{'xen_caps':<23}: {v['capabilities'].strip()}")
    out(f"{'xen_scheduler':<23}: {scheduler_to_string(lx.xc.sched_id())}")
    out(f"{'xen_pagesize':<23}: 4096")
    out(f"{'platform_params':<23}: virt_start=0x0")
    out(f"{'xen_changeset':<23}: {v['changeset']}")
    out(f"{'xen_commandline':<23}: {v['commandline']}")
    out(f"{'cc_compiler':<23}: {v['compiler']}")
    out(f"{'cc_compile_by':<23}: {v['compile_by']}")
    out(f"{'cc_compile_domain':<23}: {v['compile_domain']}")
    out(f"{'cc_compile_date':<23}: {v['compile_date']}")
    out(f"{'build_id':<23}: {v.get('build_id', '')}")
    if xs:
        out(f"{'xenstore_features':<23}: 0x{_xenstore_features():08x}")
    out(f"{'xend_config_format':<23}: 4")
    return 0


def _topology(p: dict[str, Any]) -> None:
    """output_topologyinfo + output_numainfo: one node holding every pCPU and all memory
    (a board without NUMA), no PCI devices."""
    print("cpu_topology           :")
    print("cpu:    core    socket     node")
    cores = max(p["cores_per_socket"], 1)
    for cpu in range(p["max_cpu_id"] + 1):
        print(f"{cpu:3d}:    {cpu % cores:4d}     {cpu // cores:4d}     {0:4d}")
    print("device topology        :")
    print("device           node")
    print("No device topology data available")
    print("numa_info              :")
    print("node:    memsize    memfree    distances")
    size, free = p["total_pages"] * 4096 >> 20, p["free_pages"] * 4096 >> 20
    print(f"{0:4d}:    {size:6d}     {free:6d}      10")


def _xenstore_features() -> int:
    """xs_get_features_supported; 0 (errors ignored, as xl does) when xenstored has none."""
    try:
        return int(ctx().xs.get_features()) if hasattr(ctx().xs, "get_features") else 0
    except Exception:  # noqa: BLE001
        return 0


# -- domid, domname ----------------------------------------------------------------------------

def main_domid(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "domid", 1)
    name = args[0]
    for i in ctx().list_domains():
        if i.name == name:
            print(i.domid)
            return 0
    err(f"Can't get domid of domain name '{name}', maybe this domain does not exist.")
    return 1


def main_domname(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "domname", 1)
    text = args[0]
    import re
    m = re.match(r"\s*([+-]?\d+)", text)
    if m is None:
        err("Invalid domain id.\n")
        return 1
    domid = int(m.group(1)) & 0xFFFFFFFF
    name = domid_to_name(domid) if ctx().xc.domain_getinfo(domid) is not None else None
    if name is None:
        err(f"Can't get domain name of domain id '{domid}', maybe this domain does not exist.")
        return 1
    print(name)
    return 0


# -- uptime -------------------------------------------------------------------------------------

def uptime_to_string(uptime: int, short: bool) -> str:
    day, rest = divmod(int(uptime), 86400)
    hour, rest = divmod(rest, 3600)
    minute, sec = divmod(rest, 60)
    days = f"{day} days, " if day > 1 else f"{day} day, " if day == 1 else ""
    return f"{days}{hour:2d}:{minute:02d}" if short else f"{days}{hour:2d}:{minute:02d}:{sec:02d}"


def _start_time(domid: int) -> int | None:
    """libxl_vm_get_start_time: /vm/UUID/start_time, written when the domain was built."""
    lx = ctx()
    try:
        vm = lx.xs.read(f"/local/domain/{domid}/vm").decode()
        return int(float(lx.xs.read(f"{vm}/start_time")))
    except Exception:  # noqa: BLE001
        return None


def _dom0_uptime() -> int:
    """Dom0's uptime is the board's: dom0 started with it (xl reads dom0's /proc/uptime)."""
    try:
        return int(time.time() - _board_start())
    except OSError:
        raise fail("Can not get Dom0 uptime.") from None


def _board_start() -> float:
    """When the board came up: it writes board.pid once its services run."""
    from xenpy.rundir import run_dir
    return (run_dir() / "board.pid").stat().st_mtime


def _print_one(domid: int, uptime: int, short: bool, now: float) -> None:
    name = domid_to_name(domid) or "(null)"
    if short:
        print(f" {time.strftime('%H:%M:%S', time.localtime(now))} up "
              f"{uptime_to_string(uptime, True)}, {name} ({domid})")
    else:
        print(f"{name:<33} {domid:4d} {uptime_to_string(uptime, False)}")


def main_uptime(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "s", [], "uptime", 0)
    short = any(o == "-s" for o, _ in opts)
    doms = [find_domain(a) for a in args]
    now = time.time()
    if not short:
        print(f"{'Name':<33} {'ID':>4} Uptime")
    if not doms:
        doms = [0] + [i["domain"] for i in ctx().xc.domain_getinfolist()
                      if i["domain"] != 0 and not i["flags"] & DYING]
    for d in doms:
        if d == 0:
            _print_one(0, _dom0_uptime(), short, now)
            continue
        start = _start_time(d)
        if start is None:
            continue
        _print_one(d, int(now - start), short, now)
    return 0


# -- dmesg ---------------------------------------------------------------------------------------

def main_dmesg(argv: list[str]) -> int:
    opts, _ = getopts(argv[1:], "c", ["clear"], "dmesg", 0)
    clear = any(o in ("-c", "--clear") for o, _ in opts)
    for line in ctx().xc.readconsole(clear=clear):
        print(line)
    return 0

