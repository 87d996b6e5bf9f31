"""Event channels with the 2-level ABI (Xen's common/event_channel.c and common/event_2l.c).

Each domain has a port table (`d.evtchn`, made by evtchn_init). Port 0 is reserved; the table grows
in buckets of 64 ports as Xen's does, and a port is "valid" (a bad one is -EINVAL, a valid free one
reads as closed) when its bucket exists. The operations are plain functions taking the calling
domain and returning a port, 0 or a negative errno, in the order Xen checks things, so the guest
hypercall and dom0's /dev/xen/evtchn (xenpy/board/evtchn_dev.py) share them.

Where the bits live. A domU's pending and mask bitmaps are in its shared_info page and the
per-vCPU selector and upcall byte in its vcpu_info, exactly where the guest reads them. Xen's
shared_info page exists from domain creation and an ARM guest only makes it visible with
XENMEM_add_to_physmap; xenpy cannot slip a page of its own into a domain's RAM buffer, so until the
guest maps it the page is a bytearray here (what Xen's page holds), and map_shared_info() copies it
into the guest frame the guest chose, which from then on *is* the shared_info page (events sent
before the mapping are not lost). vCPU 0 uses shared_info.vcpu_info[0] until it registers its own
vcpu_info; other vCPUs use a scratch vcpu_info until then, as Xen's dummy_vcpu_info (one per domain
here, one per host in Xen).

Dom0 is host-backed: no RAM, no shared_info. Its pending and mask state are Python sets, and a
port bound through an EvtchnDevice carries that device's callback ("consumer"). Delivering an event
to such a port does what dom0's Linux evtchn driver does: mask the port, clear its pending bit and
queue the port for the owner, which unmasks it once handled.

Locking: one lock per domain's event state; operations touching two domains take both locks in domid
order. Upcalls (hv.vcpu_mark_events_pending) and dom0 consumer callbacks run after the locks are
released, so neither the vGIC, the scheduler nor a device ever waits on an event-channel lock.
"""
from __future__ import annotations

import ctypes
import mmap
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Union

from xenpy import trace
from xenpy.arch.arm.guestcopy import copy_from_guest, copy_to_guest
from xenpy.common import atomic
from xenpy.common.hypercall import hypercall
from xenpy.public import errno
from xenpy.public.event_channel import (
    ALLOC_UNBOUND, BIND_INTERDOMAIN, BIND_IPI, BIND_PIRQ, BIND_VCPU, BIND_VIRQ,
    BITS_PER_EVTCHN_WORD, EVTCHN_2L_NR_CHANNELS, EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain,
    EVTCHNOP_bind_ipi, EVTCHNOP_bind_pirq, EVTCHNOP_bind_vcpu, EVTCHNOP_bind_virq, EVTCHNOP_close,
    EVTCHNOP_expand_array, EVTCHNOP_init_control, EVTCHNOP_reset, EVTCHNOP_reset_cont,
    EVTCHNOP_send, EVTCHNOP_set_priority, EVTCHNOP_status, EVTCHNOP_unmask, EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain, EVTCHNSTAT_ipi, EVTCHNSTAT_unbound, EVTCHNSTAT_virq, EXPAND_ARRAY_SIZE,
    INIT_CONTROL_SIZE, NR_VIRQS, PORT_ONLY, RESET, SET_PRIORITY, SHARED_INFO_EVTCHN_MASK,
    SHARED_INFO_EVTCHN_PENDING, STATUS, STATUS_INTERDOMAIN_PORT_OFFSET, STATUS_UNBOUND, STATUS_VIRQ,
    VCPU_INFO_PENDING_SEL, VCPU_INFO_SIZE, VCPU_INFO_UPCALL_PENDING, VIRQ_ARGO, VIRQ_DEBUG,
    VIRQ_TIMER, VIRQ_XENOPROF, VIRQ_XENPMU, XEN_LEGACY_MAX_VCPUS,
)
from xenpy.public.xen import DOMID_SELF, HYPERVISOR_event_channel_op, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu
    from xenpy.common.hypervisor import Hypervisor

# struct evtchn states (xen/include/xen/sched.h).
ECS_FREE, ECS_RESERVED, ECS_UNBOUND, ECS_INTERDOMAIN, ECS_PIRQ, ECS_VIRQ, ECS_IPI = range(7)
# PAGE_SIZE / sizeof(struct evtchn): the struct is cache-line aligned, 64 bytes.
EVTCHNS_PER_BUCKET = 64
DEFAULT_MAX_PORT = 1023       # libxl's default max_event_channels
MAX_PORT_UNLIMITED = 0x7FFFFFFF   # dom0: Xen passes -1, clamped to INT_MAX; the ABI caps it

VIRQ_VCPU, VIRQ_DOMAIN, VIRQ_GLOBAL = range(3)

Consumer = Callable[[int], None]
Kicks = list[Callable[[], None]]
Buffer = Union[bytearray, mmap.mmap]


def virq_type(virq: int) -> int:
    if virq in (VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU):
        return VIRQ_VCPU
    if virq == VIRQ_ARGO:
        return VIRQ_DOMAIN
    return VIRQ_GLOBAL     # including unused numbers and VIRQ_ARCH_* (arch_get_virq_type on ARM)


