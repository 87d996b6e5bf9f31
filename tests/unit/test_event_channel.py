"""Event channels, 2-level ABI: every EVTCHNOP and its errors, delivery through shared_info and
vcpu_info in guest memory, the guest hypercall path, dom0's EvtchnDevice, and properties.

No guest code runs: the hypervisor is never started, upcalls are recorded instead of injected, and
the guest's side of the protocol (masking, the upcall handler) is done by writing guest memory."""
from __future__ import annotations

import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from xenpy.board.evtchn_dev import ENOTCONN, EvtchnDevice
from xenpy.common import event_channel as ev
from xenpy.common.domain import Domain
from xenpy.common.hypercall import dispatch
from xenpy.common.hypervisor import Hypervisor
from xenpy.public import errno
from xenpy.public.event_channel import (
    EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_ipi, EVTCHNOP_bind_pirq,
    EVTCHNOP_bind_vcpu, EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_expand_array,
    EVTCHNOP_init_control, EVTCHNOP_reset, EVTCHNOP_reset_cont, EVTCHNOP_send,
    EVTCHNOP_set_priority, EVTCHNOP_status, EVTCHNOP_unmask, EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain, EVTCHNSTAT_ipi, EVTCHNSTAT_unbound, EVTCHNSTAT_virq,
    SHARED_INFO_EVTCHN_MASK, SHARED_INFO_EVTCHN_PENDING, VCPU_INFO_PENDING_SEL, VIRQ_ARGO,
    VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_DOM_EXC, VIRQ_TIMER, NR_VIRQS,
)
from xenpy.public.xen import DOMID_SELF, HYPERVISOR_event_channel_op

RAM = 0x80000000          # the "4.4" layout's RAM base
SHARED_GFN = (RAM + 0x10000) >> 12
VINFO_GFN = (RAM + 0x11000) >> 12
ARG = RAM + 0x20000       # where a test puts hypercall argument structs


class Rig:
    """A hypervisor (never started) whose event upcalls are recorded instead of injected."""

    def __init__(self) -> None:
        self.hv = hv = Hypervisor()
        self.upcalls: list[tuple[int, int]] = []
        hv.vcpu_mark_events_pending = lambda v: self.upcalls.append(  # type: ignore[attr-defined]
            (v.domain.domid, v.vcpu_id))
        self.dom0 = hv.domains[0]
        ensure_evtchn(self.dom0, ev.MAX_PORT_UNLIMITED)

    def domu(self, vcpus: int = 2, pages: int = 64, max_port: int = ev.DEFAULT_MAX_PORT,
             mapped: bool = True, registered: bool = True) -> Domain:
        d = self.hv.domains[self.hv.domain_create(0, vcpus, None, "4.4")]
        assert self.hv.domain_populate(d, pages) == 0
        ev.evtchn_init(d, max_port)
        if mapped:
            assert ev.map_shared_info(d, SHARED_GFN) == 0
        if registered:
            for v in d.vcpus:
                ev.vcpu_info_register(v, VINFO_GFN, 64 * v.vcpu_id)
            self.upcalls.clear()
            for v in d.vcpus:          # the guest's first upcall handler would clear these
                clear_upcall(d, v.vcpu_id)
        return d

    def close(self) -> None:
        for d in list(self.hv.domains.values()):
            d.release()

    def call(self, d: Domain, nr: int, cmd: int, payload: bytes, vcpu: int = 0,
             addr: int = ARG) -> tuple[int, bytes]:
        """Issue hypercall `nr` from d's vCPU with the struct at `addr`; (rc, struct after)."""
        d.ram_write(addr, payload)
        rc = dispatch(d.vcpus[vcpu], nr, (cmd, addr, 0, 0, 0))
        off = addr - RAM
        assert d.ram is not None
        return rc, bytes(d.ram[off:off + len(payload)])


def ensure_evtchn(d: Domain, max_port: int = ev.DEFAULT_MAX_PORT) -> None:
    if getattr(d, "evtchn", None) is None:     # the hypervisor may already do it at creation
        ev.evtchn_init(d, max_port)


def ram_byte(d: Domain, ipa: int) -> int:
    assert d.ram is not None
    return d.ram[ipa - RAM]


