"""The domain's stage-2 map (Xen's arch/arm/p2m.c): which host memory backs each guest frame.

A domain's RAM is one host buffer mapped once into every vCPU. Other frames are mapped on top:
the shared grant-table frames, another domain's granted page (zero copy: the same host memory
mapped again, read-only when the grant says so), a passed-through device page. A frame inside RAM
that gets such a mapping is punched out of the RAM region (Unicorn splits it) and put back when
the mapping goes. A guest write to a read-only frame is a stage-2 permission fault: the vCPU takes
a data abort.

Unicorn instances must not be changed while they run guest code on another thread, so an update
first takes the domain's other vCPUs off their pCPUs; the calling vCPU (a hypercall runs inside its
own hook, on its own thread) is changed in place, which Unicorn allows from a hook.
"""
from __future__ import annotations

import ctypes
import mmap
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import UC_PROT_ALL, UC_PROT_READ

if TYPE_CHECKING:
    from xenpy.common.domain import Domain

PAGE = 0x1000
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

    def _in_ram(self, gfn: int) -> bool:
        d = self.d
        assert d.layout is not None
        return d.layout.ram_base >> 12 <= gfn < (d.layout.ram_base + d.mem_bytes) >> 12

    def lookup(self, gfn: int) -> Mapping | None:
        return self.extra.get(gfn)

    def map(self, gfn: int, buffer: mmap.mmap, offset: int, writable: bool) -> None:
        """Back guest frame `gfn` with the page at `offset` of `buffer`."""
        with self.lock:
            self._apply(lambda uc: self._map_one(uc, gfn, buffer, offset, writable))
            self.extra[gfn] = Mapping(buffer, offset, writable)

    def unmap(self, gfn: int) -> None:
        """Drop a mapping: a RAM frame gets its RAM page back, anything else becomes a hole."""
        with self.lock:
            if gfn not in self.extra:
                return
            self._apply(lambda uc: self._unmap_one(uc, gfn))
            del self.extra[gfn]

    def _map_one(self, uc, gfn: int, buffer: mmap.mmap, offset: int, writable: bool) -> None:
        addr = gfn << 12
        if gfn in self.extra or self._in_ram(gfn):
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

    def _apply(self, change) -> None:
        d = self.d
        me = getattr(current_vcpu, "v", None)
        others = [v for v in d.vcpus if v is not me]
        d.hv.scheduler.hold(others)       # off their pCPUs, and kept off until release
        try:
            for v in d.vcpus:
                if v.arch is not None:
                    change(v.arch.uc)
        finally:
            d.hv.scheduler.release(others)
