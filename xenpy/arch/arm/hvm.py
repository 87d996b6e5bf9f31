"""HYPERVISOR_hvm_op on ARM (Xen's arch/arm/hvm.c): HVM parameters, the guest's way to find its
event-channel PPI, console and xenstore rings.

Parameters are per domain (`d.hvm_params`, unset ones read as 0). The toolstack sets them for a
domain it builds (hvm_set_param, exposed over privcmd); the guest may read five of them and write
none. A guest asking about another domain gets -EPERM (XSM dummy policy), an index ARM does not
use gets -EINVAL.

The arch layer imports nothing from xenpy/common: the hypervisor core registers do_hvm_op in the
hypercall table (`hypercall(HYPERVISOR_hvm_op)(do_hvm_op)`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.arch.arm.guestcopy import copy_from_guest, copy_to_guest
from xenpy.public import errno
from xenpy.public.hvm.hvm_op import (HVMOP_get_param, HVMOP_guest_request_vm_event,
                                     HVMOP_set_param, XEN_HVM_PARAM)
from xenpy.public.hvm.params import (HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_CONSOLE_EVTCHN,
                                     HVM_PARAM_CONSOLE_PFN, HVM_PARAM_MONITOR_RING_PFN,
                                     HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN)
from xenpy.public.xen import DOMID_SELF

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu
    from xenpy.common.hypervisor import Hypervisor

# Readable by the guest and the toolstack.
GUEST_READABLE = frozenset({HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_STORE_PFN, HVM_PARAM_STORE_EVTCHN,
                            HVM_PARAM_CONSOLE_PFN, HVM_PARAM_CONSOLE_EVTCHN})
# Only the toolstack (a caller that is not the domain itself) may touch these.
TOOLSTACK_ONLY = frozenset({HVM_PARAM_MONITOR_RING_PFN})
SETTABLE = GUEST_READABLE | TOOLSTACK_ONLY


def _domain(cd: "Domain", domid: int) -> "Domain | None":
    """rcu_lock_domain_by_any_id."""
    return cd if domid == DOMID_SELF else cd.hv.domains.get(domid)


def _params(d: "Domain") -> dict[int, int]:
    params: dict[int, int] | None = getattr(d, "hvm_params", None)
    if params is None:
        params = d.hvm_params = {}        # type: ignore[attr-defined]
    return params


def _allow_set(cd: "Domain", d: "Domain", index: int) -> int:
    if index not in SETTABLE:
        return -errno.EINVAL              # written only by Xen, unused on ARM, or out of range
    return -errno.EPERM if d is cd else 0


def _allow_get(cd: "Domain", d: "Domain", index: int) -> int:
    if index in GUEST_READABLE:
        return 0
    if index in TOOLSTACK_ONLY:
        return -errno.EPERM if d is cd else 0
    return -errno.EINVAL


def hvm_param_op(cd: "Domain", op: int, domid: int, index: int, value: int = 0) -> tuple[int, int]:
    """HVMOP_set_param / HVMOP_get_param from domain `cd`: (rc, value read)."""
    d = _domain(cd, domid)
    if d is None:
        return -errno.ESRCH, 0
    if d is not cd and not cd.privileged:
        return -errno.EPERM, 0            # XSM dummy policy, XSM_TARGET
    if op == HVMOP_set_param:
        rc = _allow_set(cd, d, index)
        if rc == 0:
            _params(d)[index] = value & (1 << 64) - 1
        return rc, 0
    rc = _allow_get(cd, d, index)
    return (rc, 0) if rc else (0, _params(d).get(index, 0))


def hvm_set_param(hv: "Hypervisor", domid: int, index: int, value: int) -> int:
    """Dom0's toolstack (xc_hvm_param_set): 0 or -errno."""
    return hvm_param_op(hv.domains[0], HVMOP_set_param, domid, index, value)[0]


def hvm_get_param(hv: "Hypervisor", domid: int, index: int) -> tuple[int, int]:
    """Dom0's toolstack (xc_hvm_param_get): (rc, value)."""
    return hvm_param_op(hv.domains[0], HVMOP_get_param, domid, index)


def do_hvm_op(v: "Vcpu", args: tuple[int, ...]) -> int:
    op, arg = args[0], args[1]
    assert v.arch is not None
    if op in (HVMOP_set_param, HVMOP_get_param):
        raw = copy_from_guest(v.arch, arg, XEN_HVM_PARAM.size)
        domid, index, value = XEN_HVM_PARAM.unpack(raw)
        rc, value = hvm_param_op(v.domain, op, domid, index, value)
        if rc == 0 and op == HVMOP_get_param:
            copy_to_guest(v.arch, arg, raw[:8] + value.to_bytes(8, "little"))
        return rc
    if op == HVMOP_guest_request_vm_event:
        # Would notify a vm_event monitor; xenpy has none subscribed, so there is nothing to send.
        return 0 if arg == 0 else -errno.EINVAL
    return -errno.ENOSYS
