"""HYPERVISOR_hvm_op on ARM: which HVM params a guest may read or write, what the toolstack may do,
and every errno, through the guest's hypercall (struct in guest memory) and dom0's functions."""
from __future__ import annotations

import struct

import pytest

from xenpy.arch.arm.guestcopy import GuestFault
from xenpy.arch.arm.hvm import do_hvm_op, hvm_get_param, hvm_param_op, hvm_set_param
from xenpy.common.hypervisor import Hypervisor
from xenpy.public import errno
from xenpy.public.arch_arm import callback_irq_ppi
from xenpy.public.hvm.hvm_op import (HVMOP_get_param, HVMOP_guest_request_vm_event,
                                     HVMOP_set_param, HVMOP_flush_tlbs, HVMOP_altp2m)
from xenpy.public.hvm.params import (HVM_NR_PARAMS, HVM_PARAM_CALLBACK_IRQ,
                                     HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN,
                                     HVM_PARAM_MONITOR_RING_PFN, HVM_PARAM_PAE_ENABLED,
                                     HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
                                     HVM_PARAM_TIMER_MODE)
from xenpy.public.xen import DOMID_SELF

RAM = 0x80000000
ARG = RAM + 0x3000
READABLE = (HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_STORE_PFN, HVM_PARAM_STORE_EVTCHN,
            HVM_PARAM_CONSOLE_PFN, HVM_PARAM_CONSOLE_EVTCHN)
SETTABLE = READABLE + (HVM_PARAM_MONITOR_RING_PFN,)
UNUSED_ON_ARM = (3, HVM_PARAM_PAE_ENABLED, HVM_PARAM_TIMER_MODE, 27, HVM_NR_PARAMS, 0xFFFFFFFF)


@pytest.fixture
def hv():
    h = Hypervisor()
    yield h
    for d in list(h.domains.values()):
        d.release()


def domu(hv: Hypervisor):
    d = hv.domains[hv.domain_create(0, 1, None, "4.4")]
    assert hv.domain_populate(d, 16) == 0
    return d


def guest(d, op: int, domid: int, index: int, value: int = 0, pad: int = 0) -> tuple[int, tuple]:
    d.ram_write(ARG, struct.pack("<HHIQ", domid, pad, index, value))
    rc = do_hvm_op(d.vcpus[0], (op, ARG, 0, 0, 0))
    return rc, struct.unpack("<HHIQ", bytes(d.ram[ARG - RAM:ARG - RAM + 16]))


def test_toolstack_sets_and_guest_reads(hv):
    d = domu(hv)
    values = {i: 0x1000 + i for i in SETTABLE}
    values[HVM_PARAM_CALLBACK_IRQ] = callback_irq_ppi(31)
    for i, v in values.items():
        assert hvm_set_param(hv, d.domid, i, v) == 0
    for i in READABLE:
        rc, out = guest(d, HVMOP_get_param, DOMID_SELF, i, value=0xDEAD, pad=0x5A5A)
        assert rc == 0 and out == (DOMID_SELF, 0x5A5A, i, values[i])   # padding kept as written
        assert hvm_get_param(hv, d.domid, i) == (0, values[i])
    rc, out = guest(d, HVMOP_get_param, d.domid, HVM_PARAM_CALLBACK_IRQ)    # own id = SELF
    assert rc == 0 and out[3] == 0x020000000000021F
    assert hvm_get_param(hv, d.domid, HVM_PARAM_MONITOR_RING_PFN) == (0, values[28])


def test_unset_params_read_as_zero_and_values_are_64_bit(hv):
    d = domu(hv)
    assert guest(d, HVMOP_get_param, DOMID_SELF, HVM_PARAM_STORE_PFN)[1][3] == 0
    assert hvm_set_param(hv, d.domid, HVM_PARAM_STORE_PFN, (1 << 64) + 7) == 0
    assert hvm_get_param(hv, d.domid, HVM_PARAM_STORE_PFN) == (0, 7)


