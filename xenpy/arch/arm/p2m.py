"""The domain's stage-2 map (Xen's arch/arm/p2m.c): which host memory backs each guest frame.

A domain's RAM is one host buffer mapped once into every vCPU. Other frames are mapped on top:
the shared grant-table frames, another domain's granted page (zero copy: the same host memory
mapped again, read-only when the grant says so), a passed-through device page. A frame inside RAM
that gets such a mapping is punched out of the RAM region (Unicorn splits it) and put back when
the mapping goes. A guest write to a read-only frame is a stage-2 permission fault: the vCPU takes
a data abort.

Unicorn instances must not be changed from another thread while they run guest code. So an update
is queued for every vCPU of the domain and each Unicorn instance is changed only by the thread that
owns it: a vCPU that is not on a pCPU is changed by the updater (which keeps it off meanwhile); a
running one is stopped and applies the queue itself before it next enters guest code (or from inside
its own hook, where Unicorn allows it, if it is itself waiting in an update). The update returns
only when every vCPU applied it, so after an unmap no vCPU can still reach the page.

Each vCPU's Unicorn instance also caches the guest's own stage-1 translations (its TLB) and the
code it translated, and nothing another instance does reaches them: a broadcast TLB or
instruction-cache invalidation only reaches its own vCPU. One vCPU of a domain runs at a time,
so what the others did can be applied when one is switched in (restore_state): its TLB is
flushed if another vCPU of the domain ran since it did, as Xen flushes a pCPU's TLB when another
vCPU of the domain last ran there (p2m->last_vcpu_ran). Its translated code is dropped when the
architecture says code another vCPU wrote must be seen: a clean of the data cache to the point
of unification or coherency by another vCPU, then an instruction-cache invalidation that reaches
it (vcpreg.py traps both kinds of maintenance on domains with more than one vCPU). So a guest
that changes its page tables or patches its code on one vCPU, as Linux does on any SMP system,
is seen on the others exactly as the broadcast promises.
"""
from __future__ import annotations

import ctypes
import mmap
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import UC_PROT_ALL, UC_PROT_READ

from xenpy.arch.arm.vcpreg import Decoded, decode_mcr

if TYPE_CHECKING:
    from xenpy.common.domain import Domain

PAGE = 0x1000
# Cache maintenance (MCR p15, 0, Rt, c7, CRm, opc2) that publishes written code, by (opc1, CRm,
# opc2): data cache cleans to the point of unification or coherency, by address or set/way; and
# instruction-cache invalidations, the by-address one broadcast as the MP extensions make it.
CACHE_OPS = {(0, 11, 1): "DCCMVAU", (0, 10, 1): "DCCMVAC", (0, 14, 1): "DCCIMVAC",
             (0, 10, 2): "DCCSW", (0, 14, 2): "DCCISW",
             (0, 1, 0): "ICIALLUIS", (0, 5, 0): "ICIALLU", (0, 5, 1): "ICIMVAU"}
current_vcpu = threading.local()      # set by the pCPU loop: the vCPU this thread is running


@dataclass(frozen=True)
class Mapping:
    buffer: mmap.mmap
    offset: int
    writable: bool


def _host_ptr(buf: mmap.mmap, offset: int) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf, offset))


