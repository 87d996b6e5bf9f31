"""Domains and vCPUs (Xen's common/domain.c): lifecycle, pause, shutdown, destruction.

A domain's RAM is one host buffer (a memfd, so dom0's toolstack can map a foreign domain's pages
through privcmd as on Xen) mapped into each of its vCPUs. Scheduling state of a vCPU is here; its
CPU state is the arch layer's ArmVcpu.
"""
from __future__ import annotations

import mmap
import os
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenpy import trace
from xenpy.arch.arm.domain import arch_domain_init
from xenpy.arch.arm.guestcopy import copy_from_guest
from xenpy.arch.arm.p2m import P2M
from xenpy.arch.arm.vcpu import ArmVcpu, CpuContext
from xenpy.common import event_channel
from xenpy.common.hypercall import dispatch, hypercall
from xenpy.public import errno
from xenpy.public.vcpu import (RUNSTATE_offline, VCPU_REGISTER_VCPU_INFO_SIZE,
                               VCPUOP_register_runstate_memory_area, VCPUOP_register_vcpu_info)
from xenpy.public.xen import HYPERVISOR_vcpu_op, PAGE_SIZE
from xenpy.public.arch_arm import GuestLayout
from xenpy.public.sched import SHUTDOWN_NAMES

if TYPE_CHECKING:
    from xenpy.common.hypervisor import Hypervisor


class VcpuStats:
    """Per-vCPU event counters behind `xl top`: plain increments where each trap is already
    handled (hypercalls are ArmVcpu.hypercalls). Exit classes as Jailhouse counts them."""
    __slots__ = ("mmio", "virq", "vsgi", "psci", "wfi", "evtchn_sends")

    def __init__(self) -> None:
        self.mmio = self.virq = self.vsgi = self.psci = self.wfi = self.evtchn_sends = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class Vcpu:
    """A vCPU as the scheduler sees it."""

    def __init__(self, domain: "Domain", vcpu_id: int) -> None:
        self.domain = domain
        self.vcpu_id = vcpu_id
        self.online = False
        self.blocked = False          # waiting in WFI / SCHEDOP_block for an event
        self.wake_pending = False     # an event arrived while running: do not block on the next WFI
        self.running_on: int | None = None
        self.processor = 0            # the pCPU it last ran on (xl vcpu-list's CPU column)
        self.hard_affinity: frozenset[int] | None = None   # None: all pCPUs
        self.soft_affinity: frozenset[int] | None = None
        self.cpu_time_ns = 0                      # of the stints that ended
        self.run_since_ns: int | None = None      # start of the stint on a pCPU now, if any
        self.held = 0                 # > 0 while a p2m update keeps it off its pCPU
        self.p2m_pending: list = []   # stage-2 changes its Unicorn instance has not applied yet
        self.last_ran = 0.0
        self.arch: ArmVcpu | None = None
        self.vcpu_info_gfn: int | None = None     # VCPUOP_register_vcpu_info
        self.vcpu_info_offset = 0
        self.runstate_va: int | None = None       # VCPUOP_register_runstate_memory_area
        self.timer_deadline: int | None = None    # host ns of its next armed timer
        self.timer_fired: int | None = None       # the deadline the ticker last acted on
        self.runstate = RUNSTATE_offline
        self.runstate_entry = domain.hv.clock.now_ns()
        self.runstate_time = [0, 0, 0, 0]         # ns in running, runnable, blocked, offline
        self.stats = VcpuStats()
        self.sched_priv = None        # its scheduler's data (credit2's credit)

    @property
    def runnable(self) -> bool:
        d = self.domain
        return (self.online and not self.blocked and not self.held and not d.pause_count
                and not d.is_shutdown and not d.is_dying and self.arch is not None)

    def cpu_time_now_ns(self) -> int:
        """CPU time including the stint running now (a lone guest may never leave its pCPU)."""
        since = self.run_since_ns
        return self.cpu_time_ns + (time.perf_counter_ns() - since if since is not None else 0)

    def __repr__(self) -> str:
        return f"d{self.domain.domid}v{self.vcpu_id}"


@dataclass
class ConsoleLog:
    """The console `xl console` shows, from the domain's birth (so `xl create -c` misses nothing).

    On Xen `xl console` shows the PV console ring only; console_io output goes to the hypervisor's
    serial line. xenpy has no serial line to look at, so console_io text stands in for it here
    until the domain first writes to its ring: from then on the log holds ring output only (the
    console_io copy is dropped, so the same text never appears twice). Offsets are absolute:
    `base` counts the bytes dropped from the front (the switch to the ring, the size limit)."""
    data: bytearray = field(default_factory=bytearray)
    line: bytearray = field(default_factory=bytearray)
    limit: int = 1 << 20
    base: int = 0
    from_ring: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def _add(self, text: bytes) -> None:
        self.data += text
        if len(self.data) > self.limit:
            drop = len(self.data) - self.limit
            del self.data[:drop]
            self.base += drop
        self.cond.notify_all()

    def append(self, text: bytes) -> list[bytes]:
        """console_io output: shown while the ring is unused; returns the complete lines (for
        the hypervisor log's `(dN) ...`)."""
        with self.cond:
            if not self.from_ring:
                self._add(text)
        self.line += text
        *lines, rest = bytes(self.line).split(b"\n")
        self.line = bytearray(rest)
        return lines

    def append_ring(self, text: bytes) -> None:
        """Output xenconsoled read from the PV console ring."""
        with self.cond:
            if not self.from_ring:
                self.from_ring = True
                self.base += len(self.data)
                self.data.clear()
            self._add(text)

    def read(self, offset: int, size: int) -> tuple[int, bytes]:
        """(offset of the first byte returned, bytes) from absolute `offset`; a reader behind
        what is kept resumes at the oldest byte kept. Call with `cond` held."""
        start = max(offset, self.base)
        return start, bytes(self.data[start - self.base:start - self.base + size])

    @property
    def end(self) -> int:
        return self.base + len(self.data)