def test_guest_may_write_nothing(hv):
    d = domu(hv)
    hvm_set_param(hv, d.domid, HVM_PARAM_STORE_EVTCHN, 3)
    for i in SETTABLE:
        rc, out = guest(d, HVMOP_set_param, DOMID_SELF, i, value=99)
        assert rc == -errno.EPERM
    assert hvm_get_param(hv, d.domid, HVM_PARAM_STORE_EVTCHN) == (0, 3)
    for i in UNUSED_ON_ARM:
        assert guest(d, HVMOP_set_param, DOMID_SELF, i, value=1)[0] == -errno.EINVAL


def test_guest_may_not_read_the_monitor_ring_or_unused_params(hv):
    d = domu(hv)
    hvm_set_param(hv, d.domid, HVM_PARAM_MONITOR_RING_PFN, 0x39002)
    rc, out = guest(d, HVMOP_get_param, DOMID_SELF, HVM_PARAM_MONITOR_RING_PFN, value=5)
    assert rc == -errno.EPERM and out[3] == 5              # nothing written back
    for i in UNUSED_ON_ARM:
        assert guest(d, HVMOP_get_param, DOMID_SELF, i)[0] == -errno.EINVAL
        assert hvm_get_param(hv, d.domid, i) == (-errno.EINVAL, 0)
        assert hvm_set_param(hv, d.domid, i, 1) == -errno.EINVAL


def test_other_domains_and_missing_ones(hv):
    a, b = domu(hv), domu(hv)
    hvm_set_param(hv, b.domid, HVM_PARAM_STORE_PFN, 0x1234)
    assert guest(a, HVMOP_get_param, b.domid, HVM_PARAM_STORE_PFN)[0] == -errno.EPERM
    assert guest(a, HVMOP_set_param, b.domid, HVM_PARAM_STORE_PFN, 1)[0] == -errno.EPERM
    assert guest(a, HVMOP_get_param, b.domid, 1000)[0] == -errno.EPERM    # XSM before index
    assert guest(a, HVMOP_get_param, 0x6000, HVM_PARAM_STORE_PFN)[0] == -errno.ESRCH
    assert guest(a, HVMOP_get_param, 0x7FF1, HVM_PARAM_STORE_PFN)[0] == -errno.ESRCH  # DOMID_IO
    assert hvm_set_param(hv, 0x6000, HVM_PARAM_STORE_PFN, 1) == -errno.ESRCH
    assert hvm_get_param(hv, b.domid, HVM_PARAM_STORE_PFN) == (0, 0x1234)


def test_dom0_is_not_foreign_to_itself(hv):
    # The "toolstack only" rule is about the caller being another domain: dom0 on itself is EPERM.
    assert hvm_set_param(hv, 0, HVM_PARAM_STORE_PFN, 1) == -errno.EPERM
    assert hvm_param_op(hv.domains[0], HVMOP_get_param, DOMID_SELF,
                        HVM_PARAM_MONITOR_RING_PFN) == (-errno.EPERM, 0)
    assert hvm_get_param(hv, 0, HVM_PARAM_CALLBACK_IRQ) == (0, 0)


def test_other_ops(hv):
    d = domu(hv)
    v = d.vcpus[0]
    assert do_hvm_op(v, (HVMOP_guest_request_vm_event, 0, 0, 0, 0)) == 0
    assert do_hvm_op(v, (HVMOP_guest_request_vm_event, ARG, 0, 0, 0)) == -errno.EINVAL
    for op in (HVMOP_flush_tlbs, HVMOP_altp2m, 2, 0xFFFFFFFF):
        assert do_hvm_op(v, (op, ARG, 0, 0, 0)) == -errno.ENOSYS


def test_bad_guest_pointer_faults(hv):
    d = domu(hv)
    with pytest.raises(GuestFault):          # the dispatcher answers -EFAULT
        do_hvm_op(d.vcpus[0], (HVMOP_get_param, 0x1000, 0, 0, 0))
    with pytest.raises(GuestFault):
        do_hvm_op(d.vcpus[0], (HVMOP_set_param, RAM + d.mem_bytes - 8, 0, 0, 0))
