"""The hypervisor instance: its domains, pCPUs, log and version (Xen's setup.c and common state)."""
from __future__ import annotations

import collections
import contextlib
import gc
import getpass
import platform
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

# Importing the handler modules registers them in the hypercall table.
from xenpy import trace
from xenpy.common import console, event_channel, grant_table, kernel, memory, schedule  # noqa: F401
from xenpy.arch.arm import hvm
from xenpy.arch.arm import vpsci
from xenpy.arch.arm.clock import HostClock, InstructionClock
from xenpy.arch.arm.domain import sample_timers
from xenpy.common.domain import ConsoleLog, Domain, Vcpu
from xenpy.common.hypercall import hypercall
from xenpy.common.cpupool import DEFAULT_SCHEDULER, Cpupools, scheduler_by_name
from xenpy.common.schedule import Scheduler
from xenpy.public import errno
from xenpy.public.arch_arm import GUEST_EVTCHN_PPI, LAYOUTS, GuestLayout
from xenpy.public.event_channel import VIRQ_DOM_EXC
from xenpy.public.xen import DOMID_FIRST_RESERVED, HYPERVISOR_hvm_op

def _malloc_trim() -> None:
    """Give the C heap's free pages back to the host (glibc keeps what Unicorn freed)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    import ctypes
    _LIBC = ctypes.CDLL("libc.so.6")
    _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):
    _LIBC = None


# arch/arm/hvm.py imports nothing from common/, so its handler is registered here.
hypercall(HYPERVISOR_hvm_op)(hvm.do_hvm_op)


@dataclass(frozen=True)
class MmioDevice:
    """A host device window (machine addresses) that the hypervisor can map into a domain with
    XEN_DOMCTL_memory_mapping (iomem passthrough). An access calls read(domid, offset, size) or
    write(domid, offset, size, value); raising an exception with an `offset` attribute makes the
    accessing guest take a data abort."""
    name: str
    base: int                                          # page aligned
    size: int                                          # a whole number of pages
    read: Callable[[int, int, int], int]
    write: Callable[[int, int, int, int], None]
    xen_owned: bool = False      # used by Xen itself (its console UART): no domain may have it
    model: object = None         # the device model behind the window, for the board's own use

    @property
    def pfns(self) -> range:
        return range(self.base >> 12, (self.base + self.size) >> 12)


class BoardLock:
    """A deterministic board's lock: the executor holds it while guests run, dom0 while it acts.
    Dom0 goes first: the executor starts a round only when no one in dom0 wants the lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cv = threading.Condition()
        self._wanted = 0

    def acquire(self) -> bool:
        with self._cv:
            self._wanted += 1
        self._lock.acquire()
        with self._cv:
            self._wanted -= 1
            self._cv.notify_all()
        return True

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @contextlib.contextmanager
    def round(self):
        """The executor's hold: after dom0's pending requests."""
        with self._cv:
            while self._wanted:
                self._cv.wait(0.05)
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()