@dataclass(eq=False)
class Channel:
    port: int
    state: int = ECS_FREE
    notify_vcpu_id: int = 0
    remote_domid: int = 0                 # ECS_UNBOUND: the domain allowed to bind it
    remote: "Domain | None" = None        # ECS_INTERDOMAIN: the peer domain and its port
    remote_port: int = 0
    virq: int = 0
    consumer: Consumer | None = None      # host-backed domain only: who takes its events
    xen_consumer: Consumer | None = None  # a Xen-attached channel (vpl011): Xen takes its events


@dataclass(frozen=True)
class ChannelStatus:
    """EVTCHNOP_status's answer: `dom`/`port` for unbound and interdomain, `virq` for virq."""
    status: int
    vcpu: int
    dom: int = 0
    port: int = 0
    virq: int = 0


class EventChannels:
    """A domain's event-channel state (Xen keeps it in struct domain)."""

    def __init__(self, d: "Domain", max_port: int) -> None:
        self.lock = threading.RLock()
        self.max_port = min(max_port, MAX_PORT_UNLIMITED)
        self.chans: list[Channel] = [Channel(p) for p in range(EVTCHNS_PER_BUCKET)]
        self.chans[0].state = ECS_RESERVED
        self.virq_to_port: list[list[int]] = [[0] * NR_VIRQS for _ in d.vcpus]
        self.host = d.privileged and d.ram is None
        self.page = bytearray(PAGE_SIZE)        # shared_info until a guest frame shows it
        self.dummy_vcpu_info = bytearray(VCPU_INFO_SIZE)
        self.shared_gfn: int | None = None
        self.host_pending: set[int] = set()
        self.host_masked: set[int] = set()
        self.resetting = False
        self.dead = False
        self.free_hint = 1          # every port below it is in use (a search shortcut only)

    def chan(self, port: int) -> Channel | None:
        """port_is_valid(): inside an allocated bucket (free ports included)."""
        return self.chans[port] if 0 <= port < len(self.chans) else None


# -- lifecycle ----------------------------------------------------------------------------------

def evtchn_init(d: "Domain", max_port: int = DEFAULT_MAX_PORT) -> int:
    """Give a new domain its port table (Xen: evtchn_init from domain_create)."""
    d.evtchn = EventChannels(d, max_port)    # type: ignore[attr-defined]
    d.shared_info_gfn = None                  # type: ignore[attr-defined]
    return 0


def evtchn_destroy(d: "Domain") -> None:
    """Close every port of a dying domain. The peer end of an interdomain channel goes back to
    ECS_UNBOUND (bindable by this domid again) and is then notified once, so a peer waiting on
    it wakes and finds the channel unbound (EVTCHNOP_status). Xen itself leaves the peer to learn
    of the death through XenStore (@releaseDomain); the extra event is harmless to such peers."""
    st: EventChannels = d.evtchn
    with st.lock:
        st.dead = True          # no allocation after this point (get_free_port: -EINVAL)
        top = len(st.chans)
        peers = [(ch.remote, ch.remote_port) for ch in st.chans[1:top]
                 if ch is not None and ch.state == ECS_INTERDOMAIN and ch.remote is not None]
    for port in range(top - 1, 0, -1):
        close(d, port, guest=False)
    clear_global_virq_handlers(d)
    for rd, rport in peers:
        evtchn_set_pending(rd, rport)


# -- helpers shared with memory_op and hvm_op ---------------------------------------------------

def domain_by_any_id(cd: "Domain", domid: int) -> "Domain | None":
    """rcu_lock_domain_by_any_id: DOMID_SELF is the caller; other reserved ids name nothing."""
    if domid == DOMID_SELF:
        return cd
    return cd.hv.domains.get(domid)


def xsm_target(src: "Domain", target: "Domain") -> int:
    """The XSM dummy policy's XSM_TARGET: a domain may act on itself; the control domain on any."""
    return 0 if src is target or src.privileged else -errno.EPERM


def _locks(d: "Domain", other: "Domain | None") -> list[threading.RLock]:
    """The event locks of d and other, each once, in domid order (no lock-order deadlock)."""
    if other is None or other is d:
        return [d.evtchn.lock]
    first, second = (d, other) if d.domid < other.domid else (other, d)
    return [first.evtchn.lock, second.evtchn.lock]


@contextmanager
def _locked(d: "Domain", other: "Domain | None") -> Iterator[None]:
    """Hold the event locks of d and other (see _locks)."""
    locks = _locks(d, other)
    for lock in locks:
        lock.acquire()
    try:
        yield
    finally:
        for lock in reversed(locks):
            lock.release()


def _flush(kicks: Kicks) -> None:
    for kick in kicks:
        kick()


# -- bit operations on guest memory -------------------------------------------------------------
#
# The guest changes the same words concurrently from another host thread: it clears pending bits
# and sets or clears mask bits with ldrex/strex, swaps pending_sel to 0 and writes 0 to the upcall
# byte. Xen uses atomic bit operations; here each read-modify-write is an atomic OR/AND on the one
# byte holding the bit (libatomic's __atomic_fetch_{or,and}_1), so no bit the guest changes in the
# same byte or word is lost. The guest's ldrex/strex pair stays correct against it because QEMU
# implements strex as a compare-and-swap against the value ldrex read: a byte changed in between
# makes the guest's strex fail and retry. Without libatomic the fallback is a plain byte
# read-modify-write, whose race window (a few bytecodes) can only resurrect a pending or selector
# bit the guest just cleared (a spurious event, which guests must tolerate) or drop a mask bit the
# guest set in the same byte at the same instant during an EVTCHNOP_unmask.

