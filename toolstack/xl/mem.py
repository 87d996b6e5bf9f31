"""xl mem-set, mem-max (xl_mem.c, libxl_mem.c).

mem-set moves the balloon target: libxl writes ~/memory/target (the guest's balloon driver
watches it) and, enforcing, sets the hypervisor's max_mem to target + LIBXL_MAXMEM_CONSTANT.
mem-max sets max_mem (DOMCTL_max_mem) and ~/memory/static-max.
"""
from __future__ import annotations

import os
import uuid as uuidlib

from toolstack.xc import XcError
from toolstack.xl.utils import (ERROR_FAIL, ERROR_INVAL, XTL_ERROR, ctx, err, find_domain,
                                getopts, log, parse_mem_size_kb)

LIBXL_MAXMEM_CONSTANT = 1024     # kB libxl adds to max_mem on Arm (libxl__arch_extra_memory)


def _read_kb(domid: int, node: str, what: str) -> int | None:
    dom = f"/local/domain/{domid}"
    try:
        raw = ctx().xs.read(f"{dom}/memory/{node}").decode()
    except Exception:  # noqa: BLE001
        log(XTL_ERROR, "libxl_mem.c", what, f"Cannot get memory info from {dom}/memory/{node}",
            domid)
        return None
    if not raw.isdigit():
        log(XTL_ERROR, "libxl_mem.c", what, f"Invalid memory {raw} from {dom}/memory/{node}",
            domid)
        return None
    return int(raw)


def set_memory_target(domid: int, target_kb: int) -> int:
    """libxl_set_memory_target(relative=0, enforce=1) for a domU."""
    lx = ctx()
    static_max = _read_kb(domid, "static-max", "libxl_set_memory_target")
    if static_max is None or _read_kb(domid, "target", "libxl_set_memory_target") is None:
        return ERROR_FAIL
    if target_kb > static_max:
        log(XTL_ERROR, "libxl_mem.c", "libxl_set_memory_target",
            "memory_dynamic_max must be less than or equal to memory_static_max", domid)
        return ERROR_INVAL
    if domid == 0:
        log(XTL_ERROR, "libxl_mem.c", "libxl_set_memory_target",
            "dom0's memory is the board's (no balloon driver runs there)", domid)
        return ERROR_INVAL
    try:
        lx.xc.domain_setmaxmem(domid, target_kb + LIBXL_MAXMEM_CONSTANT)
    except XcError as e:
        log(XTL_ERROR, "libxl_mem.c", "libxl_set_memory_target",
            f"xc_domain_setmaxmem memkb={target_kb + LIBXL_MAXMEM_CONSTANT} failed rc=-1: "
            f"{os.strerror(e.errno)}", domid)
        return ERROR_FAIL
    info = lx.xc.domain_getinfo(domid)
    if info is None:
        return ERROR_FAIL

    def write(tx: int) -> None:
        lx.xs.write(f"/local/domain/{domid}/memory/target", str(target_kb), tx)
        lx.xs.write(f"/vm/{uuidlib.UUID(info['handle'])}/memory", str(target_kb // 1024), tx)
    lx.xs.transact(write)
    return 0


def main_mem_set(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "mem-set", 2)
    domid = find_domain(args[0])
    kb = parse_mem_size_kb(args[1])
    if kb == -1:
        err(f"invalid memory size: {args[1]}")
        return 1
    if set_memory_target(domid, kb):
        err(f"cannot set domid {domid} dynamic max memory to : {args[1]}")
        return 1
    return 0


def set_memory_max(domid: int, max_kb: int) -> int:
    """libxl_domain_setmaxmem: not below the current target; max_mem gets the Arm constant."""
    lx = ctx()
    target = _read_kb(domid, "target", "libxl_domain_setmaxmem")
    if target is None:
        return 1
    if max_kb < target:
        log(XTL_ERROR, "libxl_mem.c", "libxl_domain_setmaxmem",
            "memory_static_max must be greater than or or equal to memory_dynamic_max", domid)
        return 1
    try:
        lx.xc.domain_setmaxmem(domid, max_kb + LIBXL_MAXMEM_CONSTANT)
    except XcError as e:
        log(XTL_ERROR, "libxl_mem.c", "libxl_domain_setmaxmem",
            f"xc_domain_setmaxmem domid={domid} memkb={max_kb + LIBXL_MAXMEM_CONSTANT} failed "
            f"rc=-1: {os.strerror(e.errno)}", domid)
        return 1
    lx.xs.write(f"/local/domain/{domid}/memory/static-max", str(max_kb))
    return 0


def main_mem_max(argv: list[str]) -> int:
    _, args = getopts(argv[1:], "", [], "mem-max", 2)
    domid = find_domain(args[0])
    kb = parse_mem_size_kb(args[1])
    if kb == -1:
        err(f"invalid memory size: {args[1]}")
        return 1
    if set_memory_max(domid, kb):
        err(f"cannot set domid {domid} static max memory to : {args[1]}")
        return 1
    return 0