def _bit(d: Domain, ipa: int, nr: int) -> bool:
    return bool(ram_byte(d, ipa + nr // 8) >> (nr % 8) & 1)


def shared_ipa(d: Domain) -> int:
    return d.shared_info_gfn << 12           # type: ignore[attr-defined]


def vinfo_ipa(d: Domain, vcpu: int) -> int:
    v = d.vcpus[vcpu]
    if v.vcpu_info_gfn is None:
        assert vcpu == 0
        return shared_ipa(d)
    return (v.vcpu_info_gfn << 12) + v.vcpu_info_offset


def pending(d: Domain, port: int) -> bool:
    return _bit(d, shared_ipa(d) + SHARED_INFO_EVTCHN_PENDING, port)


def masked(d: Domain, port: int) -> bool:
    return _bit(d, shared_ipa(d) + SHARED_INFO_EVTCHN_MASK, port)


def sel(d: Domain, vcpu: int) -> int:
    assert d.ram is not None
    off = vinfo_ipa(d, vcpu) + VCPU_INFO_PENDING_SEL - RAM
    return int.from_bytes(d.ram[off:off + 8], "little")


def upcall(d: Domain, vcpu: int) -> int:
    return ram_byte(d, vinfo_ipa(d, vcpu))


def set_guest_bit(d: Domain, base: int, nr: int, value: bool) -> None:
    """What the guest does with its own atomic ops (mask a port, clear a pending bit)."""
    assert d.ram is not None
    off = base + nr // 8 - RAM
    b = d.ram[off]
    d.ram[off] = b | 1 << nr % 8 if value else b & ~(1 << nr % 8) & 0xFF


def guest_mask(d: Domain, port: int, value: bool = True) -> None:
    set_guest_bit(d, shared_ipa(d) + SHARED_INFO_EVTCHN_MASK, port, value)


def guest_clear_pending(d: Domain, port: int) -> None:
    set_guest_bit(d, shared_ipa(d) + SHARED_INFO_EVTCHN_PENDING, port, False)


def clear_upcall(d: Domain, vcpu: int) -> None:
    """The start of a guest's upcall handler: upcall byte to 0, then swap the selector to 0."""
    assert d.ram is not None
    off = vinfo_ipa(d, vcpu) - RAM
    d.ram[off] = 0
    d.ram[off + VCPU_INFO_PENDING_SEL:off + VCPU_INFO_PENDING_SEL + 8] = bytes(8)


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def st_of(d: Domain, port: int, dom: int = DOMID_SELF, caller: Domain | None = None):
    return ev.status(caller or d, dom, port)


# -- ports: allocation, validity, limits -----------------------------------------------------------

def test_port_zero_is_reserved_and_first_port_is_one(rig):
    d = rig.domu()
    assert st_of(d, 0).status == EVTCHNSTAT_closed
    assert ev.close(d, 0) == -errno.EINVAL
    assert ev.send(d, 0) == -errno.EINVAL
    assert ev.alloc_unbound(d, DOMID_SELF, 0) == 1


def test_validity_follows_buckets_of_64_ports(rig):
    d = rig.domu()
    assert st_of(d, 63).status == EVTCHNSTAT_closed       # in bucket 0: valid, free
    assert st_of(d, 64) == -errno.EINVAL                  # no bucket yet
    assert ev.unmask(d, 63) == 0 and ev.unmask(d, 64) == -errno.EINVAL
    assert ev.close(d, 63) == -errno.EINVAL
    ports = [ev.bind_ipi(d, 0) for _ in range(64)]
    assert ports == list(range(1, 65))
    assert st_of(d, 127).status == EVTCHNSTAT_closed and st_of(d, 128) == -errno.EINVAL


def test_out_of_ports_is_enospc_and_closing_frees_one(rig):
    d = rig.domu(max_port=3)
    assert [ev.bind_ipi(d, 0) for _ in range(3)] == [1, 2, 3]
    assert ev.bind_ipi(d, 0) == -errno.ENOSPC
    assert ev.alloc_unbound(d, DOMID_SELF, 0) == -errno.ENOSPC
    assert ev.close(d, 2) == 0
    assert ev.bind_virq(d, VIRQ_TIMER, 0) == 2


def test_two_level_abi_caps_ports_at_4096(rig):
    d = rig.domu(max_port=ev.MAX_PORT_UNLIMITED)
    ports = [ev.bind_ipi(d, 0) for _ in range(4095)]
    assert ports[-1] == 4095
    assert ev.bind_ipi(d, 0) == -errno.ENOSPC


def test_dying_domain_cannot_allocate(rig):
    d = rig.domu()
    d.is_dying = True
    assert ev.alloc_unbound(d, DOMID_SELF, 0) == -errno.EINVAL
    assert ev.bind_ipi(d, 0) == -errno.EINVAL
    assert ev.bind_virq(d, VIRQ_TIMER, 0) == -errno.EINVAL


# -- alloc_unbound -------------------------------------------------------------------------------

def test_alloc_unbound_resolves_domid_self_to_the_caller(rig):
    d = rig.domu()
    p = ev.alloc_unbound(d, DOMID_SELF, DOMID_SELF)
    s = st_of(d, p)
    assert (s.status, s.dom, s.vcpu) == (EVTCHNSTAT_unbound, d.domid, 0)
    q = ev.alloc_unbound(d, d.domid, 0)                 # its own id works as DOMID_SELF does
    assert st_of(d, q).dom == 0


def test_alloc_unbound_for_another_domain(rig):
    a, b = rig.domu(), rig.domu()
    assert ev.alloc_unbound(a, b.domid, 0) == -errno.EPERM
    assert ev.alloc_unbound(a, 0x7000, 0) == -errno.ESRCH
    assert ev.alloc_unbound(a, 0x7FF1, 0) == -errno.ESRCH        # DOMID_IO names no domain
    # The refused attempt consumed nothing: dom0 (privileged) gets b's lowest port, and
    # DOMID_SELF as remote means dom0, the caller, not b.
    p = ev.alloc_unbound(rig.dom0, b.domid, DOMID_SELF)
    assert p == 1
    s = st_of(b, p, caller=rig.dom0, dom=b.domid)
    assert (s.status, s.dom) == (EVTCHNSTAT_unbound, 0)


# -- bind_interdomain ----------------------------------------------------------------------------

def test_bind_interdomain_errors(rig):
    a, b, c = rig.domu(), rig.domu(), rig.domu()
    p = ev.alloc_unbound(b, DOMID_SELF, a.domid)
    assert ev.bind_interdomain(a, 0x7000, p) == -errno.ESRCH
    assert ev.bind_interdomain(a, b.domid, 64) == -errno.EINVAL      # not a valid port
    assert ev.bind_interdomain(a, b.domid, 5) == -errno.EINVAL       # free, not unbound
    assert ev.bind_interdomain(c, b.domid, p) == -errno.EINVAL       # offered to a, not c
    ipi = ev.bind_ipi(b, 0)
    assert ev.bind_interdomain(a, b.domid, ipi) == -errno.EINVAL     # wrong state
    assert ev.bind_interdomain(a, b.domid, p) == 1
    assert ev.bind_interdomain(a, b.domid, p) == -errno.EINVAL       # already connected


def test_bind_interdomain_connects_both_ends_and_raises_the_local_port(rig):
    a, b = rig.domu(), rig.domu()
    p = ev.alloc_unbound(b, DOMID_SELF, a.domid)
    lp = ev.bind_interdomain(a, b.domid, p)
    sa, sb = st_of(a, lp), st_of(b, p)
    assert (sa.status, sa.dom, sa.port) == (EVTCHNSTAT_interdomain, b.domid, p)
    assert (sb.status, sb.dom, sb.port) == (EVTCHNSTAT_interdomain, a.domid, lp)
    # Sends to the unbound end were dropped, so Xen raises the new local port once.
    assert pending(a, lp) and sel(a, 0) == 1 and upcall(a, 0) == 1
    assert rig.upcalls == [(a.domid, 0)]
    assert not pending(b, p)


def test_loopback_channel_within_one_domain(rig):
    d = rig.domu()
    p = ev.alloc_unbound(d, DOMID_SELF, DOMID_SELF)
    q = ev.bind_interdomain(d, DOMID_SELF, p)
    guest_clear_pending(d, q)
    clear_upcall(d, 0)
    assert ev.send(d, q) == 0 and pending(d, p) and not pending(d, q)
    assert ev.close(d, p) == 0
    s = st_of(d, q)
    assert (s.status, s.dom) == (EVTCHNSTAT_unbound, d.domid)


# -- send and the 2-level delivery ---------------------------------------------------------------

def pair(rig: Rig, a: Domain, b: Domain) -> tuple[int, int]:
    """An interdomain channel a:lp <-> b:rp with both ends quiet."""
    rp = ev.alloc_unbound(b, DOMID_SELF, a.domid)
    lp = ev.bind_interdomain(a, b.domid, rp)
    guest_clear_pending(a, lp)
    clear_upcall(a, 0)
    rig.upcalls.clear()
    return lp, rp


def test_send_interdomain_follows_the_2l_protocol(rig):
    a, b = rig.domu(), rig.domu()
    ev.bind_vcpu(b, ev.alloc_unbound(b, DOMID_SELF, 0), 1)   # occupy port 1 of b
    lp, rp = pair(rig, a, b)
    assert rp == 2
    assert ev.bind_vcpu(b, rp, 1) == 0                         # deliver on b's vCPU 1
    assert ev.send(a, lp) == 0
    assert pending(b, rp) and sel(b, 1) == 1 and upcall(b, 1) == 1 and upcall(b, 0) == 0
    assert rig.upcalls == [(b.domid, 1)]
    # Still pending: a second send changes nothing and raises no upcall.
    assert ev.send(a, lp) == 0 and rig.upcalls == [(b.domid, 1)]
    # The guest consumed the upcall but not yet the port: a new event on another port in the
    # same word sets the selector again and raises a new upcall.
    clear_upcall(b, 1)
    p2 = ev.bind_ipi(b, 1)
    assert ev.send(b, p2) == 0
    assert sel(b, 1) == 1 and rig.upcalls == [(b.domid, 1), (b.domid, 1)]


def test_upcall_only_on_the_edge_of_the_upcall_byte(rig):
    d = rig.domu()
    p1, p2 = ev.bind_ipi(d, 0), ev.bind_ipi(d, 0)
    ev.send(d, p1)
    ev.send(d, p2)
    assert rig.upcalls == [(d.domid, 0)] and pending(d, p1) and pending(d, p2)


def test_selector_bit_is_the_word_of_the_port(rig):
    d = rig.domu(max_port=200)
    ports = [ev.bind_ipi(d, 0) for _ in range(130)]
    ev.send(d, ports[-1])                        # port 130: word 2
    assert sel(d, 0) == 1 << 2 and pending(d, 130)


def test_masked_port_is_marked_pending_without_an_upcall(rig):
    d = rig.domu()
    p = ev.bind_ipi(d, 0)
    guest_mask(d, p)
    assert ev.send(d, p) == 0
    assert pending(d, p) and sel(d, 0) == 0 and upcall(d, 0) == 0 and rig.upcalls == []


def test_send_ipi_goes_to_the_bound_vcpu(rig):
    d = rig.domu()
    p = ev.bind_ipi(d, 1)
    assert ev.send(d, p) == 0
    assert pending(d, p) and sel(d, 1) == 1 and sel(d, 0) == 0 and rig.upcalls == [(d.domid, 1)]


def test_send_on_unbound_is_dropped_and_other_states_fail(rig):
    d = rig.domu()
    u = ev.alloc_unbound(d, DOMID_SELF, 0)
    assert ev.send(d, u) == 0 and not pending(d, u) and rig.upcalls == []
    v = ev.bind_virq(d, VIRQ_TIMER, 0)
    assert ev.send(d, v) == -errno.EINVAL
    assert ev.send(d, 10) == -errno.EINVAL       # free
    assert ev.send(d, 1 << 20) == -errno.EINVAL  # invalid


# -- unmask --------------------------------------------------------------------------------------

def test_unmask_of_a_pending_masked_port_raises_exactly_one_upcall(rig):
    d = rig.domu()
    p = ev.bind_ipi(d, 1)
    guest_mask(d, p)
    ev.send(d, p)
    assert rig.upcalls == []
    assert ev.unmask(d, p) == 0
    assert not masked(d, p) and sel(d, 1) == 1 and upcall(d, 1) == 1
    assert rig.upcalls == [(d.domid, 1)]
    assert ev.unmask(d, p) == 0 and rig.upcalls == [(d.domid, 1)]


def test_unmask_without_pending_only_clears_the_mask(rig):
    d = rig.domu()
    p = ev.bind_ipi(d, 0)
    guest_mask(d, p)
    assert ev.unmask(d, p) == 0
    assert not masked(d, p) and sel(d, 0) == 0 and rig.upcalls == []


def test_unmask_of_a_free_port_leaves_its_mask_bit(rig):
    d = rig.domu()
    guest_mask(d, 9)
    assert ev.unmask(d, 9) == 0 and masked(d, 9)


# -- close ---------------------------------------------------------------------------------------

def test_close_interdomain_turns_the_peer_unbound_without_notifying_it(rig):
    a, b = rig.domu(), rig.domu()
    lp, rp = pair(rig, a, b)
    ev.send(b, rp)                               # a:lp pending
    assert ev.close(a, lp) == 0
    assert st_of(a, lp).status == EVTCHNSTAT_closed and not pending(a, lp)
    s = st_of(b, rp)
    assert (s.status, s.dom) == (EVTCHNSTAT_unbound, a.domid)
    assert not pending(b, rp) and rig.upcalls == [(a.domid, 0)]
    assert ev.send(b, rp) == 0                   # unbound now: dropped
    assert ev.bind_interdomain(a, b.domid, rp) == lp     # and a may bind it again


def test_close_errors_and_virq_slot_release(rig):
    d = rig.domu()
    assert ev.close(d, 5) == -errno.EINVAL and ev.close(d, 64) == -errno.EINVAL
    v = ev.bind_virq(d, VIRQ_DEBUG, 1)
    assert ev.bind_virq(d, VIRQ_DEBUG, 1) == -errno.EEXIST
    assert ev.close(d, v) == 0 and ev.close(d, v) == -errno.EINVAL
    assert ev.bind_virq(d, VIRQ_DEBUG, 1) == v


def test_rebinding_a_closed_port_starts_without_a_stale_event(rig):
    d = rig.domu()
    p = ev.bind_ipi(d, 0)
    guest_mask(d, p)
    ev.send(d, p)
    assert ev.close(d, p) == 0 and not pending(d, p)
    assert ev.bind_ipi(d, 0) == p and not pending(d, p)


# -- VIRQs ---------------------------------------------------------------------------------------

def test_bind_virq_errors(rig):
    d = rig.domu(vcpus=2)
    assert ev.bind_virq(d, NR_VIRQS, 0) == -errno.EINVAL
    assert ev.bind_virq(d, 0xFFFFFFFF, 0) == -errno.EINVAL
    assert ev.bind_virq(d, VIRQ_ARGO, 1) == -errno.EINVAL       # per-domain: vCPU 0 only
    assert ev.bind_virq(d, VIRQ_DOM_EXC, 1) == -errno.EINVAL    # global: vCPU 0 only
    assert ev.bind_virq(d, VIRQ_TIMER, 2) == -errno.ENOENT
    assert ev.bind_virq(d, VIRQ_DOM_EXC, 0) == -errno.EBUSY     # dom0 handles global VIRQs
    assert ev.bind_virq(d, 5, 0) == -errno.EBUSY                # unused numbers are global
    assert ev.bind_virq(d, VIRQ_ARGO, 0) == 1
    assert ev.bind_virq(d, VIRQ_ARGO, 0) == -errno.EEXIST
    assert ev.bind_virq(d, VIRQ_TIMER, 0) == 2 and ev.bind_virq(d, VIRQ_TIMER, 1) == 3


def test_per_vcpu_virq_is_delivered_to_its_vcpu(rig):
    d = rig.domu(vcpus=2)
    p0, p1 = ev.bind_virq(d, VIRQ_TIMER, 0), ev.bind_virq(d, VIRQ_TIMER, 1)
    ev.send_guest_virq(d.vcpus[1], VIRQ_TIMER)
    assert pending(d, p1) and not pending(d, p0) and sel(d, 1) == 1 and sel(d, 0) == 0
    s = st_of(d, p1)
    assert (s.status, s.virq, s.vcpu) == (EVTCHNSTAT_virq, VIRQ_TIMER, 1)
    ev.send_guest_virq(d.vcpus[0], VIRQ_DEBUG)      # not bound: nothing
    assert rig.upcalls == [(d.domid, 1)]


def test_global_virq_goes_to_dom0_and_handler_can_move(rig):
    d = rig.domu()
    dev = EvtchnDevice(rig.hv)
    p = dev.bind_virq(VIRQ_DOM_EXC)
    ev.send_global_virq(rig.hv, VIRQ_DOM_EXC)
    assert dev.pending(0) == p
    # A domU may take over a global VIRQ only once dom0 has unbound it.
    assert ev.set_global_virq_handler(rig.hv, d, VIRQ_DOM_EXC) == -errno.EBUSY
    assert ev.set_global_virq_handler(rig.hv, d, VIRQ_TIMER) == -errno.EINVAL
    assert ev.set_global_virq_handler(rig.hv, d, NR_VIRQS) == -errno.EINVAL
    dev.unbind(p)
    assert ev.set_global_virq_handler(rig.hv, d, VIRQ_DOM_EXC) == 0
    assert ev.bind_virq(rig.dom0, VIRQ_DOM_EXC, 0) == -errno.EBUSY
    q = ev.bind_virq(d, VIRQ_DOM_EXC, 0)
    assert ev.bind_vcpu(d, q, 1) == 0                 # global VIRQs may move between vCPUs
    ev.send_global_virq(rig.hv, VIRQ_DOM_EXC)
    assert pending(d, q) and sel(d, 1) == 1
    ev.evtchn_destroy(d)                              # the handler dies: dom0 is it again
    assert ev.get_global_virq_handler(rig.hv, VIRQ_DOM_EXC) is rig.dom0
    dev.close()


# -- bind_ipi, bind_vcpu -------------------------------------------------------------------------

def test_bind_ipi_errors(rig):
    d = rig.domu(vcpus=2)
    assert ev.bind_ipi(d, 2) == -errno.ENOENT
    assert ev.bind_ipi(d, 0xFFFFFFFF) == -errno.ENOENT
    s = st_of(d, ev.bind_ipi(d, 1))
    assert (s.status, s.vcpu) == (EVTCHNSTAT_ipi, 1)


def test_bind_vcpu_by_state(rig):
    d = rig.domu(vcpus=2)
    u = ev.alloc_unbound(d, DOMID_SELF, 0)
    i = ev.bind_ipi(d, 0)
    t = ev.bind_virq(d, VIRQ_TIMER, 0)
    g = ev.bind_virq(d, VIRQ_ARGO, 0)
    assert ev.bind_vcpu(d, u, 2) == -errno.ENOENT          # vCPU checked first
    assert ev.bind_vcpu(d, 64, 1) == -errno.EINVAL
    assert ev.bind_vcpu(d, 20, 1) == -errno.EINVAL         # free
    assert ev.bind_vcpu(d, i, 1) == -errno.EINVAL          # IPIs stay on their vCPU
    assert ev.bind_vcpu(d, t, 1) == -errno.EINVAL          # so do per-vCPU VIRQs
    assert ev.bind_vcpu(d, u, 1) == 0 and st_of(d, u).vcpu == 1
    assert ev.bind_vcpu(d, g, 1) == 0
    ev.send_guest_virq(d.vcpus[0], VIRQ_ARGO)
    assert sel(d, 1) == 1 and sel(d, 0) == 0 and rig.upcalls == [(d.domid, 1)]


def test_bind_vcpu_moves_interdomain_delivery(rig):
    a, b = rig.domu(), rig.domu()
    lp, rp = pair(rig, a, b)
    assert ev.bind_vcpu(b, rp, 1) == 0
    ev.send(a, lp)
    assert sel(b, 1) == 1 and sel(b, 0) == 0


# -- status --------------------------------------------------------------------------------------

def test_status_errors_and_permissions(rig):
    a, b = rig.domu(), rig.domu()
    p = ev.bind_ipi(b, 0)
    assert ev.status(a, 0x7000, 1) == -errno.ESRCH
    assert ev.status(a, b.domid, 64) == -errno.EINVAL       # the port is checked before XSM
    assert ev.status(a, b.domid, p) == -errno.EPERM
    assert ev.status(rig.dom0, b.domid, p).status == EVTCHNSTAT_ipi


# -- reset ---------------------------------------------------------------------------------------

def test_reset(rig):
    a, b = rig.domu(), rig.domu()
    lp, rp = pair(rig, a, b)
    ev.bind_ipi(a, 0)
    assert ev.reset(a, 0x7000) == -errno.ESRCH
    assert ev.reset(a, b.domid) == -errno.EPERM
    b.pause_count = 0                                # running: dom0 may not reset it
    assert ev.reset(rig.dom0, b.domid) == -errno.EINVAL
    a.pause_count = 0
    assert ev.reset(a, DOMID_SELF) == 0              # itself: fine while running
    assert all(st_of(a, p).status == EVTCHNSTAT_closed for p in range(1, 64))
    assert st_of(b, rp).status == EVTCHNSTAT_unbound
    b.pause_count = 1
    assert ev.reset(rig.dom0, b.domid) == 0 and st_of(b, rp).status == EVTCHNSTAT_closed


# -- destruction ---------------------------------------------------------------------------------

def test_destroy_unbinds_peers_and_stops_allocation(rig):
    a, b = rig.domu(), rig.domu()
    lp, rp = pair(rig, a, b)
    dev = EvtchnDevice(rig.hv)
    dp = ev.alloc_unbound(a, DOMID_SELF, 0)
    d0 = dev.bind_interdomain(a.domid, dp)
    assert dev.pending(0) == d0
    rig.upcalls.clear()
    a.is_dying = True
    ev.evtchn_destroy(a)
    s = st_of(b, rp)
    assert (s.status, s.dom) == (EVTCHNSTAT_unbound, a.domid)
    s0 = ev.status(rig.dom0, DOMID_SELF, d0)
    assert (s0.status, s0.dom) == (EVTCHNSTAT_unbound, a.domid)
    assert all(st_of(a, p).status == EVTCHNSTAT_closed for p in range(64))
    # Each peer is told once, so one waiting on the channel wakes and finds it unbound.
    dev.unmask(d0)                  # still masked from the bind-time event it took above
    assert pending(b, rp) and dev.pending(0.5) == d0
    assert ev.bind_ipi(a, 0) == -errno.EINVAL
    dev.close()


# -- shared_info and vcpu_info placement ---------------------------------------------------------

def test_events_before_shared_info_is_mapped_appear_when_it_is(rig):
    d = rig.domu(mapped=False, registered=False)
    p = ev.bind_ipi(d, 0)
    d.ram_write(SHARED_GFN << 12, b"\x5a" * 4096)     # whatever the guest had in that frame
    ev.send(d, p)
    assert rig.upcalls == [(d.domid, 0)]             # Xen's page exists: the upcall is raised
    assert ev.map_shared_info(d, SHARED_GFN) == 0
    assert d.shared_info_gfn == SHARED_GFN
    assert pending(d, p) and upcall(d, 0) == 1 and sel(d, 0) == 1   # vcpu_info[0] in shared_info
    assert not masked(d, 5) and ram_byte(d, (SHARED_GFN << 12) + 4095) == 0


def test_remapping_shared_info_moves_it(rig):
    d = rig.domu(registered=False)
    p = ev.bind_ipi(d, 0)
    ev.send(d, p)
    new = SHARED_GFN + 5
    assert ev.map_shared_info(d, new) == 0 and d.shared_info_gfn == new
    assert pending(d, p) and upcall(d, 0) == 1               # the contents came along
    d.ram_write(SHARED_GFN << 12, bytes(4096))               # the old frame is plain RAM now
    clear_upcall(d, 0)
    guest_clear_pending(d, p)
    ev.send(d, p)
    assert pending(d, p) and upcall(d, 0) == 1
    assert not any(d.ram[(SHARED_GFN << 12) - RAM:][:4096])
    assert ev.map_shared_info(d, new) == 0                   # the same frame again: no change
    assert pending(d, p)


def test_map_shared_info_outside_ram(rig):
    d = rig.domu(mapped=False, registered=False, pages=16)
    assert ev.map_shared_info(d, (RAM >> 12) + 16) == -errno.EINVAL
    assert ev.map_shared_info(d, (RAM >> 12) - 1) == -errno.EINVAL
    assert ev.map_shared_info(d, (RAM >> 12) + 15) == 0


def test_vcpu_info_registration_carries_state_and_marks_everything_pending(rig):
    d = rig.domu(vcpus=2, registered=False)
    p = ev.bind_ipi(d, 0)
    q = ev.bind_ipi(d, 1)
    ev.send(d, p)                                    # vCPU 0: in shared_info.vcpu_info[0]
    ev.send(d, q)                                    # vCPU 1: scratch vcpu_info until registered
    assert rig.upcalls == [(d.domid, 0), (d.domid, 1)]
    d.ram_write((VINFO_GFN << 12), b"\xa5" * 128)
    ev.vcpu_info_register(d.vcpus[0], VINFO_GFN, 0)
    ev.vcpu_info_register(d.vcpus[1], VINFO_GFN, 64)
    assert sel(d, 0) == sel(d, 1) == (1 << 64) - 1
    assert upcall(d, 0) == 1 and upcall(d, 1) == 1
    # vCPU 0's upcall byte was already set (copied over): no new upcall. vCPU 1's area starts
    # from zeros, as Xen's dummy vcpu_info is not copied, so marking it pending raises one.
    assert rig.upcalls == [(d.domid, 0), (d.domid, 1), (d.domid, 1)]
    assert ram_byte(d, (VINFO_GFN << 12) + 64 + 16) == 0       # time area: zeroed, not 0xa5
    clear_upcall(d, 1)
    ev.send(d, q)
    assert sel(d, 1) == 0 and pending(d, q)                    # already pending: no new event
    guest_clear_pending(d, q)
    ev.send(d, q)
    assert sel(d, 1) == 1 and rig.upcalls[-1] == (d.domid, 1)


def test_vcpu_info_registration_raises_an_upcall_when_none_is_pending(rig):
    d = rig.domu(vcpus=1, registered=False)
    ev.vcpu_info_register(d.vcpus[0], VINFO_GFN, 8)
    assert rig.upcalls == [(d.domid, 0)] and upcall(d, 0) == 1
    assert ev.vcpu_upcall_pending(d.vcpus[0])
    clear_upcall(d, 0)
    assert not ev.vcpu_upcall_pending(d.vcpus[0])
    assert not ev.vcpu_upcall_pending(rig.dom0.vcpus[0])


def test_shared_info_and_vcpu_info_writers_follow_the_page(rig):
    d = rig.domu(mapped=False, registered=False)
    ev.shared_info_write(d, 1076, b"\x01\x02\x03\x04")      # wc_sec before the mapping
    ev.map_shared_info(d, SHARED_GFN)
    assert ev.shared_info_read(d, 1076, 4) == b"\x01\x02\x03\x04"
    assert bytes(d.ram[(SHARED_GFN << 12) - RAM + 1076:][:4]) == b"\x01\x02\x03\x04"
    ev.vcpu_info_write(d.vcpus[0], 16, b"\x07")
    assert ram_byte(d, (SHARED_GFN << 12) + 16) == 7
    with pytest.raises(ValueError):
        ev.vcpu_info_write(d.vcpus[0], 47, b"ab")


def test_bit_operations_without_libatomic(rig, monkeypatch):
    monkeypatch.setattr(ev, "_ATOMICS", None)
    d = rig.domu()
    p = ev.bind_ipi(d, 0)
    guest_mask(d, p)
    ev.send(d, p)
    assert pending(d, p) and rig.upcalls == []
    ev.unmask(d, p)
    assert not masked(d, p) and rig.upcalls == [(d.domid, 0)]


def test_libatomic_is_used_when_present():
    # Not a requirement (there is a fallback), but on this kind of host it should load.
    assert ev._ATOMICS is not None


# -- the guest's hypercall ------------------------------------------------------------------------

def call(rig: Rig, d: Domain, cmd: int, payload: bytes, vcpu: int = 0) -> tuple[int, bytes]:
    return rig.call(d, HYPERVISOR_event_channel_op, cmd, payload, vcpu)


def test_hypercall_alloc_bind_send_close(rig):
    a, b = rig.domu(), rig.domu()
    rc, out = call(rig, b, EVTCHNOP_alloc_unbound, struct.pack("<HHI", DOMID_SELF, a.domid, 77))
    assert rc == 0 and out == struct.pack("<HHI", DOMID_SELF, a.domid, 1)
    rc, out = call(rig, a, EVTCHNOP_bind_interdomain,
                   struct.pack("<HHII", b.domid, 0xBEEF, 1, 99))
    assert rc == 0 and struct.unpack("<HHII", out) == (b.domid, 0, 1, 1)   # padding written as 0
    rc, _ = call(rig, a, EVTCHNOP_send, u32(1))
    assert rc == 0 and pending(b, 1)
    rc, _ = call(rig, a, EVTCHNOP_close, u32(1))
    assert rc == 0 and st_of(b, 1).status == EVTCHNSTAT_unbound
    assert call(rig, a, EVTCHNOP_close, u32(1))[0] == -errno.EINVAL
    assert call(rig, a, EVTCHNOP_alloc_unbound, struct.pack("<HHI", b.domid, 0, 0)) == \
        (-errno.EPERM, struct.pack("<HHI", b.domid, 0, 0))                  # nothing written back


def test_hypercall_virq_ipi_vcpu_unmask(rig):
    d = rig.domu()
    rc, out = call(rig, d, EVTCHNOP_bind_virq, u32(VIRQ_TIMER, 1, 0))
    assert rc == 0 and out == u32(VIRQ_TIMER, 1, 1)
    assert call(rig, d, EVTCHNOP_bind_virq, u32(VIRQ_TIMER, 1, 0))[0] == -errno.EEXIST
    rc, out = call(rig, d, EVTCHNOP_bind_ipi, u32(1, 0))
    assert rc == 0 and out == u32(1, 2)
    assert call(rig, d, EVTCHNOP_bind_ipi, u32(9, 0))[0] == -errno.ENOENT
    assert call(rig, d, EVTCHNOP_bind_vcpu, u32(2, 0))[0] == -errno.EINVAL
    u = ev.alloc_unbound(d, DOMID_SELF, 0)
    assert call(rig, d, EVTCHNOP_bind_vcpu, u32(u, 1))[0] == 0 and st_of(d, u).vcpu == 1
    guest_mask(d, 2)
    assert call(rig, d, EVTCHNOP_send, u32(2))[0] == 0 and rig.upcalls == []
    assert call(rig, d, EVTCHNOP_unmask, u32(2))[0] == 0
    assert rig.upcalls == [(d.domid, 1)]
    assert call(rig, d, EVTCHNOP_unmask, u32(4096))[0] == -errno.EINVAL


def test_hypercall_status_writes_only_the_member_that_applies(rig):
    a, b = rig.domu(), rig.domu()
    lp, rp = pair(rig, a, b)
    filler = b"\xee" * 8
    rc, out = call(rig, a, EVTCHNOP_status, struct.pack("<HHIII8s", DOMID_SELF, 0x1234, lp,
                                                       7, 7, filler))
    assert rc == 0
    assert struct.unpack("<HHIIIHHI", out) == (DOMID_SELF, 0x1234, lp, EVTCHNSTAT_interdomain, 0,
                                               b.domid, 0xEEEE, rp)
    v = ev.bind_virq(a, VIRQ_TIMER, 1)
    rc, out = call(rig, a, EVTCHNOP_status, struct.pack("<HxxIII8s", DOMID_SELF, v, 0, 0, filler))
    assert struct.unpack("<HxxIIII4s", out)[1:] == (v, EVTCHNSTAT_virq, 1, VIRQ_TIMER, b"\xee" * 4)
    u = ev.alloc_unbound(a, DOMID_SELF, 0)
    rc, out = call(rig, a, EVTCHNOP_status, struct.pack("<HxxIII8s", DOMID_SELF, u, 0, 0, filler))
    assert struct.unpack("<HxxIIIH6s", out)[2:] == (EVTCHNSTAT_unbound, 0, 0, b"\xee" * 6)
    rc, out = call(rig, a, EVTCHNOP_status, struct.pack("<HxxIII8s", DOMID_SELF, 30, 5, 5, filler))
    assert struct.unpack("<HxxIII8s", out)[2:] == (EVTCHNSTAT_closed, 0, filler)
    bad = struct.pack("<HxxIII8s", b.domid, rp, 0, 0, filler)
    assert call(rig, a, EVTCHNOP_status, bad) == (-errno.EPERM, bad)


def test_hypercall_reset_and_unsupported_ops(rig):
    d = rig.domu()
    ev.bind_ipi(d, 0)
    assert call(rig, d, EVTCHNOP_reset, struct.pack("<H", DOMID_SELF))[0] == 0
    assert st_of(d, 1).status == EVTCHNSTAT_closed
    assert call(rig, d, EVTCHNOP_reset_cont, struct.pack("<H", 0))[0] == -errno.EPERM
    assert call(rig, d, EVTCHNOP_bind_pirq, u32(1, 0, 0))[0] == -errno.EOPNOTSUPP
    assert call(rig, d, EVTCHNOP_init_control, bytes(24))[0] == -errno.EOPNOTSUPP
    assert call(rig, d, EVTCHNOP_expand_array, bytes(8))[0] == -errno.EOPNOTSUPP
    # 2-level has no priorities: -ENOSYS for any valid port (even a free one), else -EINVAL.
    assert call(rig, d, EVTCHNOP_set_priority, u32(1, 3))[0] == -errno.ENOSYS
    assert call(rig, d, EVTCHNOP_set_priority, u32(70, 3))[0] == -errno.EINVAL
    assert call(rig, d, 15, u32(0))[0] == -errno.ENOSYS
    assert call(rig, d, 0xFFFFFFFF, u32(0))[0] == -errno.ENOSYS


def test_hypercall_bad_pointer_is_efault(rig):
    d = rig.domu()
    for cmd in (EVTCHNOP_alloc_unbound, EVTCHNOP_send, EVTCHNOP_status, EVTCHNOP_bind_pirq):
        rc = dispatch(d.vcpus[0], HYPERVISOR_event_channel_op, (cmd, 0x1000, 0, 0, 0))
        assert rc == -errno.EFAULT
    # A struct straddling the end of RAM faults before anything is done.
    end = RAM + d.mem_bytes - 4
    assert dispatch(d.vcpus[0], HYPERVISOR_event_channel_op,
                    (EVTCHNOP_bind_ipi, end, 0, 0, 0)) == -errno.EFAULT
    assert st_of(d, 1).status == EVTCHNSTAT_closed


# -- dom0's /dev/xen/evtchn ----------------------------------------------------------------------

def test_device_receives_masks_and_unmasks(rig):
    d = rig.domu()
    with EvtchnDevice(rig.hv) as dev:
        p = dev.bind_unbound(d.domid)
        q = ev.bind_interdomain(d, 0, p)
        assert dev.pending(0) is None                     # the domU's side fired, not ours
        assert ev.send(d, q) == 0
        assert dev.pending(1) == p
        assert ev.is_masked(rig.dom0, p) and not ev.is_pending(rig.dom0, p)
        ev.send(d, q)
        ev.send(d, q)                                     # masked: remembered once, not queued
        assert dev.pending(0) is None and ev.is_pending(rig.dom0, p)
        dev.unmask(p)
        assert dev.pending(0) == p and dev.pending(0) is None
        dev.unmask(p)
        assert dev.pending(0) is None
        # dom0 -> domU
        guest_clear_pending(d, q)
        clear_upcall(d, 0)
        rig.upcalls.clear()
        dev.notify(p)
        assert pending(d, q) and rig.upcalls == [(d.domid, 0)]


def test_device_bind_interdomain_fires_once_at_once(rig):
    d = rig.domu()
    with EvtchnDevice(rig.hv) as dev:
        r = ev.alloc_unbound(d, DOMID_SELF, 0)
        p = dev.bind_interdomain(d.domid, r)
        assert dev.pending(0) == p and dev.ports == {p}
        with pytest.raises(OSError) as e:
            dev.bind_interdomain(d.domid, r)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            dev.bind_interdomain(0x7000, 1)
        assert e.value.errno == errno.ESRCH


def test_devices_own_their_ports(rig):
    d = rig.domu()
    one, two = EvtchnDevice(rig.hv), EvtchnDevice(rig.hv)
    p = one.bind_unbound(d.domid)
    for op in (two.notify, two.unbind):
        with pytest.raises(OSError) as e:
            op(p)
        assert e.value.errno == ENOTCONN
    with pytest.raises(OSError) as e:
        one.notify(4096)
    assert e.value.errno == errno.EINVAL
    q = ev.bind_interdomain(d, 0, p)
    two.unmask(p)                          # not its port: ignored
    ev.send(d, q)
    assert one.pending(0) == p and two.pending(0) is None
    one.close()                            # closing the file unbinds: the domU end is unbound
    s = st_of(d, q)
    assert (s.status, s.dom) == (EVTCHNSTAT_unbound, 0)
    with pytest.raises(OSError) as e:
        one.bind_unbound(d.domid)
    assert e.value.errno == errno.EBADF
    assert two.bind_unbound(d.domid) == p   # the port is free again
    two.close()


def test_device_unbind_forgets_queued_events(rig):
    d = rig.domu()
    dev = EvtchnDevice(rig.hv)
    p = dev.bind_unbound(d.domid)
    q = ev.bind_interdomain(d, 0, p)
    ev.send(d, q)
    dev.unbind(p)
    assert dev.pending(0) is None and dev.ports == set()
    assert ev.status(rig.dom0, DOMID_SELF, p).status == EVTCHNSTAT_closed
    with pytest.raises(OSError) as e:
        dev.unbind(p)
    assert e.value.errno == ENOTCONN
    dev.close()


def test_device_pending_blocks_until_an_event(rig):
    d = rig.domu()
    dev = EvtchnDevice(rig.hv)
    p = dev.bind_unbound(d.domid)
    q = ev.bind_interdomain(d, 0, p)
    got: list[int | None] = []
    reader = threading.Thread(target=lambda: got.append(dev.pending(5)))
    reader.start()
    time.sleep(0.05)
    ev.send(d, q)
    reader.join(5)
    assert got == [p]
    t0 = time.monotonic()
    assert dev.pending(0.05) is None and time.monotonic() - t0 >= 0.04
    closer = threading.Timer(0.05, dev.close)
    closer.start()
    with pytest.raises(OSError):            # a reader blocked on a closed device is woken
        dev.pending(5)
    closer.join()


def test_device_virq_errors(rig):
    with EvtchnDevice(rig.hv) as dev:
        p = dev.bind_virq(VIRQ_CONSOLE)
        with pytest.raises(OSError) as e:
            dev.bind_virq(VIRQ_CONSOLE)
        assert e.value.errno == errno.EEXIST
        ev.send_global_virq(rig.hv, VIRQ_CONSOLE)
        assert dev.pending(0) == p


# -- concurrency -----------------------------------------------------------------------------------

def test_opposite_sends_and_rebinds_do_not_deadlock(rig):
    a, b = rig.domu(), rig.domu()
    lp, rp = pair(rig, a, b)
    stop = time.monotonic() + 0.3
    errors: list[BaseException] = []

    def hammer(src: Domain, port: int) -> None:
        try:
            while time.monotonic() < stop:
                ev.send(src, port)
                guest_clear_pending(a, lp)
                guest_clear_pending(b, rp)
        except BaseException as e:      # noqa: BLE001 - reported by the main thread
            errors.append(e)

    def churn() -> None:
        try:
            while time.monotonic() < stop:
                ev.close(a, lp)
                assert ev.bind_interdomain(a, b.domid, rp) == lp
        except BaseException as e:      # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(a, lp)),
               threading.Thread(target=hammer, args=(b, rp)), threading.Thread(target=churn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert st_of(a, lp).status == EVTCHNSTAT_interdomain


# -- properties ------------------------------------------------------------------------------------

class TwoLevelProtocol(RuleBasedStateMachine):
    """A domU with two vCPUs, IPI ports and loopback channels, a guest that masks ports and runs
    its upcall handler, and the hypervisor's sends, unmasks and closes.

    Checked: an upcall is raised only on the 0->1 edge of a vCPU's upcall byte; a send to a
    masked port never raises one; unmasking a pending masked port raises exactly one (when the
    vCPU had none outstanding); a pending unmasked port is never lost (its selector bit and
    upcall byte are set until the guest handles it); ports do not leak through close/rebind."""

    ports = Bundle("ports")

    def __init__(self) -> None:
        super().__init__()
        self.rig = Rig()
        self.d = self.rig.domu(vcpus=2, max_port=4095)
        self.live: dict[int, int] = {}         # port -> notify vCPU
        self.peak = 0

    def teardown(self) -> None:
        self.rig.close()

    def _upcall_bytes(self) -> list[int]:
        return [upcall(self.d, v) for v in range(2)]

    def _hv_op(self, fn, *args) -> list[tuple[int, int]]:
        before, n = self._upcall_bytes(), len(self.rig.upcalls)
        rc = fn(*args)
        new = self.rig.upcalls[n:]
        after = self._upcall_bytes()
        for v in range(2):
            edge = before[v] == 0 and after[v] == 1
            assert new.count((self.d.domid, v)) == (1 if edge else 0)
        self.rc = rc
        return new

    def _track(self, *ports: int) -> None:
        for p in ports:
            self.live[p] = ev.status(self.d, DOMID_SELF, p).vcpu
        self.peak = max(self.peak, len(self.live))
        assert max(self.live) <= self.peak      # the lowest free port is always taken

    @rule(target=ports, vcpu=st.integers(0, 1))
    def bind_ipi(self, vcpu):
        p = ev.bind_ipi(self.d, vcpu)
        assert p > 0 and p not in self.live and not pending(self.d, p)
        self._track(p)
        return p

    @rule(target=ports)
    def loopback(self):
        a = ev.alloc_unbound(self.d, DOMID_SELF, DOMID_SELF)
        self._hv_op(ev.bind_interdomain, self.d, DOMID_SELF, a)
        b = self.rc
        assert b > 0 and pending(self.d, b)       # the new end is raised once
        self._track(a, b)
        return a

    @rule(port=ports)
    def send(self, port):
        if port not in self.live:
            assert ev.send(self.d, port) == -errno.EINVAL
            return
        new = self._hv_op(ev.send, self.d, port)
        assert self.rc == 0
        status = ev.status(self.d, DOMID_SELF, port)
        target = status.port if status.status == EVTCHNSTAT_interdomain else port
        if masked(self.d, target):
            assert new == [] and pending(self.d, target)

    @rule(port=ports)
    def guest_mask(self, port):
        guest_mask(self.d, port)

    @rule(port=ports)
    def guest_unmask(self, port):
        """Linux's unmask: clear the bit itself unless the port is pending; then Xen must re-raise
        it, so the guest leaves it masked and asks with EVTCHNOP_unmask."""
        if pending(self.d, port):
            self._hv_op(ev.unmask, self.d, port)
        else:
            guest_mask(self.d, port, False)

    @rule(port=ports)
    def unmask(self, port):
        vcpu = self.live.get(port, 0)
        was = masked(self.d, port), pending(self.d, port), sel(self.d, vcpu) >> (port // 64) & 1, \
            upcall(self.d, vcpu)
        new = self._hv_op(ev.unmask, self.d, port)
        if port in self.live:
            assert not masked(self.d, port)
            if was == (True, True, 0, 0):
                assert new == [(self.d.domid, vcpu)]
            else:
                assert new == []
        again = self._hv_op(ev.unmask, self.d, port)
        assert again == []

    @rule(vcpu=st.integers(0, 1))
    def guest_upcall_handler(self, vcpu):
        """Linux's 2-level handler: clear the upcall byte, take the selector, handle every pending
        unmasked port of those words that is bound to this vCPU (clearing its pending bit)."""
        words = sel(self.d, vcpu)
        clear_upcall(self.d, vcpu)
        for w in range(64):
            if words >> w & 1:
                for p in range(w * 64, w * 64 + 64):
                    if pending(self.d, p) and not masked(self.d, p):
                        guest_clear_pending(self.d, p)

    @rule(port=consumes(ports))
    def close(self, port):
        if port not in self.live:
            assert ev.close(self.d, port) == -errno.EINVAL
            return
        s = ev.status(self.d, DOMID_SELF, port)
        assert ev.close(self.d, port) == 0
        del self.live[port]
        if s.status == EVTCHNSTAT_interdomain and s.port != port:
            assert ev.status(self.d, DOMID_SELF, s.port).status == EVTCHNSTAT_unbound
            assert ev.close(self.d, s.port) == 0
            del self.live[s.port]
        assert not pending(self.d, port)

    @invariant()
    def no_lost_event(self):
        for p, vcpu in self.live.items():
            if pending(self.d, p) and not masked(self.d, p):
                assert sel(self.d, vcpu) >> (p // 64) & 1 and upcall(self.d, vcpu) == 1, p

    @invariant()
    def table_bounded(self):
        assert len(self.d.evtchn.chans) <= (self.peak // 64 + 1) * 64


TestTwoLevelProtocol = TwoLevelProtocol.TestCase
TestTwoLevelProtocol.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])


def test_alloc_close_cycles_do_not_leak(rig):
    d = rig.domu(max_port=4095)
    for _ in range(3000):
        p = ev.alloc_unbound(d, DOMID_SELF, 0)
        q = ev.bind_ipi(d, 1)
        assert (p, q) == (1, 2)
        assert ev.close(d, q) == 0 and ev.close(d, p) == 0
    assert len(d.evtchn.chans) == 64