class P2M:
    def __init__(self, d: "Domain") -> None:
        self.d = d
        self.extra: dict[int, Mapping] = {}
        self.lock = threading.Lock()
        self._apply_lock = threading.Lock()   # one applier at a time keeps each queue in order
        self.last_vcpu_ran = None
        self._code_stale: set[int] = set()    # vCPUs whose code others may have written since
        self._tb_flush: set[int] = set()      # vCPUs to drop their translated code when switched in

    def _in_ram(self, gfn: int) -> bool:
        d = self.d
        assert d.layout is not None
        return d.layout.ram_base >> 12 <= gfn < (d.layout.ram_base + d.mem_bytes) >> 12

    def lookup(self, gfn: int) -> Mapping | None:
        return self.extra.get(gfn)

    def map(self, gfn: int, buffer: mmap.mmap, offset: int, writable: bool) -> None:
        """Back guest frame `gfn` with the page at `offset` of `buffer`."""
        with self.lock:
            remap = gfn in self.extra
            self.extra[gfn] = Mapping(buffer, offset, writable)
            self._queue(lambda uc: self._map_one(uc, gfn, buffer, offset, writable, remap))
        self._sync()

    def unmap(self, gfn: int) -> None:
        """Drop a mapping: a RAM frame gets its RAM page back, anything else becomes a hole."""
        with self.lock:
            if gfn not in self.extra:
                return
            del self.extra[gfn]
            self._queue(lambda uc: self._unmap_one(uc, gfn))
        self._sync()

    def _map_one(self, uc, gfn: int, buffer: mmap.mmap, offset: int, writable: bool,
                 remap: bool) -> None:
        addr = gfn << 12
        if remap or self._in_ram(gfn):
            uc.mem_unmap(addr, PAGE)
        uc.mem_map_ptr(addr, PAGE, UC_PROT_ALL if writable else UC_PROT_READ,
                       _host_ptr(buffer, offset))

    def _unmap_one(self, uc, gfn: int) -> None:
        addr = gfn << 12
        uc.mem_unmap(addr, PAGE)
        if self._in_ram(gfn):
            d = self.d
            assert d.ram is not None and d.layout is not None
            uc.mem_map_ptr(addr, PAGE, UC_PROT_ALL, _host_ptr(d.ram, addr - d.layout.ram_base))

    # -- bringing every vCPU's Unicorn instance up to date ---------------------------------------

    def _queue(self, change) -> None:
        for v in self.d.vcpus:
            if v.arch is not None:
                v.p2m_pending.append(change)

    def restore_state(self, v) -> None:
        """Before v runs guest code (Xen's p2m_restore_state): the stage-2 changes it has not
        applied yet, and what the domain's other vCPUs changed since it last ran."""
        if v.p2m_pending:
            self.apply_pending(v)
        with self.lock:
            last, self.last_vcpu_ran = self.last_vcpu_ran, v
            drop = v.vcpu_id in self._tb_flush
            if drop:
                self._tb_flush.discard(v.vcpu_id)
                self._code_stale.discard(v.vcpu_id)
        if v.arch is None:
            return
        if last is not None and last is not v:
            v.arch.flush_tlb()
        if drop:
            v.arch.uc.ctl_flush_tb()

    def cache_op(self, v, dec: Decoded, _addr: int) -> None:
        """A trapped cache-maintenance instruction of vCPU v (see the module's docstring)."""
        name = dec[0]
        with self.lock:
            if name.startswith("DC"):
                self._code_stale.update(o.vcpu_id for o in self.d.vcpus if o is not v)
                return
            if name != "ICIALLU":                     # broadcast: the others' caches too
                self._tb_flush |= self._code_stale - {v.vcpu_id}
            stale = v.vcpu_id in self._code_stale
            self._code_stale.discard(v.vcpu_id)
        if stale and v.arch is not None:
            v.arch.flush_translations()

    def apply_pending(self, v) -> None:
        """Apply queued changes to v's instance. Only on v's own thread, or with v held off."""
        with self._apply_lock:
            with self.lock:
                changes, v.p2m_pending = v.p2m_pending, []
            for change in changes:
                if v.arch is not None:
                    change(v.arch.uc)

    @staticmethod
    def decode_cache_op(insn: int, thumb: bool) -> Decoded | None:
        return decode_mcr(insn, thumb, 7, CACHE_OPS)

    def _sync(self, timeout: float = 10.0) -> None:
        me = getattr(current_vcpu, "v", None)
        sched = self.d.hv.scheduler
        deadline = time.monotonic() + timeout
        posted: set[int] = set()
        while True:
            if me is not None and me.domain is self.d:
                self.apply_pending(me)
            late = [v for v in self.d.vcpus if v is not me and v.p2m_pending]
            if not late or time.monotonic() > deadline:
                return
            running = False
            for v in late:
                if sched.try_hold(v):           # off its pCPU: change it from here
                    try:
                        self.apply_pending(v)
                    finally:
                        sched.release([v])
                elif v.arch is not None:
                    if v.vcpu_id not in posted:      # it applies them before its next block
                        posted.add(v.vcpu_id)
                        v.arch.post(lambda v=v: self.apply_pending(v))
                    running = True
            if running:
                time.sleep(0.0002)