_BYTE_OP = ((ctypes.c_void_p, ctypes.c_uint8, ctypes.c_int), ctypes.c_uint8)
_FETCH_OR = atomic.fn("__atomic_fetch_or_1", *_BYTE_OP, hold_lock=True)
_FETCH_AND = atomic.fn("__atomic_fetch_and_1", *_BYTE_OP, hold_lock=True)
_ATOMICS = (_FETCH_OR, _FETCH_AND) if _FETCH_OR and _FETCH_AND else None


def _fetch_op(buf: Buffer, off: int, mask: int, is_or: bool) -> int:
    if _ATOMICS is not None and isinstance(buf, mmap.mmap):
        # from_buffer exports the mapping while we hold `cell`, so it cannot be unmapped under us.
        cell = ctypes.c_uint8.from_buffer(buf, off)
        return _ATOMICS[0 if is_or else 1](ctypes.addressof(cell), mask, atomic.SEQ_CST)
    old = buf[off]          # Python-side page (the guest cannot see it), or no libatomic
    buf[off] = old | mask if is_or else old & mask
    return old


def _test_and_set_bit(buf: Buffer, base: int, nr: int) -> bool:
    bit = 1 << (nr & 7)
    return bool(_fetch_op(buf, base + (nr >> 3), bit, True) & bit)


def _test_and_clear_bit(buf: Buffer, base: int, nr: int) -> bool:
    bit = 1 << (nr & 7)
    return bool(_fetch_op(buf, base + (nr >> 3), 0xFF ^ bit, False) & bit)


def _test_bit(buf: Buffer, base: int, nr: int) -> bool:
    return bool(buf[base + (nr >> 3)] >> (nr & 7) & 1)


def _shared(d: "Domain") -> tuple[Buffer, int]:
    """Where the shared_info page is now: the guest frame once mapped, else Xen's own copy."""
    st: EventChannels = d.evtchn
    if st.shared_gfn is not None and d.ram is not None and d.layout is not None:
        return d.ram, (st.shared_gfn << PAGE_SHIFT) - d.layout.ram_base
    return st.page, 0


def _vcpu_info(v: "Vcpu") -> tuple[Buffer, int]:
    d = v.domain
    if v.vcpu_info_gfn is not None and d.ram is not None and d.layout is not None:
        return d.ram, (v.vcpu_info_gfn << PAGE_SHIFT) - d.layout.ram_base + v.vcpu_info_offset
    if v.vcpu_id < XEN_LEGACY_MAX_VCPUS:
        buf, off = _shared(d)
        return buf, off + v.vcpu_id * VCPU_INFO_SIZE
    return d.evtchn.dummy_vcpu_info, 0


# -- the 2-level port operations (event_2l.c) ---------------------------------------------------

def _mark_events_pending(v: "Vcpu", kicks: Kicks) -> None:
    """ARM's vcpu_mark_events_pending: raise the upcall PPI on the 0->1 edge of the upcall byte."""
    buf, off = _vcpu_info(v)
    if not _test_and_set_bit(buf, off + VCPU_INFO_UPCALL_PENDING, 0):
        kicks.append(lambda: v.domain.hv.vcpu_mark_events_pending(v))


def _host_deliver(st: EventChannels, ch: Channel, kicks: Kicks) -> None:
    port, consumer = ch.port, ch.consumer
    if consumer is None or port in st.host_masked or port not in st.host_pending:
        return
    # dom0's kernel takes the event for the device owning the port: masks it and acks it.
    st.host_masked.add(port)
    st.host_pending.discard(port)
    kicks.append(lambda: consumer(port))


