"""libxl's cpupools (tools/libs/light/libxl_cpupool.c, the pool parts of libxl_utils.c).

The hypervisor knows pools by id (XEN_SYSCTL_cpupool_op); their names live in XenStore at
/local/pool/N/name, written by xen-init-dom0 for the pools that exist at boot (Pool-0) and by
libxl when it creates one. A failure is logged as libxl logs it and returns libxl's ERROR_FAIL.
"""
from __future__ import annotations

import os
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, Callable

from toolstack.xc import XcError
from xenpy.public.sysctl import XEN_SYSCTL_CPUPOOL_PAR_ANY

ERROR_FAIL, ERROR_INVAL = -3, -6

# libxl_scheduler (libxl_types.idl): the values are Xen's XEN_SCHEDULER_* ids.
SCHEDULERS = {0: "unknown", 4: "sedf", 5: "credit", 6: "credit2", 7: "arinc653", 8: "rtds",
              9: "null"}

Log = Callable[[str, str, str, "int | None"], None]     # (where, func, message, domid)


def scheduler_to_string(sched: int) -> str:
    return SCHEDULERS.get(sched, "(null)")


def scheduler_from_string(text: str) -> int | None:
    """libxl_scheduler_from_string: case-insensitive, as libxl__enum_from_string."""
    for k, v in SCHEDULERS.items():
        if v == text.lower():
            return k
    return None


@dataclass
class CpupoolInfo:
    poolid: int
    pool_name: str
    sched: int
    n_dom: int
    cpumap: list[int] = field(default_factory=list)


def _errno_suffix(e: XcError) -> str:
    return f": {os.strerror(e.errno)}"