class _NoLock:
    """The board lock of a free-running board: dom0 and guests act concurrently."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def acquire(self, *args: object) -> bool:
        return True

    def release(self) -> None:
        return None


@dataclass
class HypervisorConfig:
    nr_pcpus: int = 2
    total_mem_mb: int = 2048
    dom0_mem_mb: int = 512
    dom0_max_vcpus: int | None = None     # default: one per pCPU
    dom0_vcpus_pin: bool = False
    layout: str = "4.4"                   # the arm32 default guest memory map (Xen 4.4's)
    cmdline: str = ""
    slice_ms: float = 10.0
    vgic_strict: bool = False             # unimplemented vGIC registers abort instead of RAZ/WI
    devices: tuple[MmioDevice, ...] = ()  # the board's device windows (iomem passthrough)
    boot_log: tuple[str, ...] = ()        # what Xen printed while it read the boot modules
    deterministic: bool = False           # the instruction clock and the lock-step scheduler
    seed: int | None = None               # deterministic mode: vary the quanta reproducibly
    timer_clock_frequency: int = 0        # the host DT's timer clock-frequency (0: none given)


class Hypervisor:
    version = (4, 4)
    extraversion = ".0-xenpy"
    capabilities = "xen-3.0-armv7l "
    changeset = "xenpy"

    def __init__(self, config: HypervisorConfig | None = None,
                 sink: Callable[[str], None] | None = None) -> None:
        self.config = c = config or HypervisorConfig()
        self.cmdline = c.cmdline
        self.default_layout: GuestLayout = LAYOUTS[c.layout]
        self.nr_pcpus = c.nr_pcpus
        self.total_pages = c.total_mem_mb << 8
        self.domains: dict[int, Domain] = {}
        self.dmesg: collections.deque[str] = collections.deque(maxlen=4096)
        self._sink = sink
        self._log_lock = threading.Lock()
        self._next_domid = 1
        self.dom_exc_listeners: list[Callable[[int], None]] = []
        # Consoles of recently destroyed domains, so `xl create -c` of a guest that is gone before
        # the console attaches still shows everything it printed (xenconsoled keeps logs too).
        self.dead_consoles: collections.OrderedDict[int, ConsoleLog] = collections.OrderedDict()
        self.dead_guests_cpu_ns = 0    # CPU time of destroyed domUs: not dom0's either
        self.compile_info = {"compiler": f"Python {platform.python_version()}",
                             "compile_by": getpass.getuser()[:15], "compile_domain": "xenpy",
                             "compile_date": time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())}
        self.started = time.monotonic()
        # Dom0's in-board services (their evtchn devices), which a deterministic round waits for.
        self.services: list = []
        self.dom0_waiting = 0       # dom0 requests waiting for the guests (console, evtchn reads)
        if c.deterministic:
            from xenpy.common.sched_deterministic import DeterministicScheduler
            self.clock: HostClock | InstructionClock = InstructionClock()
            # Held by the executor while guests run and by dom0 while it acts.
            self.big_lock: BoardLock | _NoLock = BoardLock()
            self.scheduler: Scheduler = DeterministicScheduler(self, c.nr_pcpus, c.slice_ms,
                                                               seed=c.seed)
        else:
            self.clock, self.big_lock = HostClock(), _NoLock()
            self.scheduler = Scheduler(self, c.nr_pcpus, c.slice_ms)
        self.cpupools = Cpupools(self, c.nr_pcpus, self._boot_scheduler())
        self._create_dom0()

    def _boot_scheduler(self):
        """scheduler_init: sched= on the command line picks Pool-0's scheduler (the last one
        given counts, as Xen parses options in order)."""
        opt = DEFAULT_SCHEDULER
        for word in self.cmdline.split():
            if word.startswith("sched="):
                opt = word[len("sched="):][:9]     # Xen's opt_sched is a char[10]
        self._sched_log: list[str] = []
        sched = scheduler_by_name(opt)
        if sched is None:
            sched = scheduler_by_name(DEFAULT_SCHEDULER)
            assert sched is not None
            self._sched_log += [f"Could not find scheduler: {opt}",
                                f"Using '{sched.name}' ({sched.opt_name})"]
        self._sched_log.append(f"Using scheduler: {sched.name} ({sched.opt_name})")
        return sched

    def _create_dom0(self) -> None:
        c = self.config
        n = c.dom0_max_vcpus or c.nr_pcpus
        dom0 = Domain(self, 0, max_vcpus=n, privileged=True)
        dom0.tot_pages = dom0.max_pages = c.dom0_mem_mb << 8
        dom0.pause_count = 0
        for v in dom0.vcpus:
            v.online = True
            v.processor = v.vcpu_id % c.nr_pcpus
            if c.dom0_vcpus_pin:
                v.hard_affinity = frozenset({v.vcpu_id % c.nr_pcpus})
        event_channel.evtchn_init(dom0, max_port=event_channel.MAX_PORT_UNLIMITED)
        grant_table.gnttab_init(dom0)
        self.cpupools.add_domain(dom0, 0)
        self.domains[0] = dom0
        self.log(f"Xen version {self.version[0]}.{self.version[1]}{self.extraversion} (xenpy) "
                 f"{c.nr_pcpus} pCPUs, {c.total_mem_mb} MB")
        for line in c.boot_log:
            self.log(line)
        self.log(f"Command line: {self.cmdline}")
        for line in self._sched_log:
            self.log(line)
        self.log(f"*** LOADING DOMAIN 0 *** ({c.dom0_mem_mb} MB, {n} vCPUs"
                 f"{', pinned' if c.dom0_vcpus_pin else ''})")

    def start(self) -> None:
        self.scheduler.start()

    @contextlib.contextmanager
    def dom0_waits(self):
        """Around a dom0 request that waits for the guests: on a deterministic board idle time
        passes only meanwhile."""
        with self.scheduler.cond:
            self.dom0_waiting += 1
            self.scheduler.cond.notify_all()
        try:
            yield
        finally:
            with self.scheduler.cond:
                self.dom0_waiting -= 1

    def wait_for_services(self, timeout: float) -> None:
        """Deterministic mode: until dom0's services have handled every event sent to them."""
        deadline = time.monotonic() + timeout
        while not all(dev.quiescent() for dev in list(self.services)):
            if time.monotonic() > deadline:
                self.log("deterministic: a dom0 service did not answer in time; going on")
                return
            time.sleep(0.00005)

    def shutdown(self) -> None:
        self.scheduler.stop()
        for d in list(self.domains.values()):
            d.release()

    # -- logging: the Xen console ring (xl dmesg) ----------------------------------------------------

    def log(self, msg: str, prefix: str = "(XEN)") -> None:
        with self._log_lock:
            for line in msg.splitlines() or [""]:
                text = f"{prefix} {line}"
                self.dmesg.append(text)
                if self._sink:
                    self._sink(text)

    def console_write(self, d: Domain, data: bytes) -> None:
        for line in d.console.append(data):
            if trace.ENABLED:
                trace.emit("console", event_channel.current_vcpu_of(d), domid=d.domid,
                           line=line.decode("ascii", "replace"))
            self.log(line.decode("ascii", "replace"), prefix=f"(d{d.domid})")

    def console_read(self, d: Domain, count: int) -> bytes:
        with d.console.cond:
            data = bytes(d.console_input[:count])
            if data:
                del d.console_input[:len(data)]
        return data

    # -- traps -------------------------------------------------------------------------------------

    def on_psci(self, v: Vcpu) -> None:
        v.stats.psci += 1
        vpsci.do_psci(v)

    def has_pending_interrupt(self, v: Vcpu) -> bool:
        """What wakes a WFI: any interrupt pending for the vCPU, masked by CPSR.I or not."""
        vgic = v.domain.vgic if not v.domain.privileged else None
        if vgic is None:
            return False
        # SCHEDOP_block also ends when an event is pending (Xen's local_events_need_delivery);
        # waking a WFI for it too is allowed (a WFI may end for any reason).
        return vgic.has_deliverable(v.vcpu_id) or event_channel.vcpu_upcall_pending(v)

    def vgic_kick(self, d: Domain, vcpu_id: int) -> None:
        """The vGIC has something deliverable for a vCPU: wake it or make it take it now."""
        if vcpu_id < len(d.vcpus):
            self.scheduler.wake(d.vcpus[vcpu_id])

    def timer_written(self, v: Vcpu) -> None:
        """The running guest reprogrammed a timer: update its line now. Its exit control holds
        the new deadline (the vCPU stops there by itself), and whoever watches the timer once
        it stops running learns it then (schedule.py)."""
        sample_timers(v)

    def vcpu_mark_events_pending(self, v: Vcpu) -> None:
        """evtchn_upcall_pending went 0 -> 1: raise the event-channel PPI (31) in its vGIC."""
        if v.domain.vgic is not None:
            v.domain.vgic.raise_irq(v.vcpu_id, GUEST_EVTCHN_PPI)
            self.scheduler.wake(v)      # a vCPU in SCHEDOP_block waits for this, GIC or not

    # -- domains -------------------------------------------------------------------------------------

    def dom0_cpu_time_ns(self) -> int:
        """Dom0's userspace is this host process: its CPU time, less what guests used, the
        destroyed ones included (their time was never dom0's)."""
        guests = sum(d.cpu_time_ns() for d in self.domains.values() if not d.privileged)
        return max(0, time.process_time_ns() - guests - self.dead_guests_cpu_ns)

    def free_pages(self) -> int:
        return self.total_pages - sum(d.tot_pages for d in self.domains.values())

    def domain_create(self, domid: int, max_vcpus: int, handle: bytes | None,
                      layout: str | None, max_evtchn_port: int = 1023,
                      max_grant_frames: int = 64, max_maptrack_frames: int = 1024,
                      cpupool_id: int = 0) -> int:
        """XEN_DOMCTL_createdomain: a new, paused domain with no memory yet. Returns its id."""
        if layout is not None and layout not in LAYOUTS:
            return -errno.EINVAL
        if not 1 <= max_vcpus <= 128:
            return -errno.EINVAL
        if domid == 0:
            domid = self._next_domid
            while domid in self.domains:
                domid = domid + 1 if domid + 1 < DOMID_FIRST_RESERVED else 1
        elif domid >= DOMID_FIRST_RESERVED:
            return -errno.EINVAL
        elif domid in self.domains:
            return -errno.EEXIST
        d = Domain(self, domid, max_vcpus=max_vcpus, handle=handle)
        d.layout = LAYOUTS[layout] if layout else self.default_layout
        self.dead_consoles.pop(domid, None)
        event_channel.evtchn_init(d, max_port=max_evtchn_port)
        rc = grant_table.gnttab_init(d, max_grant_frames=max_grant_frames,
                                     max_maptrack_frames=max_maptrack_frames)
        if rc < 0:
            return rc
        rc = self.cpupools.add_domain(d, cpupool_id)      # sched_init_domain
        if rc < 0:
            event_channel.evtchn_destroy(d)
            grant_table.gnttab_release(d)
            return rc
        self.domains[domid] = d
        self._next_domid = domid + 1 if domid + 1 < DOMID_FIRST_RESERVED else 1
        if trace.ENABLED:
            trace.emit("dom_create", None, domid=domid, max_vcpus=max_vcpus)
        return domid

    def domain_populate(self, d: Domain, nr_pages: int) -> int:
        """XENMEM_populate_physmap for the whole of a domU's single RAM bank."""
        assert d.layout is not None
        if d.ram is not None:
            return -errno.EEXIST
        if nr_pages <= 0 or nr_pages << 12 > d.layout.ram_max:
            return -errno.EINVAL
        if d.max_pages and nr_pages > d.max_pages:
            return -errno.ENOMEM
        if nr_pages > self.free_pages():
            return -errno.ENOMEM
        d.populate_ram(d.layout, nr_pages << 12)
        return 0

    def domain_populate_magic(self, d: Domain, gfns: list[int]) -> int:
        """The toolstack's magic pages (console and xenstore rings): only the layout's frames."""
        assert d.layout is not None
        if d.ram is None:
            return -errno.EINVAL
        allowed = d.layout.magic_pfns(d.mem_bytes)
        if any(g not in allowed for g in gfns) or len(set(gfns)) != len(gfns):
            return -errno.EINVAL
        if len(gfns) > self.free_pages():
            return -errno.ENOMEM
        if d.max_pages and d.tot_pages + len(gfns) > d.max_pages:
            # assign_pages(): the magic pages count against max_pages like RAM does.
            self.log(f"d{d.domid}: Over-allocation: {d.tot_pages + len(gfns)} > {d.max_pages}")
            return -errno.ENOMEM
        d.populate_magic(gfns)
        return 0

    def domain_pause(self, d: Domain) -> None:
        if trace.ENABLED:
            trace.emit("dom_pause", None, domid=d.domid)
        d.pause_count += 1
        self.scheduler.deschedule(d.vcpus)

    def domain_unpause(self, d: Domain) -> int:
        if d.pause_count == 0:
            return -errno.EINVAL
        d.pause_count -= 1
        if trace.ENABLED:
            trace.emit("dom_unpause", None, domid=d.domid)
        self.scheduler.kick()
        return 0

    def domain_destroy(self, d: Domain) -> int:
        if d.privileged:
            return -errno.EPERM
        d.is_dying = True
        if not self.scheduler.deschedule(d.vcpus):
            return -errno.EAGAIN      # Xen's continuation: the caller retries
        event_channel.evtchn_destroy(d)
        grant_table.gnttab_release(d)
        self.cpupools.rm_domain(d)
        self.domains.pop(d.domid, None)
        self.dead_guests_cpu_ns += d.cpu_time_ns()
        self.dead_consoles[d.domid] = d.console
        while len(self.dead_consoles) > 32:
            self.dead_consoles.popitem(last=False)
        d.release()
        if trace.ENABLED:
            trace.emit("dom_destroy", None, domid=d.domid)
        self.log(f"Domain {d.domid} destroyed")
        self.domain_exception(d)
        del d
        # A domain's objects form reference cycles (vCPU <-> Unicorn hooks, closures, tables),
        # and a Unicorn instance is small to Python's collector but megabytes of translated code
        # and memfd descriptors to the host: collect now rather than at the collector's leisure.
        gc.collect()
        _malloc_trim()
        return 0

    def domain_move_cpupool(self, d: Domain, pool) -> int:
        """XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN: the domain's vCPUs held off their pCPUs meanwhile."""
        d.pause_count += 1
        try:
            if not self.scheduler.deschedule(d.vcpus):
                return -errno.EAGAIN
            rc = self.cpupools.move_domain(d, pool)
        finally:
            d.pause_count -= 1
        self.scheduler.kick()
        return rc

    def domain_exception(self, d: Domain) -> None:
        """VIRQ_DOM_EXC: tell dom0's toolstack a domain shut down or died."""
        event_channel.send_global_virq(self, VIRQ_DOM_EXC)
        for listener in list(self.dom_exc_listeners):
            listener(d.domid)