def _set_pending(d: "Domain", vcpu_id: int, ch: Channel, kicks: Kicks) -> None:
    if ch.state <= ECS_RESERVED:          # evtchn_usable()
        return
    st: EventChannels = d.evtchn
    port = ch.port
    if d.debugger is not None:            # gdb watches memory a peer may have written (gdbstub)
        d.debugger.on_event(port)
    if trace.ENABLED:
        flow, running = trace.flow_start(d.domid, vcpu_id) if not st.host else (None, False)
        trace.emit("evtchn_set_pending", None, domid=d.domid, port=port, notify_vcpu=vcpu_id,
                   flow=flow, running=running)
    if ch.xen_consumer is not None:       # Xen's own handler, not the guest, takes it
        fn = ch.xen_consumer
        kicks.append(lambda: fn(port))
        return
    if st.host:
        if port not in st.host_pending:
            st.host_pending.add(port)
            _host_deliver(st, ch, kicks)
        return
    buf, off = _shared(d)
    if _test_and_set_bit(buf, off + SHARED_INFO_EVTCHN_PENDING, port):
        return
    if not _test_bit(buf, off + SHARED_INFO_EVTCHN_MASK, port):
        v = d.vcpus[vcpu_id]
        vbuf, voff = _vcpu_info(v)
        if not _test_and_set_bit(vbuf, voff + VCPU_INFO_PENDING_SEL, port // BITS_PER_EVTCHN_WORD):
            _mark_events_pending(v, kicks)


def _clear_pending(d: "Domain", ch: Channel) -> None:
    st: EventChannels = d.evtchn
    if st.host:
        st.host_pending.discard(ch.port)
        return
    buf, off = _shared(d)
    _test_and_clear_bit(buf, off + SHARED_INFO_EVTCHN_PENDING, ch.port)


def _unmask(d: "Domain", ch: Channel, kicks: Kicks) -> None:
    if ch.state <= ECS_RESERVED:
        return
    st: EventChannels = d.evtchn
    port = ch.port
    if st.host:
        if port in st.host_masked:
            st.host_masked.discard(port)
            _host_deliver(st, ch, kicks)
        return
    buf, off = _shared(d)
    if (_test_and_clear_bit(buf, off + SHARED_INFO_EVTCHN_MASK, port)
            and _test_bit(buf, off + SHARED_INFO_EVTCHN_PENDING, port)):
        v = d.vcpus[ch.notify_vcpu_id]
        vbuf, voff = _vcpu_info(v)
        if not _test_and_set_bit(vbuf, voff + VCPU_INFO_PENDING_SEL, port // BITS_PER_EVTCHN_WORD):
            _mark_events_pending(v, kicks)


def _free(d: "Domain", ch: Channel) -> None:
    _clear_pending(d, ch)            # so a rebind does not start with a stale event
    d.evtchn.free_hint = min(d.evtchn.free_hint, ch.port)
    ch.state, ch.notify_vcpu_id, ch.consumer, ch.xen_consumer = ECS_FREE, 0, None, None
    ch.remote, ch.remote_port, ch.remote_domid, ch.virq = None, 0, 0, 0


def _bind_consumer(d: "Domain", ch: Channel, consumer: Consumer | None) -> None:
    st: EventChannels = d.evtchn
    if st.host:
        ch.consumer = consumer
        st.host_masked.discard(ch.port)   # the kernel unmasks a port when a handler is bound


# -- port allocation ----------------------------------------------------------------------------

def _allocate_port(st: EventChannels, port: int) -> int:
    if port > st.max_port or port >= EVTCHN_2L_NR_CHANNELS:
        return -errno.ENOSPC
    if port < len(st.chans):
        return 0 if st.chans[port].state == ECS_FREE else -errno.EBUSY
    while port >= len(st.chans):
        base = len(st.chans)
        st.chans.extend(Channel(p) for p in range(base, base + EVTCHNS_PER_BUCKET))
    return 0


def _get_free_port(d: "Domain") -> int:
    st: EventChannels = d.evtchn
    if d.is_dying or st.dead:
        return -errno.EINVAL
    port = st.free_hint               # Xen scans from 0; every port below the hint is in use
    while True:                       # ends: _allocate_port says -ENOSPC past the cap
        rc = _allocate_port(st, port)
        if rc == 0:
            st.free_hint = port       # not +1: the caller may still leave it free
            return port
        if rc != -errno.EBUSY:
            return rc
        port += 1


# -- Xen-attached channels (alloc_unbound_xen_event_channel) -----------------------------------

def alloc_unbound_xen(d: "Domain", remote_domid: int, fn: Consumer) -> int:
    """A port of `d` that `remote_domid` may bind, whose events go to `fn(port)` in the
    hypervisor instead of the guest (a device model's backend channel). Port or -errno."""
    with d.evtchn.lock:
        port = _get_free_port(d)
        if port < 0:
            return port
        ch = d.evtchn.chans[port]
        ch.state, ch.remote_domid, ch.xen_consumer = ECS_UNBOUND, remote_domid, fn
    return port


def notify_via_xen_event_channel(d: "Domain", port: int) -> None:
    """Signal the remote end of a Xen-attached channel; nothing if it is not bound yet."""
    kicks: Kicks = []
    with _PeerLocked(d, port) as ch:
        if ch is not None and ch.xen_consumer and ch.state == ECS_INTERDOMAIN:
            assert ch.remote is not None
            rch = ch.remote.evtchn.chans[ch.remote_port]
            _set_pending(ch.remote, rch.notify_vcpu_id, rch, kicks)
    _flush(kicks)


# -- EVTCHNOP_* ---------------------------------------------------------------------------------

def alloc_unbound(cd: "Domain", dom: int, remote_dom: int, *,
                  consumer: Consumer | None = None) -> int:
    """A port of `dom` that `remote_dom` may bind. Returns the port or -errno."""
    d = domain_by_any_id(cd, dom)
    if d is None:
        return -errno.ESRCH
    with d.evtchn.lock:
        port = _get_free_port(d)
        if port < 0:
            return port
        rc = xsm_target(cd, d)     # checked after the port search, as Xen does
        if rc:
            return rc
        ch = d.evtchn.chans[port]
        ch.state = ECS_UNBOUND
        ch.remote_domid = cd.domid if remote_dom == DOMID_SELF else remote_dom
        _bind_consumer(d, ch, consumer)
    return port


def bind_interdomain(cd: "Domain", remote_dom: int, remote_port: int, *,
                     consumer: Consumer | None = None) -> int:
    """Connect a new local port to `remote_dom`'s unbound `remote_port`. Returns the local port."""
    rd = domain_by_any_id(cd, remote_dom)
    if rd is None:
        return -errno.ESRCH
    kicks: Kicks = []
    with _locked(cd, rd):
        lport = _get_free_port(cd)
        if lport < 0:
            return lport
        rch = rd.evtchn.chan(remote_port)
        if rch is None or rch.state != ECS_UNBOUND or rch.remote_domid != cd.domid:
            return -errno.EINVAL
        lch = cd.evtchn.chans[lport]
        lch.state, lch.remote, lch.remote_port = ECS_INTERDOMAIN, rd, remote_port
        _bind_consumer(cd, lch, consumer)
        rch.state, rch.remote, rch.remote_port = ECS_INTERDOMAIN, cd, lport
        # Notifications sent to the unbound remote end were dropped: raise one here.
        _set_pending(cd, lch.notify_vcpu_id, lch, kicks)
    _flush(kicks)
    return lport


def bind_virq(cd: "Domain", virq: int, vcpu: int, *, consumer: Consumer | None = None) -> int:
    if not 0 <= virq < NR_VIRQS:
        return -errno.EINVAL
    kind = virq_type(virq)
    if kind != VIRQ_VCPU and vcpu != 0:
        return -errno.EINVAL
    if not 0 <= vcpu < len(cd.vcpus):
        return -errno.ENOENT
    st: EventChannels = cd.evtchn
    with st.lock:
        if kind == VIRQ_GLOBAL and get_global_virq_handler(cd.hv, virq) is not cd:
            return -errno.EBUSY
        if st.virq_to_port[vcpu][virq]:
            return -errno.EEXIST
        port = _get_free_port(cd)
        if port < 0:
            return port
        ch = st.chans[port]
        ch.state, ch.notify_vcpu_id, ch.virq = ECS_VIRQ, vcpu, virq
        _bind_consumer(cd, ch, consumer)
        st.virq_to_port[vcpu][virq] = port
    return port


def bind_ipi(cd: "Domain", vcpu: int) -> int:
    if not 0 <= vcpu < len(cd.vcpus):
        return -errno.ENOENT
    st: EventChannels = cd.evtchn
    with st.lock:
        port = _get_free_port(cd)
        if port < 0:
            return port
        ch = st.chans[port]
        ch.state, ch.notify_vcpu_id = ECS_IPI, vcpu
    return port


class _PeerLocked:
    """Hold the port's domain lock and, for an interdomain channel, its peer's too (both taken in
    domid order, so two domains working towards each other cannot deadlock); gives the channel,
    or None for a port that does not exist. A channel rebound between the two steps is looked at
    again. (A class, not a generator: EVTCHNOP_send takes it on every notification.)"""
    __slots__ = ("cd", "port", "held")

    def __init__(self, cd: "Domain", port: int) -> None:
        self.cd, self.port = cd, port

    def __enter__(self) -> Channel | None:
        cd = self.cd
        lock = cd.evtchn.lock
        while True:
            lock.acquire()
            ch = cd.evtchn.chan(self.port)
            if ch is None:
                self.held = [lock]
                return None
            peer = ch.remote if ch.state == ECS_INTERDOMAIN else None
            lock.release()
            locks = _locks(cd, peer)
            for held in locks:
                held.acquire()
            if (ch.remote if ch.state == ECS_INTERDOMAIN else None) is peer:
                self.held = locks
                return ch
            for held in reversed(locks):
                held.release()

    def __exit__(self, *_: object) -> None:
        for held in reversed(self.held):
            held.release()


def close(cd: "Domain", port: int, *, guest: bool = True) -> int:
    with _PeerLocked(cd, port) as ch:
        # A guest cannot close a Xen-attached event channel (Xen can, as the domain dies).
        if ch is None or (guest and ch.xen_consumer):
            return -errno.EINVAL
        return _close_locked(cd, ch)


def _close_locked(d: "Domain", ch: Channel) -> int:
    st: EventChannels = d.evtchn
    if ch.state in (ECS_FREE, ECS_RESERVED):
        return -errno.EINVAL
    if ch.state == ECS_VIRQ:
        holder = ch.notify_vcpu_id if virq_type(ch.virq) == VIRQ_VCPU else 0
        st.virq_to_port[holder][ch.virq] = 0
    elif ch.state == ECS_INTERDOMAIN:
        rd = ch.remote
        assert rd is not None
        rch = rd.evtchn.chans[ch.remote_port]
        _free(d, ch)
        rch.state, rch.remote_domid, rch.remote, rch.remote_port = ECS_UNBOUND, d.domid, None, 0
        return 0
    _free(d, ch)
    return 0


def send(cd: "Domain", port: int) -> int:
    kicks: Kicks = []
    with _PeerLocked(cd, port) as ch:
        if ch is None or ch.xen_consumer:     # nor send through one
            return -errno.EINVAL
        if ch.state == ECS_INTERDOMAIN:
            peer = ch.remote
            assert peer is not None
            rch = peer.evtchn.chans[ch.remote_port]
            if trace.ENABLED:
                trace.emit("evtchn_send", current_vcpu_of(cd), domid=cd.domid, port=port,
                           remote_domid=peer.domid, remote_port=ch.remote_port)
            _set_pending(peer, rch.notify_vcpu_id, rch, kicks)
        elif ch.state == ECS_IPI:
            if trace.ENABLED:
                trace.emit("evtchn_send", current_vcpu_of(cd), domid=cd.domid, port=port,
                           remote_domid=cd.domid, remote_port=port)
            _set_pending(cd, ch.notify_vcpu_id, ch, kicks)
        elif ch.state != ECS_UNBOUND:     # unbound: the notification is silently dropped
            return -errno.EINVAL
    _flush(kicks)
    return 0


def current_vcpu_of(d: "Domain") -> "Vcpu | None":
    """The vCPU of `d` running on this thread (a hypercall's caller), if any: for the trace."""
    from xenpy.arch.arm.p2m import current_vcpu
    v = getattr(current_vcpu, "v", None)
    return v if v is not None and v.domain is d else None


def status(cd: "Domain", dom: int, port: int) -> ChannelStatus | int:
    d = domain_by_any_id(cd, dom)
    if d is None:
        return -errno.ESRCH
    st: EventChannels = d.evtchn
    ch = st.chan(port)
    if ch is None:
        return -errno.EINVAL
    rc = xsm_target(cd, d)
    if rc:
        return rc
    with st.lock:
        s, vcpu = ch.state, ch.notify_vcpu_id
        if s in (ECS_FREE, ECS_RESERVED):
            return ChannelStatus(EVTCHNSTAT_closed, vcpu)
        if s == ECS_UNBOUND:
            return ChannelStatus(EVTCHNSTAT_unbound, vcpu, dom=ch.remote_domid)
        if s == ECS_INTERDOMAIN:
            assert ch.remote is not None
            return ChannelStatus(EVTCHNSTAT_interdomain, vcpu, dom=ch.remote.domid,
                                 port=ch.remote_port)
        if s == ECS_VIRQ:
            return ChannelStatus(EVTCHNSTAT_virq, vcpu, virq=ch.virq)
        return ChannelStatus(EVTCHNSTAT_ipi, vcpu)


def bind_vcpu(cd: "Domain", port: int, vcpu: int) -> int:
    """Deliver `port` to another vCPU of the caller."""
    if not 0 <= vcpu < len(cd.vcpus):
        return -errno.ENOENT
    st: EventChannels = cd.evtchn
    ch = st.chan(port)
    if ch is None:
        return -errno.EINVAL
    with st.lock:
        if ch.xen_consumer:         # nor re-bind one
            return -errno.EINVAL
        if ch.state == ECS_VIRQ and virq_type(ch.virq) != VIRQ_VCPU \
                or ch.state in (ECS_UNBOUND, ECS_INTERDOMAIN):
            ch.notify_vcpu_id = vcpu
            return 0
        return -errno.EINVAL        # per-vCPU VIRQs, IPIs and free ports stay where they are


def unmask(cd: "Domain", port: int) -> int:
    st: EventChannels = cd.evtchn
    ch = st.chan(port)
    if ch is None:
        return -errno.EINVAL
    kicks: Kicks = []
    with st.lock:
        _unmask(cd, ch, kicks)       # a valid but free port: nothing happens, and 0
    _flush(kicks)
    return 0


def reset(cd: "Domain", dom: int) -> int:
    """Close every port of `dom` (the caller itself, or a domain its controller paused)."""
    d = domain_by_any_id(cd, dom)
    if d is None:
        return -errno.ESRCH
    rc = xsm_target(cd, d)
    if rc:
        return rc
    if d is not cd and not d.pause_count:
        return -errno.EINVAL
    st: EventChannels = d.evtchn
    with st.lock:
        if st.resetting:
            return -errno.EBUSY
        st.resetting = True
        top = len(st.chans)
    try:
        for port in range(1, top):
            close(d, port)
    finally:
        st.resetting = False
    return 0


# -- VIRQs --------------------------------------------------------------------------------------

_global_lock = threading.Lock()
_global_handlers: "weakref.WeakKeyDictionary[Hypervisor, list[Domain | None]]" = \
    weakref.WeakKeyDictionary()


def get_global_virq_handler(hv: "Hypervisor", virq: int) -> "Domain | None":
    table = _global_handlers.get(hv)
    return (table[virq] if table else None) or hv.domains.get(0)


def set_global_virq_handler(hv: "Hypervisor", d: "Domain", virq: int) -> int:
    """XEN_DOMCTL_set_virq_handler: let `d` bind a global VIRQ instead of dom0."""
    if not 0 <= virq < NR_VIRQS or virq_type(virq) != VIRQ_GLOBAL:
        return -errno.EINVAL
    with _global_lock:
        table = _global_handlers.setdefault(hv, [None] * NR_VIRQS)
        if table[virq] is d:
            return 0
        if d.is_dying:
            return -errno.EINVAL
        current = table[virq] or hv.domains.get(0)
        if current is not None and current is not d:
            with current.evtchn.lock:
                if current.evtchn.virq_to_port[0][virq]:
                    return -errno.EBUSY     # the current handler still has it bound
        table[virq] = d
    return 0


def clear_global_virq_handlers(d: "Domain") -> None:
    with _global_lock:
        table = _global_handlers.get(d.hv)
        if table:
            for virq, handler in enumerate(table):
                if handler is d:
                    table[virq] = None


def send_guest_virq(v: "Vcpu", virq: int) -> None:
    """Raise `virq` for `v` (per-vCPU VIRQs) or for v's domain (the others)."""
    if virq_type(virq) != VIRQ_VCPU:
        send_guest_domain_virq(v.domain, virq)
        return
    d = v.domain
    st: EventChannels = d.evtchn
    kicks: Kicks = []
    with st.lock:
        port = st.virq_to_port[v.vcpu_id][virq]
        if port:
            _set_pending(d, v.vcpu_id, st.chans[port], kicks)
    _flush(kicks)


def send_guest_domain_virq(d: "Domain | None", virq: int) -> None:
    if d is None:
        return
    st: EventChannels = d.evtchn
    kicks: Kicks = []
    with st.lock:
        port = st.virq_to_port[0][virq]
        if port:
            ch = st.chans[port]
            _set_pending(d, ch.notify_vcpu_id, ch, kicks)
    _flush(kicks)


def send_global_virq(hv: "Hypervisor", virq: int) -> None:
    """A global VIRQ (VIRQ_DOM_EXC, VIRQ_CONSOLE, ...) goes to its handler domain (dom0 by
    default)."""
    send_guest_domain_virq(get_global_virq_handler(hv, virq), virq)


def evtchn_set_pending(d: "Domain", port: int) -> None:
    """Raise `port` of `d` for its bound vCPU (Xen-internal notification; bad ports ignored)."""
    st: EventChannels = d.evtchn
    kicks: Kicks = []
    with st.lock:
        ch = st.chan(port)
        if ch is not None:
            _set_pending(d, ch.notify_vcpu_id, ch, kicks)
    _flush(kicks)


# -- shared_info and vcpu_info placement --------------------------------------------------------

def map_shared_info(d: "Domain", gfn: int) -> int:
    """XENMAPSPACE_shared_info: show the shared_info page at guest frame `gfn`.

    The page's contents (events raised so far, wallclock) are copied into that frame, which is
    the shared_info page from now on. Mapping it again elsewhere moves it: the new frame gets the
    current contents and the old frame is ordinary RAM again, keeping a stale copy. (Xen 4.4
    left both frames mapping the one page; current Xen refuses with -EBUSY until it is unmapped;
    xenpy's RAM is one host buffer per domain, so neither an alias nor a hole is possible.)"""
    if d.ram is None or d.layout is None:
        return -errno.EINVAL
    off = (gfn << PAGE_SHIFT) - d.layout.ram_base
    if off < 0 or off + PAGE_SIZE > d.mem_bytes:
        return -errno.EINVAL        # xenpy can only back the page with the domain's RAM
    st: EventChannels = d.evtchn
    with st.lock:
        if st.shared_gfn != gfn:
            buf, cur = _shared(d)
            d.ram[off:off + PAGE_SIZE] = bytes(buf[cur:cur + PAGE_SIZE])
            st.shared_gfn = gfn
            d.shared_info_gfn = gfn       # type: ignore[attr-defined]
    return 0


def vcpu_info_register(v: "Vcpu", gfn: int, offset: int) -> None:
    """VCPUOP_register_vcpu_info, once validated: move v's vcpu_info to gfn:offset.

    As Xen's map_guest_area: the new area gets the old contents (zeros if the vCPU was on the
    scratch vcpu_info), then every selector bit is set and the vCPU is marked pending, so no
    event raised before the move is lost (the guest sees a spurious upcall, which it tolerates)."""
    d = v.domain
    st: EventChannels = d.evtchn
    kicks: Kicks = []
    with st.lock:
        buf, off = _vcpu_info(v)
        old = (bytes(VCPU_INFO_SIZE) if buf is st.dummy_vcpu_info
               else bytes(buf[off:off + VCPU_INFO_SIZE]))
        v.vcpu_info_gfn, v.vcpu_info_offset = gfn, offset
        buf, off = _vcpu_info(v)
        buf[off:off + VCPU_INFO_SIZE] = old
        sel = off + VCPU_INFO_PENDING_SEL
        buf[sel:sel + 8] = b"\xff" * 8
        _mark_events_pending(v, kicks)
    _flush(kicks)


def vcpu_upcall_pending(v: "Vcpu") -> bool:
    """evtchn_upcall_pending of v (lock-free: the vGIC and WFI paths may ask at any time)."""
    st: EventChannels | None = getattr(v.domain, "evtchn", None)
    if st is None or st.host:
        return False
    buf, off = _vcpu_info(v)
    return bool(buf[off + VCPU_INFO_UPCALL_PENDING] & 1)


def shared_info_read(d: "Domain", offset: int, length: int) -> bytes:
    with d.evtchn.lock:
        buf, off = _shared(d)
        return bytes(buf[off + offset:off + offset + length])


def shared_info_write(d: "Domain", offset: int, data: bytes) -> None:
    """For other parts of the hypervisor (wallclock): write into shared_info wherever it is."""
    if offset < 0 or offset + len(data) > PAGE_SIZE:
        raise ValueError("outside the shared_info page")
    with d.evtchn.lock:
        buf, off = _shared(d)
        buf[off + offset:off + offset + len(data)] = data


def vcpu_info_write(v: "Vcpu", offset: int, data: bytes) -> None:
    """For other parts of the hypervisor (vcpu_time_info): write into v's current vcpu_info."""
    if offset < 0 or offset + len(data) > VCPU_INFO_SIZE:
        raise ValueError("outside vcpu_info")
    with v.domain.evtchn.lock:
        buf, off = _vcpu_info(v)
        buf[off + offset:off + offset + len(data)] = data


def is_pending(d: "Domain", port: int) -> bool:
    st: EventChannels = d.evtchn
    with st.lock:
        if st.host:
            return port in st.host_pending
        buf, off = _shared(d)
        return 0 < port < EVTCHN_2L_NR_CHANNELS and _test_bit(buf, off + SHARED_INFO_EVTCHN_PENDING,
                                                             port)


def is_masked(d: "Domain", port: int) -> bool:
    st: EventChannels = d.evtchn
    with st.lock:
        if st.host:
            return port in st.host_masked
        buf, off = _shared(d)
        return not 0 < port < EVTCHN_2L_NR_CHANNELS or _test_bit(buf, off + SHARED_INFO_EVTCHN_MASK,
                                                                port)


# -- HYPERVISOR_event_channel_op ----------------------------------------------------------------

_BIND_OPS = {
    EVTCHNOP_alloc_unbound: (ALLOC_UNBOUND, alloc_unbound),
    EVTCHNOP_bind_interdomain: (BIND_INTERDOMAIN, bind_interdomain),
    EVTCHNOP_bind_virq: (BIND_VIRQ, bind_virq),
    EVTCHNOP_bind_ipi: (BIND_IPI, bind_ipi),
}


@hypercall(HYPERVISOR_event_channel_op)
def do_event_channel_op(v: "Vcpu", args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    d, a = v.domain, v.arch
    assert a is not None
    bind = _BIND_OPS.get(cmd)
    if bind is not None:
        # The struct's last field is the port, written back on success.
        layout, op = bind
        *ins, _ = layout.unpack(copy_from_guest(a, arg, layout.size))
        rc = op(d, *ins)
        if rc >= 0:
            copy_to_guest(a, arg, layout.pack(*ins, rc))
        return min(rc, 0)
    if cmd in (EVTCHNOP_close, EVTCHNOP_send, EVTCHNOP_unmask):
        (port,) = PORT_ONLY.unpack(copy_from_guest(a, arg, PORT_ONLY.size))
        op = {EVTCHNOP_close: close, EVTCHNOP_send: send, EVTCHNOP_unmask: unmask}[cmd]
        if cmd == EVTCHNOP_send:
            v.stats.evtchn_sends += 1
        return op(d, port)
    if cmd == EVTCHNOP_status:
        raw = copy_from_guest(a, arg, STATUS.size)
        dom, port, _, _, union = STATUS.unpack(raw)
        res = status(d, dom, port)
        if isinstance(res, int):
            return res
        u = bytearray(union)          # Xen writes back only the union member that applies
        if res.status == EVTCHNSTAT_unbound:
            STATUS_UNBOUND.pack_into(u, 0, res.dom)
        elif res.status == EVTCHNSTAT_interdomain:
            STATUS_UNBOUND.pack_into(u, 0, res.dom)      # field by field: padding untouched
            STATUS_VIRQ.pack_into(u, STATUS_INTERDOMAIN_PORT_OFFSET, res.port)
        elif res.status == EVTCHNSTAT_virq:
            STATUS_VIRQ.pack_into(u, 0, res.virq)
        out = raw[:4] + STATUS.pack(dom, port, res.status, res.vcpu, bytes(u))[4:]
        copy_to_guest(a, arg, out)
        return 0
    if cmd == EVTCHNOP_bind_vcpu:
        port, vcpu = BIND_VCPU.unpack(copy_from_guest(a, arg, BIND_VCPU.size))
        return bind_vcpu(d, port, vcpu)
    if cmd in (EVTCHNOP_reset, EVTCHNOP_reset_cont):
        (dom,) = RESET.unpack(copy_from_guest(a, arg, RESET.size))
        return reset(d, dom)
    if cmd == EVTCHNOP_bind_pirq:
        copy_from_guest(a, arg, BIND_PIRQ.size)
        return -errno.EOPNOTSUPP          # ARM has no PIRQs (!CONFIG_HAS_PIRQ)
    if cmd in (EVTCHNOP_init_control, EVTCHNOP_expand_array):
        copy_from_guest(a, arg, INIT_CONTROL_SIZE if cmd == EVTCHNOP_init_control
                        else EXPAND_ARRAY_SIZE)
        return -errno.EOPNOTSUPP          # built without the FIFO ABI: guests fall back to 2-level
    if cmd == EVTCHNOP_set_priority:
        port, _prio = SET_PRIORITY.unpack(copy_from_guest(a, arg, SET_PRIORITY.size))
        return -errno.EINVAL if d.evtchn.chan(port) is None else -errno.ENOSYS   # 2-level: none
    return -errno.ENOSYS