class Cpupools:
    """libxl's pool calls over one context's xc and xs; `log(where, func, msg, domid)` prints an
    error line as xl's logger does."""

    def __init__(self, xc: Any, xs: Any, log: Log) -> None:
        self.xc, self.xs, self.log = xc, xs, log

    # -- names (libxl_utils.c) ------------------------------------------------------------------

    def cpupoolid_to_name(self, poolid: int) -> str | None:
        try:
            return self.xs.read(f"/local/pool/{poolid}/name").decode()
        except Exception:  # noqa: BLE001 - no such node: no such pool for libxl
            return None

    def cpupoolid_is_valid(self, poolid: int) -> bool:
        return self.cpupoolid_to_name(poolid) is not None

    def name_to_cpupoolid(self, name: str) -> int | None:
        for p in self.list_cpupool():
            if p.pool_name == name:
                return p.poolid
        return None

    def qualifier_to_cpupoolid(self, p: str) -> int | None:
        """All digits is an id (not checked: the caller asks cpupoolid_is_valid), else a name."""
        if p.isdigit():
            return int(p)
        return self.name_to_cpupoolid(p)

    # -- info -----------------------------------------------------------------------------------

    def _info(self, poolid: int, exact: bool) -> CpupoolInfo | None:
        try:
            raw = self.xc.cpupool_getinfo(poolid)
        except XcError as e:
            self.log("libxl_cpupool.c:36", "cpupool_info",
                     f"failed to get info for cpupool{poolid}{_errno_suffix(e)}", None)
            return None
        if raw is None:
            if exact:
                self.log("libxl_cpupool.c:36", "cpupool_info",
                         f"failed to get info for cpupool{poolid}: No such file or directory",
                         None)
            return None
        if exact and raw["cpupool_id"] != poolid:
            self.log("libxl_cpupool.c:42", "cpupool_info",
                     f"got info for cpupool{raw['cpupool_id']}, wanted cpupool{poolid}\n", None)
            return None
        name = self.cpupoolid_to_name(raw["cpupool_id"])
        if name is None:
            return None
        return CpupoolInfo(raw["cpupool_id"], name, raw["sched_id"], raw["n_dom"],
                           sorted(raw["cpumap"]))

    def info(self, poolid: int) -> CpupoolInfo | None:
        return self._info(poolid, True)

    def list_cpupool(self) -> list[CpupoolInfo]:
        """libxl_list_cpupool: every pool, in id order (a pool without a name ends the list, as
        cpupool_info failing does in libxl)."""
        out, poolid = [], 0
        while (p := self._info(poolid, False)) is not None:
            out.append(p)
            poolid = p.poolid + 1
        return out

    def get_freecpus(self) -> set[int]:
        return set(self.xc.cpupool_freeinfo())

    # -- changes --------------------------------------------------------------------------------

    def create(self, name: str, sched: int, cpus: set[int], uuid: uuidlib.UUID,
               poolid: int = XEN_SYSCTL_CPUPOOL_PAR_ANY) -> int | None:
        """libxl_cpupool_create: the pool, its CPUs, then its XenStore nodes. The new id, or
        None after libxl's error line."""
        try:
            poolid = self.xc.cpupool_create(poolid, sched)
        except XcError:
            self.log("libxl_cpupool.c:157", "libxl_cpupool_create", "Could not create cpupool",
                     None)
            return None
        for cpu in sorted(cpus):
            try:
                self.xc.cpupool_addcpu(poolid, cpu)
            except XcError:
                self.log("libxl_cpupool.c:167", "libxl_cpupool_create",
                         "Error moving cpu to cpupool", None)
                self.destroy(poolid)
                return None

        def write(tx: int) -> None:
            self.xs.mkdir(f"/local/pool/{poolid}", tx)
            self.xs.write(f"/local/pool/{poolid}/uuid", str(uuid), tx)
            self.xs.write(f"/local/pool/{poolid}/name", name, tx)
        self.xs.transact(write)
        return poolid

    def destroy(self, poolid: int) -> int:
        """libxl_cpupool_destroy: its CPUs go back to free, then the pool and its nodes."""
        raw = self.xc.cpupool_getinfo(poolid)
        if raw is None or raw["cpupool_id"] != poolid or raw["n_dom"]:
            return ERROR_INVAL
        for cpu in sorted(raw["cpumap"]):
            try:
                self.xc.cpupool_removecpu(poolid, cpu)
            except XcError:
                self.log("libxl_cpupool.c:219", "libxl_cpupool_destroy",
                         "Error removing cpu from cpupool", None)
                return ERROR_FAIL
        try:
            self.xc.cpupool_destroy(poolid)
        except XcError:
            self.log("libxl_cpupool.c:227", "libxl_cpupool_destroy", "Could not destroy cpupool",
                     None)
            return ERROR_FAIL
        self.xs.transact(lambda tx: self.xs.rm(f"/local/pool/{poolid}", tx))
        return 0

    def rename(self, name: str, poolid: int) -> int:
        raw = self.xc.cpupool_getinfo(poolid)
        if raw is None or raw["cpupool_id"] != poolid:
            return ERROR_INVAL
        self.xs.transact(lambda tx: self.xs.write(f"/local/pool/{poolid}/name", name, tx))
        return 0

    def cpuadd(self, poolid: int, cpu: int) -> int:
        try:
            self.xc.cpupool_addcpu(poolid, cpu)
        except XcError as e:
            self.log("libxl_cpupool.c:302", "libxl_cpupool_cpuadd",
                     f"Error moving cpu {cpu} to cpupool{_errno_suffix(e)}", None)
            return ERROR_FAIL
        return 0

    def cpuadd_cpumap(self, poolid: int, cpus: set[int]) -> int:
        ok = sum(self.cpuadd(poolid, c) == 0 for c in sorted(cpus))
        return 0 if ok == len(cpus) else ERROR_FAIL

    def cpuremove(self, poolid: int, cpu: int) -> int:
        try:
            self.xc.cpupool_removecpu(poolid, cpu)
        except XcError as e:
            self.log("libxl_cpupool.c:365", "libxl_cpupool_cpuremove",
                     f"Error removing cpu {cpu} from cpupool{_errno_suffix(e)}", None)
            return ERROR_FAIL
        return 0

    def cpuremove_cpumap(self, poolid: int, cpus: set[int]) -> int:
        ok = sum(self.cpuremove(poolid, c) == 0 for c in sorted(cpus))
        return 0 if ok == len(cpus) else ERROR_FAIL

    def movedomain(self, poolid: int, domid: int) -> int:
        try:
            self.xc.cpupool_movedomain(poolid, domid)
        except XcError:
            self.log("libxl_cpupool.c:437", "libxl_cpupool_movedomain",
                     "Error moving domain to cpupool", domid)
            return ERROR_FAIL
        return 0
