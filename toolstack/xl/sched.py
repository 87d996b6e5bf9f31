"""xl sched-credit2 (xl_sched.c), and sched-null, xenpy's own view of the null scheduler's
pCPU assignments (Xen's xl has no sched-null: null has no parameters; Xen shows the same facts
on the console with debug key 'r')."""
from __future__ import annotations

import re

from toolstack.libxl_cpupool import scheduler_to_string
from toolstack.libxl_sched import SCHED_CREDIT2, SCHED_NULL, DomainSchedParams, Sched
from toolstack.xl.cpupool import _poolid, pools
from toolstack.xl.utils import XTL_ERROR, ctx, err, find_domain, getopts, log


def _sched() -> Sched:
    return Sched(ctx().xc, lambda where, func, msg, domid: log(XTL_ERROR, where, func, msg,
                                                                domid))


def _strtol(text: str) -> int:
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def _domain_get(sched: int, domid: int) -> DomainSchedParams | None:
    """sched_domain_get: the parameters, if the domain's pool runs `sched`."""
    got = _sched().domain_get(domid)
    if isinstance(got, int):
        err("libxl_domain_sched_params_get failed.")
        return None
    if got.sched != sched:
        err(f"libxl_domain_sched_params_get returned {scheduler_to_string(got.sched)} not "
            f"{scheduler_to_string(sched)}.")
        return None
    return got


def credit2_domain_output(domid: int) -> int:
    if domid < 0:
        print(f"{'Name':<33} {'ID':>4} {'Weight':>6} {'Cap':>4}")
        return 0
    p = _domain_get(SCHED_CREDIT2, domid)
    if p is None:
        return 1
    #      "%-33s %4d %6d %4d"
    print(f"{ctx().domain_name(domid):<33} {domid:4d} {p.weight:6d} {p.cap:4d}")
    return 0


def credit2_pool_output(poolid: int) -> int:
    name = pools().cpupoolid_to_name(poolid) or "(null)"
    r = _sched().credit2_params_get(poolid)
    print(f"Cpupool {name}: [sched params unavailable]" if r is None else
          f"Cpupool {name}: ratelimit={r}us")
    return 0


def sched_domain_output(sched: int, output, pooloutput, cpupool: str | None) -> int:
    """For every pool running `sched` (or the one named): its line, then its domains."""
    p = pools()
    poolid = None
    if cpupool is not None:
        poolid = _poolid(p, cpupool)
        if poolid is None:
            err(f"unknown cpupool '{cpupool}'")
            return 1
    infos = ctx().xc.domain_getinfolist()
    for pool in p.list_cpupool():
        if pool.sched != sched or (poolid is not None and pool.poolid != poolid):
            continue
        pooloutput(pool.poolid)
        output(-1)
        for info in infos:
            if info["cpupool"] == pool.poolid and output(info["domain"]):
                break
    return 0


def main_sched_credit2(argv: list[str]) -> int:
    opts, _ = getopts(argv[1:], "d:w:c:p:r:s", ["domain=", "weight=", "cap=", "schedparam",
                                                "ratelimit_us=", "cpupool="],
                      "sched-credit2", 0)
    dom = cpupool = None
    weight = cap = ratelimit = 0
    opt_w = opt_c = opt_s = opt_r = False
    for o, a in opts:
        if o in ("-d", "--domain"):
            dom = a
        elif o in ("-w", "--weight"):
            weight, opt_w = _strtol(a), True
        elif o in ("-c", "--cap"):
            cap, opt_c = _strtol(a), True
        elif o in ("-s", "--schedparam"):
            opt_s = True
        elif o in ("-r", "--ratelimit_us"):
            ratelimit, opt_r = _strtol(a), True
        elif o in ("-p", "--cpupool"):
            cpupool = a
    if cpupool is not None and (dom is not None or opt_w or opt_c):
        err("Specifying a cpupool is not allowed with other options.")
        return 1
    if dom is None and (opt_w or opt_c):
        err("Must specify a domain.")
        return 1
    if opt_s:
        poolid = 0
        if cpupool is not None:
            found = _poolid(pools(), cpupool)
            if found is None:
                err(f"unknown cpupool '{cpupool}'")
                return 1
            poolid = found
        if not opt_r:
            return credit2_pool_output(poolid)
        return 1 if _sched().credit2_params_set(poolid, ratelimit) else 0
    if dom is None:
        return sched_domain_output(SCHED_CREDIT2, credit2_domain_output, credit2_pool_output,
                                   cpupool)
    domid = find_domain(dom)
    if not opt_w and not opt_c:
        credit2_domain_output(-1)
        return 1 if credit2_domain_output(domid) else 0
    want = DomainSchedParams(SCHED_CREDIT2)
    if opt_w:
        want.weight = weight
    if opt_c:
        want.cap = cap
    if _sched().domain_set(domid, want):
        err("libxl_domain_sched_params_set failed.")
        return 1
    return 0


# -- sched-null (xenpy's own) ------------------------------------------------------------------

def null_pool_output(poolid: int) -> int:
    print(f"Cpupool {pools().cpupoolid_to_name(poolid) or '(null)'}:")
    return 0


def null_domain_output(domid: int) -> int:
    """One row per vCPU: the pCPU it owns, or "-" while it waits for one (the waitqueue)."""
    if domid < 0:
        print(f"{'Name':<33} {'ID':>4} {'VCPU':>4} {'CPU':>4}")
        return 0
    xc = ctx().xc
    info = xc.domain_getinfo(domid)
    if info is None:
        return 1
    name = ctx().domain_name(domid)
    for n in range(info["max_vcpu_id"] + 1):
        cpu = xc.vcpu_getinfo(domid, n).get("xenpy_assigned")
        print(f"{name:<33} {domid:4d} {n:4d} {cpu if cpu is not None else '-':>4}")
    return 0


def main_sched_null(argv: list[str]) -> int:
    opts, _ = getopts(argv[1:], "p:", ["cpupool="], "sched-null", 0)
    cpupool = next((a for o, a in opts if o in ("-p", "--cpupool")), None)
    return sched_domain_output(SCHED_NULL, null_domain_output, null_pool_output, cpupool)
