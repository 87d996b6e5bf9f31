"""The hypercall table: one number, one handler (Xen's hypercall-defs.c and arm/traps.c dispatch).

Handlers take the calling vCPU and the five argument registers and return a value for r0 (a
negative errno on error). A guest's bad argument never raises out of a handler: GuestFault becomes
-EFAULT here, and an unexpected exception is logged and answered with -EINVAL rather than taking
the board down. The trap writes r0 and PC+4 after the handler returns (one register write), so a
handler never moves the calling vCPU's PC itself; it stops the vCPU instead (block, yield, off).
"""
from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Callable

from xenpy import trace
from xenpy.arch.arm.guestcopy import GuestFault
from xenpy.public import errno
from xenpy.public.xen import HYPERCALL_NAMES

if TYPE_CHECKING:
    from xenpy.common.domain import Vcpu

Handler = Callable[["Vcpu", tuple[int, ...]], int]
HYPERCALLS: dict[int, Handler] = {}


def hypercall(nr: int) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        assert nr not in HYPERCALLS, f"hypercall {nr} registered twice"
        HYPERCALLS[nr] = fn
        return fn
    return register


def dispatch(v: "Vcpu", nr: int, args: tuple[int, ...]) -> int:
    handler = HYPERCALLS.get(nr)
    d = v.domain
    if handler is None:
        if nr not in d.unknown_hypercalls:    # log once per domain and number
            d.unknown_hypercalls.add(nr)
            name = HYPERCALL_NAMES.get(nr, "unknown")
            d.hv.log(f"d{d.domid}v{v.vcpu_id}: unimplemented hypercall {nr} ({name}) -> -ENOSYS")
        return -errno.ENOSYS
    try:
        if trace.ENABLED:           # tested here, not in a wrapper: no extra call when off
            return _traced(handler, v, nr, args)
        return handler(v, args)
    except GuestFault:
        return -errno.EFAULT
    except Exception:  # a model bug must not crash the board: report it and fail the call
        d.hv.log(f"d{d.domid}v{v.vcpu_id}: internal error in hypercall {nr}:\n"
                 + traceback.format_exc().rstrip())
        return -errno.EINVAL


def _traced(handler: Handler, v: "Vcpu", nr: int, args: tuple[int, ...]) -> int:
    t0 = trace.now()
    ret = -errno.EINVAL
    try:
        ret = handler(v, args)
    except GuestFault:
        ret = -errno.EFAULT
        raise
    finally:
        trace.emit("hypercall", v, t0=t0, nr=nr, name=HYPERCALL_NAMES.get(nr, str(nr)),
                   arg0=args[0], ret=ret)
    return ret