class Domain:
    def __init__(self, hv: "Hypervisor", domid: int, *, max_vcpus: int, privileged: bool = False,
                 handle: bytes | None = None) -> None:
        self.hv = hv
        self.domid = domid
        self.privileged = privileged
        self.handle = handle or uuidlib.uuid4().bytes
        self.vcpus = [Vcpu(self, i) for i in range(max_vcpus)]
        self.pause_count = 1          # Xen creates domains paused; the toolstack unpauses
        self.is_shutdown = False
        self.shutdown_code = -1
        self.is_dying = False
        self.max_pages = 0
        self.tot_pages = 0
        self.vm_assist = 0                 # VMASST_TYPE_* bits the guest enabled (vm_assist)
        self.layout: GuestLayout | None = None
        self.vgic = None                   # the arch layer's VGicV2, once the domain has RAM
        self.vpl011 = None                 # arch.arm.vpl011.VPL011 after XEN_DOMCTL_vuart_op
        self.vuart_console = ConsoleLog(from_ring=True)   # what xenconsoled read from it
        self.vuart_input = bytearray()     # typed at `xl console -t vuart`
        self.p2m: P2M | None = None        # frames mapped over or beside RAM (grants, devices)
        self.evtchn = None                 # event_channel.EventChannels (evtchn_init)
        self.shared_info_gfn: int | None = None
        self.hvm_params: dict[int, int] = {}
        self.ram: mmap.mmap | None = None
        self.ram_fd = -1
        self.console = ConsoleLog()
        self.console_input = bytearray()   # typed at `xl console`, read with CONSOLEIO_read
        self.magic_gfns: dict[int, int] = {}   # populated magic frame -> its page after RAM
        self._mem_bytes = 0
        self.unknown_hypercalls: set[int] = set()
        self.created = time.monotonic()
        self.debugger = None               # the board's gdb stub while one is attached
        self.lock = threading.RLock()
        self.cpupool = None                # common.cpupool.Cpupool: where its vCPUs may run
        self.sched_priv = None             # its pool's scheduler's data (credit2's weight, cap)

    # -- memory ---------------------------------------------------------------------------------

    def populate_ram(self, layout: GuestLayout, mem_bytes: int) -> None:
        """Give the domain its RAM: one shared host buffer, mapped into every vCPU.

        The buffer also holds the layout's magic pages after the RAM bank, so they are the
        domain's own memory like any other page (grantable, mappable by dom0), as on Xen.
        """
        if self.ram is not None:
            raise ValueError("RAM already populated")
        self.layout = layout
        self._mem_bytes = mem_bytes
        size = mem_bytes + layout.nr_magic_pages * 0x1000
        self.ram_fd = os.memfd_create(f"xenpy-d{self.domid}-ram", 0)
        os.ftruncate(self.ram_fd, size)
        self.ram = mmap.mmap(self.ram_fd, size)
        self.tot_pages = mem_bytes >> 12
        for v in self.vcpus:
            v.arch = ArmVcpu(v.vcpu_id, self.ram, layout.ram_base, mem_bytes,
                             on_hypercall=lambda nr, args, v=v: dispatch(v, nr, args),
                             on_psci=lambda _a, v=v: self.hv.on_psci(v),
                             log=self.hv.log)
        self.p2m = P2M(self)
        for v in self.vcpus:
            v.arch.p2m_extra = self.p2m.extra
            v.arch.log_name = repr(v)      # "dNvM" in the hypervisor's messages about it
        arch_domain_init(self)

    def populate_magic(self, gfns: list[int]) -> None:
        """Back the layout's magic frames with their pages after the RAM bank."""
        assert self.p2m is not None and self.layout is not None and self.ram is not None
        order = self.layout.magic_pfns(self._mem_bytes)
        for gfn in gfns:
            k = order.index(gfn)
            self.p2m.map(gfn, self.ram, self._mem_bytes + k * 0x1000, writable=True)
            self.magic_gfns[gfn] = k
        self.tot_pages += len(gfns)

    def frame(self, gfn: int) -> memoryview | None:
        """The host memory behind one guest frame (RAM or mapped), for dom0's board services."""
        assert self.layout is not None
        m = self.p2m.lookup(gfn) if self.p2m is not None else None
        if m is not None:
            return memoryview(m.buffer)[m.offset:m.offset + 0x1000]
        off = (gfn << 12) - self.layout.ram_base
        if self.ram is None or off < 0 or off + 0x1000 > self._mem_bytes:
            return None
        return memoryview(self.ram)[off:off + 0x1000]

    @property
    def mem_bytes(self) -> int:
        """The RAM bank's size (tot_pages also counts the magic pages, as on Xen)."""
        return self._mem_bytes

    def ram_write(self, ipa: int, data: bytes) -> None:
        assert self.ram is not None and self.layout is not None
        off = ipa - self.layout.ram_base
        if off < 0 or off + len(data) > self._mem_bytes:
            raise ValueError(f"{ipa:#x}+{len(data):#x} is outside the domain's RAM")
        self.ram[off:off + len(data)] = data

    # -- state ------------------------------------------------------------------------------------

    def set_vcpu_context(self, vcpu_id: int, ctx: CpuContext) -> int:
        if not 0 <= vcpu_id < len(self.vcpus):
            return -errno.ESRCH
        v = self.vcpus[vcpu_id]
        if v.arch is None:
            return -errno.EINVAL    # no memory yet
        v.arch.set_context(ctx)
        v.online = True
        return 0

    def shutdown(self, reason: int) -> None:
        """SCHEDOP_shutdown: stop every vCPU and tell dom0 (VIRQ_DOM_EXC) so its toolstack acts."""
        with self.lock:
            if self.is_shutdown or self.is_dying:
                return
            self.is_shutdown = True
            self.shutdown_code = reason
        if trace.ENABLED:
            trace.emit("dom_shutdown", None, domid=self.domid, reason=reason)
        self.hv.log(f"Domain {self.domid} shutdown: {SHUTDOWN_NAMES.get(reason, reason)}")
        for v in self.vcpus:
            if v.arch is not None:
                v.arch.stop()
        self.hv.domain_exception(self)

    def state_letters(self) -> str:
        """xl list's six State characters: r b p s <reason> d."""
        running = any(v.running_on is not None for v in self.vcpus)
        online = [v for v in self.vcpus if v.online]
        blocked = bool(online) and not running and all(v.blocked for v in online)
        if self.privileged:   # dom0's userspace is the host: it runs whenever we ask it
            running, blocked = True, False
        letters = ["r" if running and not self.is_shutdown else "-",
                   "b" if blocked and not self.is_shutdown and not self.pause_count else "-",
                   "p" if self.pause_count and not self.is_shutdown else "-",
                   "s" if self.is_shutdown else "-",
                   "-rscwS"[self.shutdown_code] if self.is_shutdown and 0 <= self.shutdown_code <= 5
                   else "-",
                   "d" if self.is_dying else "-"]
        return "".join(letters)

    def cpu_time_ns(self) -> int:
        return sum(v.cpu_time_now_ns() for v in self.vcpus)

    def release(self) -> None:
        """Free the domain's resources once no vCPU runs any more."""
        for v in self.vcpus:
            if v.arch is not None:
                v.arch.close()
                v.arch = None
        if self.ram is not None:
            try:
                self.ram.close()
            except BufferError:     # a view is still exported (e.g. a test holds one)
                pass
            os.close(self.ram_fd)
            self.ram = None


