"""libxl's scheduler parameters (tools/libs/light/libxl_sched.c): credit2's per-domain weight
and cap, its per-pool rate limit; null has no parameters. Errors are logged as libxl logs them
and return libxl's ERROR_* codes."""
from __future__ import annotations

import os
from dataclasses import dataclass

from toolstack.libxl_cpupool import ERROR_FAIL, ERROR_INVAL, Log
from toolstack.xc import XcError

SCHED_CREDIT2, SCHED_NULL = 6, 9
WEIGHT_DEFAULT, CAP_DEFAULT = -1, -1       # LIBXL_DOMAIN_SCHED_PARAM_*_DEFAULT


@dataclass
class DomainSchedParams:
    sched: int
    weight: int = WEIGHT_DEFAULT
    cap: int = CAP_DEFAULT


class Sched:
    def __init__(self, xc, log: Log) -> None:
        self.xc, self.log = xc, log

    def _e(self, e: XcError) -> str:
        return f": {os.strerror(e.errno)}"

    def domain_scheduler(self, domid: int) -> int | None:
        """libxl__domain_scheduler: the scheduler of the domain's cpupool."""
        info = self.xc.domain_getinfo(domid)
        if info is None:
            return None
        pool = self.xc.cpupool_getinfo(info["cpupool"])
        return pool["sched_id"] if pool is not None and pool["cpupool_id"] == info["cpupool"] \
            else None

    def domain_get(self, domid: int) -> DomainSchedParams | int:
        sched = self.domain_scheduler(domid)
        if sched == SCHED_NULL:
            return DomainSchedParams(SCHED_NULL)          # null has nothing to return
        if sched != SCHED_CREDIT2:
            self.log("libxl_sched.c:901", "libxl_domain_sched_params_get", "Unknown scheduler",
                     domid)
            return ERROR_INVAL
        try:
            p = self.xc.sched_credit2_domain_get(domid)
        except XcError as e:
            self.log("libxl_sched.c:408", "sched_credit2_domain_get",
                     f"Getting domain sched credit2{self._e(e)}", domid)
            return ERROR_FAIL
        return DomainSchedParams(SCHED_CREDIT2, p["weight"], p["cap"])

    def domain_set(self, domid: int, want: DomainSchedParams) -> int:
        """libxl_domain_sched_params_set with scinfo.sched given (xl sets credit2)."""
        if want.sched == SCHED_NULL:
            return 0
        info = self.xc.domain_getinfo(domid)
        if info is None:
            self.log("libxl_sched.c:429", "sched_credit2_domain_set",
                     "Getting domain info: No such process", domid)
            return ERROR_INVAL
        try:
            cur = self.xc.sched_credit2_domain_get(domid)
        except XcError as e:
            self.log("libxl_sched.c:435", "sched_credit2_domain_set",
                     f"Getting domain sched credit2{self._e(e)}", domid)
            return ERROR_FAIL
        weight, cap = cur["weight"], cur["cap"]
        if want.weight != WEIGHT_DEFAULT:
            if not 1 <= want.weight <= 65535:
                self.log("libxl_sched.c:441", "sched_credit2_domain_set",
                         "Cpu weight out of range, valid values are within range from 1 to "
                         "65535", domid)
                return ERROR_INVAL
            weight = want.weight
        if want.cap != CAP_DEFAULT:
            most = (info["max_vcpu_id"] + 1) * 100
            if not 0 <= want.cap <= most:
                self.log("libxl_sched.c:451", "sched_credit2_domain_set",
                         f"Cpu cap out of range, valid range is from 0 to {most} for specified "
                         f"number of vcpus", domid)
                return ERROR_INVAL
            cap = want.cap
        try:
            self.xc.sched_credit2_domain_set(domid, weight, cap)
        except XcError as e:
            self.log("libxl_sched.c:461", "sched_credit2_domain_set",
                     f"Setting domain sched credit2{self._e(e)}", domid)
            return ERROR_FAIL
        return 0

    def credit2_params_get(self, poolid: int) -> int | None:
        """The pool's ratelimit_us, or None after libxl's error line."""
        try:
            return int(self.xc.sched_credit2_params_get(poolid)["ratelimit_us"])
        except XcError as e:
            self.log("libxl_sched.c:360", "libxl_sched_credit2_params_get",
                     f"getting Credit2 scheduler parameters{self._e(e)}", None)
            return None

    def credit2_params_set(self, poolid: int, ratelimit_us: int) -> int:
        if ratelimit_us != 0 and not 100 <= ratelimit_us <= 500000:
            self.log("libxl_sched.c:268", "sched_ratelimit_check",
                     "Ratelimit out of range, valid range is from 100 to 500000", None)
            return ERROR_INVAL
        try:
            self.xc.sched_credit2_params_set(poolid, ratelimit_us)
        except XcError as e:
            self.log("libxl_sched.c:387", "libxl_sched_credit2_params_set",
                     f"Setting Credit2 scheduler parameters{self._e(e)}", None)
            return ERROR_FAIL
        return 0