# -- HYPERVISOR_vcpu_op: on ARM only the two registration calls exist ----------------------------

VCPU_INFO_SIZE = 48
ARM_ALLOWED_VCPUOPS = (VCPUOP_register_runstate_memory_area, VCPUOP_register_vcpu_info)


@hypercall(HYPERVISOR_vcpu_op)
def do_vcpu_op(v: Vcpu, args: tuple[int, ...]) -> int:
    cmd, vcpuid, arg = args[0], args[1], args[2]
    if cmd not in ARM_ALLOWED_VCPUOPS:
        return -errno.EINVAL
    d = v.domain
    if vcpuid >= len(d.vcpus):
        return -errno.ENOENT
    target = d.vcpus[vcpuid]
    assert v.arch is not None
    if cmd == VCPUOP_register_runstate_memory_area:
        # struct vcpu_register_runstate_memory_area holds a guest handle (8 bytes on ARM).
        target.runstate_va = int.from_bytes(copy_from_guest(v.arch, arg, 8), "little")
        return 0
    raw = copy_from_guest(v.arch, arg, VCPU_REGISTER_VCPU_INFO_SIZE)
    gfn = int.from_bytes(raw[0:8], "little")
    offset = int.from_bytes(raw[8:12], "little")
    if offset & 7 or offset + VCPU_INFO_SIZE > PAGE_SIZE:
        return -errno.ENXIO        # must not cross a page, must be xen_ulong_t aligned
    assert d.layout is not None
    ipa = gfn << 12
    if not (d.layout.ram_base <= ipa < d.layout.ram_base + d.mem_bytes):
        return -errno.EINVAL
    if target.vcpu_info_gfn is not None:
        return -errno.EBUSY
    event_channel.vcpu_info_register(target, gfn, offset)
    return 0
