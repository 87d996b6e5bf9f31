"""Grant tables, version 1 (Xen's common/grant_table.c, with arch/arm's host-mapping rules).

A domain shares pages by writing grant entries {flags, domid, frame} into its grant table; another
domain maps or copies a granted page by reference. Per domain (`d.grant_table`, made by
gnttab_init) there are three parts, as in Xen:

- the shared frames: the entries, in host memory the guest maps into its own physical space with
  XENMEM_add_to_physmap(XENMAPSPACE_grant_table) and then writes directly (zero copy both ways);
- the active entries: what the hypervisor pinned of this domain's grants for others (pin counts,
  which domain holds them, which frame was pinned);
- the maptrack: the mappings this domain holds of other domains' grants, indexed by handle.

A mapping is zero copy: the granted page is the granter's RAM (a memfd) mapped again into the
mapper's stage-2 map at the guest-physical frame it named (`host_addr`), read-only when the mapping
is (a write then makes the mapper take a data abort). Each mapping holds its own mmap of the
granter's page, which is how it holds Xen's page reference: the page outlives the granter, so a
granter destroyed while others map its pages leaves them valid until they unmap (Xen keeps such a
domain as a zombie for the same reason). Dom0 runs no kernel: its mappings (through
xenpy/board/gntdev.py) record a file descriptor of the page for its userspace instead of a p2m
entry.

Status codes, order of checks and the flag protocol follow current Xen on ARM (xenpy's 4.4 label
aside): maptrack exhaustion is GNTST_no_space (4.4 said no_device_space), the table is version 1
from creation (4.4 had a version 0 before first use), an already-mapped grant frame cannot be
mapped again (-EBUSY; 4.4 aliased it). GNTTABOP_dump_table prints to the hypervisor console.

Concurrency. The granting guest changes its entries while we read them, from another host thread:
it fills frame and domid, then sets flags; it revokes with a compare-and-swap of the flags word
that fails while GTF_reading/GTF_writing are set. The hypervisor's side (all under the granter's
table lock, so hypervisor threads never race each other on an entry) does what Xen does:
- pinning reads flags+domid as one 32-bit word and sets GTF_reading/GTF_writing with a
  compare-and-swap on that word, retried at most 5 times (then GNTST_general_error, so a guest
  flipping its flags in a loop cannot livelock a pCPU); the CAS is what makes "check the entry,
  then mark it in use" atomic against the guest's revoking CAS;
- the frame is read after the flags are set; a guest that changes the frame of an entry it has
  not revoked races only itself (it gets one of the two pages);
- unpinning clears GTF_reading/GTF_writing with an atomic AND on the 16-bit flags.
The atomics are libatomic's, which QEMU's ldrex/strex (a compare-and-swap against the value
ldrex read) stays correct against. Races that are benign by design, as in Xen: once an entry is
pinned, later mappings by the same domain do not re-check the entry, so a guest that changes
GTF_readonly or the domid of a mapped entry affects only mappings made after the last unmap; the
frame pinned first keeps being the one mapped until then.

Locks: per table, `map_lock` (this domain as mapper: maptrack, its grant p2m entries) is taken
before `lock` (this domain as granter: entries, active entries, size); no code takes a `map_lock`
while holding any `lock`, and no p2m update happens under a `lock` (a p2m update waits for the
mapper's other vCPUs, which may be waiting for that lock in a hypercall).
"""
from __future__ import annotations

import ctypes
import mmap
import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

from unicorn import UcError

from xenpy import trace
from xenpy.arch.arm.guestcopy import GuestFault, copy_from_guest, copy_to_guest
from xenpy.common import atomic, memory
from xenpy.common.event_channel import current_vcpu_of, domain_by_any_id, xsm_target
from xenpy.common.hypercall import hypercall
from xenpy.public import errno
from xenpy.public.grant_table import (
    CACHE_FLUSH, COPY, COPY_STATUS, DUMP_TABLE, GET_STATUS_FRAMES, GET_STATUS_FRAMES_STATUS, GET_VERSION,
    GET_VERSION_VERSION, GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_application_map,
    GNTMAP_contains_pte, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_copy_arg,
    GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_bad_virt_addr,
    GNTST_eagain, GNTST_general_error, GNTST_no_space, GNTST_okay, GNTST_permission_denied,
    GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL, GNTTABOP_CMD_MASK, GNTTABOP_CONTINUATION_ARG_SHIFT,
    GNTTABOP_cache_flush, GNTTABOP_copy, GNTTABOP_dump_table, GNTTABOP_get_status_frames, GNTTABOP_get_version,
    GNTTABOP_map_grant_ref, GNTTABOP_query_size, GNTTABOP_set_version, GNTTABOP_setup_table,
    GNTTABOP_swap_grant_ref, GNTTABOP_transfer, GNTTABOP_unmap_and_replace,
    GNTTABOP_unmap_grant_ref, GRANT_ENTRY_V1, GTF_permit_access, GTF_readonly, GTF_reading,
    GTF_sub_page, GTF_type_mask, GTF_writing, MAP_GRANT_REF, QUERY_SIZE, SET_VERSION,
    SETUP_TABLE, SETUP_TABLE_STATUS, STATUS, SWAP_GRANT_REF, SWAP_GRANT_REF_STATUS,
    UNMAP_AND_REPLACE, UNMAP_AND_REPLACE_STATUS, UNMAP_GRANT_REF, UNMAP_GRANT_REF_STATUS, XEN_PFN,
)
from xenpy.public.memory import XENMAPSPACE_grant_table
from xenpy.public.xen import DOMID_SELF, HYPERVISOR_grant_table_op, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu
    from xenpy.common.hypervisor import Hypervisor

ENTRY_SIZE = GRANT_ENTRY_V1.size
ENTRIES_PER_FRAME = PAGE_SIZE // ENTRY_SIZE          # 512
MAPTRACK_PER_PAGE = PAGE_SIZE // 16                  # sizeof(struct grant_mapping) is 16
INITIAL_NR_GRANT_FRAMES = 1                          # arch/arm: the table starts with one frame
DEFAULT_MAX_GRANT_FRAMES = 64                        # gnttab_max_frames
DEFAULT_MAX_MAPTRACK_FRAMES = 1024                   # gnttab_max_maptrack_frames
GNTTAB_MAX_VERSION = 1                               # arch/arm builds Xen with v1 only
# Xen/ARM on the Cubieboard2 is a 32-bit hypervisor: gfn_t is an unsigned long, so an unmapped
# frame reads back from setup_table as 0xFFFFFFFF (zero-extended into the 64-bit xen_pfn_t).
INVALID_GFN = 0xFFFFFFFF
# The model's arm32 vCPUs address 4 GiB of guest-physical space; Xen/LPAE would allow 40 bits.
IPA_LIMIT_GFN = 1 << (32 - PAGE_SHIFT)

# Active-entry pin counts: four byte-wide counters in one word, as in Xen.
GNTPIN_hstw_inc, GNTPIN_hstr_inc, GNTPIN_devw_inc, GNTPIN_devr_inc = 1, 1 << 8, 1 << 16, 1 << 24
GNTPIN_hstw_mask, GNTPIN_hstr_mask = 0xFF, 0xFF << 8
GNTPIN_devw_mask, GNTPIN_devr_mask = 0xFF << 16, 0xFF << 24
WRITE_PINS = GNTPIN_hstw_mask | GNTPIN_devw_mask

EILSEQ = 84                 # Xen's errno value (not in xenpy.public.errno yet)
RAM, FRAMES = 0, 1          # what backs a frame: the domain's RAM, or its grant-table frames
HOST_FRAME_BASE = 1 << 20   # dom0's "guest-physical" frames for its mappings (see gntdev.py)


def _overflows(pin: int, incr: int) -> bool:
    """GNTPIN_incr2oflow_mask: refuse once the counter being incremented reached 128."""
    return bool(pin & (incr << 7))


# -- atomics on guest-shared memory -------------------------------------------------------------

class _Atomics(NamedTuple):
    cas32: Callable[..., bool]
    and16: Callable[..., int]
    load32: Callable[..., int]


def _load_atomics() -> _Atomics | None:
    cas32 = atomic.fn("__atomic_compare_exchange_4", (ctypes.c_void_p, ctypes.c_void_p,
                      ctypes.c_uint32, ctypes.c_int, ctypes.c_int), ctypes.c_bool,
                      hold_lock=False)
    and16 = atomic.fn("__atomic_fetch_and_2", (ctypes.c_void_p, ctypes.c_uint16, ctypes.c_int),
                      ctypes.c_uint16, hold_lock=False)
    load32 = atomic.fn("__atomic_load_4", (ctypes.c_void_p, ctypes.c_int), ctypes.c_uint32,
                       hold_lock=False)
    return _Atomics(cas32, and16, load32) if cas32 and and16 and load32 else None


_ATOMICS = _load_atomics()


# -- the per-domain state -----------------------------------------------------------------------

class Frame(NamedTuple):
    """A granted page as an active entry pins it (Xen's act->mfn): whose backing, which page."""
    owner: "GrantTable"
    kind: int            # RAM or FRAMES
    index: int           # page number within that backing


class PageRef:
    """One mapping's hold on a page (Xen's page reference). For a p2m mapping: an mmap of the page
    (the p2m entry keeps it alive while mapped, the maptrack entry while the handle lives). For a
    host-backed mapper (dom0): a file descriptor of the page, read-only when the mapping is."""

    def __init__(self, frame: Frame, mm: mmap.mmap | None, inner: int, fd: int | None,
                 offset: int) -> None:
        self.frame = frame
        self.mm = mm
        self.inner = inner          # the page's offset within mm
        self.fd = fd
        self.offset = offset        # the page's offset within the backing file (and fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.mm = None              # dropped, not closed: a p2m entry may still hold it (as Xen)


@dataclass(eq=False)
class Active:
    """active_grant_entry: the pin counts of one of this domain's grants and what they pinned."""
    pin: int = 0
    domid: int = 0
    gfn: int = 0
    frame: Frame | None = None


@dataclass(eq=False)
class MapTrack:
    """struct grant_mapping: one mapping this domain holds (its index is the handle)."""
    ref: int
    flags: int
    domid: int
    rgt: "GrantTable"           # the granter's table itself, so a reused domid cannot confuse it
    page: PageRef


class MachineMap:
    """Machine frame numbers for dev_bus_addr and cache_flush. xenpy has no machine memory map;
    each backing gets a range on first use, above the board's DRAM base, 2 MiB aligned.

    A range refers to its table weakly: a destroyed domain's table (and its memfds) must go once
    the last mapping of its pages does; its range is then forgotten."""

    def __init__(self) -> None:
        self.next = memory.HOST_RAM_BASE >> PAGE_SHIFT
        self.regions: list[tuple[int, int, "weakref.ref[GrantTable]", int]] = []
        self.lock = threading.Lock()

    def base(self, gt: "GrantTable", kind: int, pages: int) -> int:
        with self.lock:
            self.regions = [r for r in self.regions if r[2]() is not None]
            for base, _n, t, k in self.regions:
                if t() is gt and k == kind:
                    return base
            base = self.next
            self.next += (pages + 511) & ~511
            self.regions.append((base, pages, weakref.ref(gt), kind))
            return base

    def lookup(self, mfn: int) -> Frame | None:
        with self.lock:
            for base, n, ref, kind in self.regions:
                gt = ref()
                if gt is not None and base <= mfn < base + n:
                    return Frame(gt, kind, mfn - base)
        return None


_MACHINE: "weakref.WeakKeyDictionary[Hypervisor, MachineMap]" = weakref.WeakKeyDictionary()
_MACHINE_LOCK = threading.Lock()


def machine_map(hv: "Hypervisor") -> MachineMap:
    with _MACHINE_LOCK:
        m = _MACHINE.get(hv)
        if m is None:
            m = _MACHINE[hv] = MachineMap()
        return m


class GrantTable:
    def __init__(self, d: "Domain", max_grant_frames: int, max_maptrack_frames: int) -> None:
        self.domain = d
        self.domid = d.domid
        self.lock = threading.Lock()          # as granter: entries, active, size, frame gfns
        self.map_lock = threading.Lock()      # as mapper: maptrack, grant_p2m (taken first)
        self.version = 1
        self.max_grant_frames = max_grant_frames
        self.max_maptrack_frames = max_maptrack_frames
        self.nr_grant_frames = INITIAL_NR_GRANT_FRAMES
        # The shared frames live in a memfd so dom0's userspace can be given one by descriptor.
        self.frames_fd = os.memfd_create(f"xenpy-d{d.domid}-gnttab", os.MFD_CLOEXEC)
        os.ftruncate(self.frames_fd, max_grant_frames * PAGE_SIZE)
        self.shared = mmap.mmap(self.frames_fd, max_grant_frames * PAGE_SIZE)
        self._anchor = ctypes.c_char.from_buffer(self.shared)   # pins the mapping: never closed
        self.base_addr = ctypes.addressof(self._anchor)
        self.frame_gfn = [INVALID_GFN] * max_grant_frames      # where the guest mapped frame i
        self.frame_at: dict[int, int] = {}                      # gfn -> frame index
        self.active: dict[int, Active] = {}                     # only entries with pin != 0
        self.maptrack: list[MapTrack | None] = []               # len() is maptrack_limit
        self.maptrack_free: deque[int] = deque()
        self.grant_p2m: dict[int, PageRef] = {}                 # gfn -> the grant mapped there
        self.ram_fd = -1                                        # a dup of the domain's RAM memfd
        self.dead = False
        self.finalizer = weakref.finalize(self, GrantTable._close_fds, self.frames_fd)

    @staticmethod
    def _close_fds(fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass

    @property
    def nr_entries(self) -> int:
        return self.nr_grant_frames * ENTRIES_PER_FRAME

    @property
    def host_backed(self) -> bool:
        """Dom0: no RAM and no p2m; its mappings are file descriptors for its userspace."""
        d = self.domain
        return d.privileged and d.ram is None

    # -- entries (shared with the guest) -------------------------------------------------------

    def _combo_addr(self, ref: int) -> int:
        return self.base_addr + ref * ENTRY_SIZE

    def load_combo(self, ref: int) -> int:
        """flags | domid << 16, read as one word (Xen's union grant_combo)."""
        if _ATOMICS is not None:
            return _ATOMICS.load32(self._combo_addr(ref), atomic.SEQ_CST)
        return int.from_bytes(self.shared[ref * 8:ref * 8 + 4], "little")

    def cmpxchg_combo(self, ref: int, old: int, new: int) -> int:
        """Compare-and-swap the flags|domid word; returns the value found."""
        if _ATOMICS is not None:
            expected = ctypes.c_uint32(old)
            _ATOMICS.cas32(self._combo_addr(ref), ctypes.byref(expected), new, atomic.SEQ_CST,
                           atomic.SEQ_CST)
            return expected.value
        cur = int.from_bytes(self.shared[ref * 8:ref * 8 + 4], "little")
        if cur == old:
            self.shared[ref * 8:ref * 8 + 4] = new.to_bytes(4, "little")
        return cur

    def clear_flags(self, ref: int, mask: int) -> None:
        """gnttab_clear_flags: atomically clear bits of the entry's 16-bit flags."""
        if _ATOMICS is not None:
            _ATOMICS.and16(self._combo_addr(ref), 0xFFFF & ~mask, atomic.SEQ_CST)
            return
        off = ref * 8
        cur = int.from_bytes(self.shared[off:off + 2], "little")
        self.shared[off:off + 2] = (cur & ~mask & 0xFFFF).to_bytes(2, "little")

    def entry(self, ref: int) -> tuple[int, int, int]:
        """(flags, domid, frame) of entry `ref`, as the guest sees it now."""
        return GRANT_ENTRY_V1.unpack_from(self.shared, ref * ENTRY_SIZE)

    def frame_of(self, ref: int) -> int:
        return int.from_bytes(self.shared[ref * 8 + 4:ref * 8 + 8], "little")

    # -- size --------------------------------------------------------------------------------------

    def grow(self, nr_frames: int) -> None:
        """gnttab_grow_table (caller holds lock). The frames exist already; they become valid."""
        self.nr_grant_frames = max(self.nr_grant_frames, min(nr_frames, self.max_grant_frames))

    # -- maptrack (caller holds map_lock) ------------------------------------------------------

    def get_handle(self) -> int | None:
        if self.maptrack_free:
            return self.maptrack_free.popleft()
        if len(self.maptrack) // MAPTRACK_PER_PAGE >= self.max_maptrack_frames:
            return None
        handle = len(self.maptrack)
        self.maptrack.extend([None] * MAPTRACK_PER_PAGE)
        self.maptrack_free.extend(range(handle + 1, handle + MAPTRACK_PER_PAGE))
        return handle

    def put_handle(self, handle: int) -> None:
        self.maptrack[handle] = None
        self.maptrack_free.append(handle)      # freed handles are reused last, as in Xen

    def mappings(self) -> list[tuple[int, MapTrack]]:
        return [(h, m) for h, m in enumerate(self.maptrack) if m is not None]

    # -- backing of frames (caller holds lock) --------------------------------------------------

    def backing_fd(self, kind: int) -> int | None:
        if self.dead:
            return None
        if kind == FRAMES:
            return self.frames_fd
        if self.ram_fd < 0:
            d = self.domain
            if d.ram is None or d.ram_fd < 0:
                return None
            self.ram_fd = os.dup(d.ram_fd)    # ours: the domain closes its own at destruction
        return self.ram_fd

    def mfn(self, frame: Frame) -> int:
        d = self.domain
        pages = d.tot_pages if frame.kind == RAM else self.max_grant_frames
        return machine_map(d.hv).base(self, frame.kind, pages) + frame.index


@dataclass(frozen=True)
class MapResult:
    status: int
    handle: int = 0
    dev_bus_addr: int = 0
    page: PageRef | None = None     # what was mapped (dom0's gntdev hands its fd to userspace)


# -- lifecycle ----------------------------------------------------------------------------------

def gnttab_init(d: "Domain", max_grant_frames: int = DEFAULT_MAX_GRANT_FRAMES,
                max_maptrack_frames: int = DEFAULT_MAX_MAPTRACK_FRAMES) -> int:
    """grant_table_init at domain creation. A guest layout caps the frames at what its grant
    window holds (Xen 4.4's 0x20000 window: 32 frames). Returns 0 or -EINVAL."""
    if max_grant_frames < INITIAL_NR_GRANT_FRAMES or max_maptrack_frames < 0:
        return -errno.EINVAL
    if d.layout is not None:
        max_grant_frames = min(max_grant_frames, d.layout.gnttab_size >> PAGE_SHIFT)
    gt = GrantTable(d, max_grant_frames, max_maptrack_frames)
    d.grant_table = gt                   # type: ignore[attr-defined]
    return 0


def _table(d: "Domain | None") -> GrantTable | None:
    return getattr(d, "grant_table", None) if d is not None else None


def gnttab_release(d: "Domain") -> None:
    """A dying domain gives up the mappings it holds (gnttab_release_mappings): the granters'
    pins and GTF_reading/GTF_writing drop, its grant p2m entries go. Mappings others hold of
    its pages stay valid until they unmap, as in Xen (each holds its own reference to the page);
    new maps and copies of its grants answer GNTST_bad_domain. Call before Domain.release()."""
    gt = _table(d)
    if gt is None:
        return
    with gt.lock:
        gt.dead = True
    with gt.map_lock:
        for _handle, mt in gt.mappings():
            _unpin(mt.rgt, mt.ref, _pin_incr(mt.flags), bool(mt.flags & GNTMAP_readonly))
            mt.page.close()
        gt.maptrack.clear()
        gt.maptrack_free.clear()
        gfns = list(gt.grant_p2m)
        gt.grant_p2m.clear()
        if d.p2m is not None:
            for gfn in gfns:
                d.p2m.unmap(gfn)
    with gt.lock:                # no new pins from here on: the descriptors can go
        if gt.ram_fd >= 0:
            os.close(gt.ram_fd)
            gt.ram_fd = -1
        gt.finalizer()           # closes frames_fd; the shared frames stay mapped


# -- the flag protocol --------------------------------------------------------------------------

def _set_status(gt: GrantTable, ref: int, act: Active, readonly: bool, mapping: bool,
                ldomid: int) -> int:
    """_set_status_v1: check the entry (unless already pinned) and set GTF_reading/GTF_writing
    with a compare-and-swap, at most 5 attempts. Caller holds gt.lock."""
    mask = GTF_type_mask | (GTF_sub_page if mapping else 0)
    combo = gt.load_combo(ref)
    for _attempt in range(5):
        flags, domid = combo & 0xFFFF, combo >> 16
        if not act.pin and ((flags & mask) != GTF_permit_access or domid != ldomid):
            return GNTST_general_error              # not granted to this domain
        new = flags | GTF_reading
        if not readonly:
            if flags & GTF_readonly:
                return GNTST_general_error          # write-pin of a read-only grant
            new |= GTF_writing
        prev = gt.cmpxchg_combo(ref, combo, new | domid << 16)
        if prev == combo:
            return GNTST_okay
        combo = prev                                # the guest changed it meanwhile: look again
    return GNTST_general_error                      # unstable entry: a misbehaving guest


def _reduce_status_for_pin(gt: GrantTable, ref: int, act: Active, readonly: bool) -> None:
    """Clear the flags the remaining pins no longer justify. Caller holds gt.lock."""
    clear = 0 if act.pin else GTF_reading
    if not readonly and not act.pin & WRITE_PINS:
        clear |= GTF_writing
    if clear:
        gt.clear_flags(ref, clear)


def _pin_incr(flags: int) -> int:
    incr = 0
    if flags & GNTMAP_device_map:
        incr += GNTPIN_devr_inc if flags & GNTMAP_readonly else GNTPIN_devw_inc
    if flags & GNTMAP_host_map:
        incr += GNTPIN_hstr_inc if flags & GNTMAP_readonly else GNTPIN_hstw_inc
    return incr


def _unpin(rgt: GrantTable, ref: int, incr: int, readonly: bool) -> None:
    with rgt.lock:
        act = rgt.active.get(ref)
        if act is None:
            return
        act.pin -= incr
        _reduce_status_for_pin(rgt, ref, act, readonly)
        if not act.pin:
            del rgt.active[ref]


def _paged_frame(rd: "Domain", gfn: int) -> tuple[int, Frame | None]:
    """get_paged_frame: the page behind the granter's frame `gfn`. Only the domain's own RAM or
    its own grant-table frames qualify (Xen: any-RAM p2m types owned by the domain); a hole,
    MMIO, or a page it mapped from someone else is GNTST_bad_page.

    Reads the granter's p2m bookkeeping without its map_lock (lock order): a granter remapping
    the very frame it is granting races only itself."""
    gt = _table(rd)
    if gt is None or rd.layout is None or rd.ram is None:
        return GNTST_bad_page, None
    idx = gt.frame_at.get(gfn)
    if idx is not None:
        return GNTST_okay, Frame(gt, FRAMES, idx)
    ram_pages = rd.mem_bytes >> PAGE_SHIFT
    if gfn in rd.magic_gfns:                         # its magic pages follow RAM in the memfd
        return GNTST_okay, Frame(gt, RAM, ram_pages + rd.magic_gfns[gfn])
    if rd.p2m is not None and rd.p2m.lookup(gfn) is not None:
        return GNTST_bad_page, None                  # a page mapped from another domain, etc.
    first = rd.layout.ram_base >> PAGE_SHIFT
    if first <= gfn < first + ram_pages:
        return GNTST_okay, Frame(gt, RAM, gfn - first)
    return GNTST_bad_page, None


def _get_page(frame: Frame, host_backed: bool, writable: bool) -> PageRef:
    """Take a reference on a pinned page for one mapping. Caller holds frame.owner.lock (which
    keeps the backing descriptors open). Raises OSError if the backing is gone."""
    owner = frame.owner
    fd = owner.backing_fd(frame.kind)
    if fd is None:
        raise OSError(errno.ENOENT, "no backing for the frame")
    offset = frame.index * PAGE_SIZE
    if host_backed:
        # A new open file description of the same memfd: read-only ones cannot be mapped
        # writable by dom0's userspace.
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
        return PageRef(frame, None, 0, os.open(f"/proc/self/fd/{fd}", flags), offset)
    gran = mmap.ALLOCATIONGRANULARITY
    base = offset - offset % gran
    return PageRef(frame, mmap.mmap(fd, gran, offset=base), offset - base, None, offset)


def _frame_buffer(frame: Frame) -> tuple[mmap.mmap, int]:
    owner = frame.owner
    if frame.kind == FRAMES:
        return owner.shared, frame.index * PAGE_SIZE
    ram = owner.domain.ram
    if ram is None:
        raise ValueError("the domain's RAM is gone")
    return ram, frame.index * PAGE_SIZE


# -- host mappings (arch/arm/mm.c's create/replace_grant_host_mapping) ----------------------------

def _drop_p2m_record(lgt: GrantTable, gfn: int) -> None:
    """Whatever grant or grant-table frame the mapper showed at gfn is no longer there.
    Caller holds lgt.map_lock."""
    lgt.grant_p2m.pop(gfn, None)
    with lgt.lock:
        idx = lgt.frame_at.pop(gfn, None)
        if idx is not None:
            lgt.frame_gfn[idx] = INVALID_GFN       # the frame may be mapped elsewhere again


def _create_host_mapping(ld: "Domain", lgt: GrantTable, host_addr: int, page: PageRef,
                         flags: int) -> int:
    if (flags & ~GNTMAP_readonly) != GNTMAP_host_map:
        return GNTST_general_error                 # e.g. guest_avail bits: ARM refuses them
    gfn = host_addr >> PAGE_SHIFT
    if not lgt.host_backed:
        if ld.p2m is None or gfn >= IPA_LIMIT_GFN:
            return GNTST_general_error
        assert page.mm is not None
        try:
            ld.p2m.map(gfn, page.mm, page.inner, writable=not flags & GNTMAP_readonly)
        except UcError:
            return GNTST_general_error             # e.g. an emulated device region
    _drop_p2m_record(lgt, gfn)
    lgt.grant_p2m[gfn] = page
    return GNTST_okay


def _replace_host_mapping(ld: "Domain", lgt: GrantTable, host_addr: int, page: PageRef,
                          new_addr: int, flags: int) -> int:
    """Remove the mapping at host_addr if it maps this page. As Xen's p2m_remove_mapping: another
    page there (RAM, a grant-table frame, another grant) is an error; a hole is success."""
    if new_addr != 0 or flags & GNTMAP_contains_pte:
        return GNTST_general_error
    gfn = host_addr >> PAGE_SHIFT
    cur = lgt.grant_p2m.get(gfn)
    if cur is not None:
        if cur.frame != page.frame:
            return GNTST_general_error
        del lgt.grant_p2m[gfn]
        if ld.p2m is not None and not lgt.host_backed:
            ld.p2m.unmap(gfn)
        return GNTST_okay
    if lgt.host_backed or ld.p2m is None or ld.layout is None:
        return GNTST_okay
    first = ld.layout.ram_base >> PAGE_SHIFT
    if ld.p2m.lookup(gfn) is not None or first <= gfn < first + ld.tot_pages:
        return GNTST_general_error
    return GNTST_okay


# -- GNTTABOP_map_grant_ref / unmap_grant_ref ----------------------------------------------------

def map_grant_ref(ld: "Domain", host_addr: int, flags: int, ref: int, dom: int) -> MapResult:
    """Map domain `dom`'s grant `ref` for `ld` at guest-physical `host_addr`."""
    res = _map_grant_ref(ld, host_addr, flags, ref, dom)
    if trace.ENABLED:
        trace.emit("grant_map", current_vcpu_of(ld), domid=ld.domid, ref=ref, granter=dom,
                   readonly=bool(flags & GNTMAP_readonly), status=res.status, handle=res.handle)
    return res


def _map_grant_ref(ld: "Domain", host_addr: int, flags: int, ref: int, dom: int) -> MapResult:
    pin_incr = _pin_incr(flags)
    if not pin_incr:
        return MapResult(GNTST_bad_gntref)         # neither host_map nor device_map
    if flags & (GNTMAP_device_map | GNTMAP_application_map | GNTMAP_contains_pte):
        return MapResult(GNTST_general_error)      # ARM domains are translated: host maps only
    rd = ld.hv.domains.get(dom)                    # by id: DOMID_SELF names no domain here
    rgt, lgt = _table(rd), _table(ld)
    if rd is None or rgt is None or lgt is None or rd.is_dying:
        return MapResult(GNTST_bad_domain)
    readonly = bool(flags & GNTMAP_readonly)
    with lgt.map_lock:
        handle = lgt.get_handle()
        if handle is None:
            return MapResult(GNTST_no_space)
        page: PageRef | None = None
        with rgt.lock:
            rc = _pin(rgt, ref, ld.domid, pin_incr, readonly)
            if rc == GNTST_okay:
                frame = rgt.active[ref].frame
                assert frame is not None
                try:
                    page = _get_page(frame, lgt.host_backed, not readonly)
                except OSError:
                    rc = GNTST_general_error
                    _unpin_locked(rgt, ref, pin_incr, readonly)
        if page is None:
            lgt.put_handle(handle)
            return MapResult(rc)
        rc = _create_host_mapping(ld, lgt, host_addr, page, flags)
        if rc != GNTST_okay:
            page.close()
            _unpin(rgt, ref, pin_incr, readonly)
            lgt.put_handle(handle)
            return MapResult(rc)
        lgt.maptrack[handle] = MapTrack(ref, flags, dom, rgt, page)
    return MapResult(GNTST_okay, handle, rgt.mfn(page.frame) << PAGE_SHIFT, page)


def _pin(rgt: GrantTable, ref: int, ldomid: int, pin_incr: int, readonly: bool) -> int:
    """map_grant_ref's part under the granter's lock: check, set flags, pin. Caller holds it."""
    if rgt.dead:
        return GNTST_bad_domain
    if not 0 <= ref < rgt.nr_entries:
        return GNTST_bad_gntref
    act = rgt.active.get(ref) or Active()
    if act.pin and (act.domid != ldomid or _overflows(act.pin, pin_incr)):
        return GNTST_general_error                 # pinned by another domain, or 128 pins
    if not act.pin or (not readonly and not act.pin & WRITE_PINS):
        rc = _set_status(rgt, ref, act, readonly, True, ldomid)
        if rc != GNTST_okay:
            return rc
        if not act.pin:
            gfn = rgt.frame_of(ref)                # read after the flags are set, as Xen
            rc, frame = _paged_frame(rgt.domain, gfn)
            if rc != GNTST_okay:
                _reduce_status_for_pin(rgt, ref, act, readonly)
                return rc
            act.domid, act.gfn, act.frame = ldomid, gfn, frame
    act.pin += pin_incr
    rgt.active[ref] = act
    return GNTST_okay


def _unpin_locked(rgt: GrantTable, ref: int, incr: int, readonly: bool) -> None:
    act = rgt.active[ref]
    act.pin -= incr
    _reduce_status_for_pin(rgt, ref, act, readonly)
    if not act.pin:
        del rgt.active[ref]


def unmap_grant_ref(ld: "Domain", host_addr: int, dev_bus_addr: int, handle: int,
                    new_addr: int = 0) -> int:
    """Unmap the mapping `handle` of `ld` (unmap_common). With host_addr 0 nothing is unmapped
    and the answer is GNTST_okay, as in Xen; a failed unmap changes nothing."""
    rc = _unmap_grant_ref(ld, host_addr, dev_bus_addr, handle, new_addr)
    if trace.ENABLED:
        trace.emit("grant_unmap", current_vcpu_of(ld), domid=ld.domid, handle=handle, status=rc)
    return rc


def _unmap_grant_ref(ld: "Domain", host_addr: int, dev_bus_addr: int, handle: int,
                     new_addr: int = 0) -> int:
    lgt = _table(ld)
    if lgt is None:
        return GNTST_bad_handle
    with lgt.map_lock:
        if not 0 <= handle < len(lgt.maptrack) or lgt.maptrack[handle] is None:
            return GNTST_bad_handle
        mt = lgt.maptrack[handle]
        assert mt is not None
        done = 0
        if host_addr and mt.flags & GNTMAP_host_map:
            rc = _replace_host_mapping(ld, lgt, host_addr, mt.page, new_addr, mt.flags)
            if rc != GNTST_okay:
                return rc
            done = GNTMAP_host_map | (mt.flags & GNTMAP_readonly)
            mt.flags &= ~GNTMAP_host_map
        # dev_bus_addr only matters for GNTMAP_device_map, which ARM never grants.
        if not mt.flags & (GNTMAP_device_map | GNTMAP_host_map):
            lgt.put_handle(handle)
            mt.page.close()
        if done:
            _unpin(mt.rgt, mt.ref, _pin_incr(done), bool(done & GNTMAP_readonly))
    return GNTST_okay


# -- GNTTABOP_copy ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CopyPtr:
    """struct gnttab_copy_ptr: a grant ref (with GNTCOPY_*_gref) or a local frame."""
    ref_or_gmfn: int
    domid: int
    offset: int


def _acquire_for_copy(rgt: GrantTable, ref: int, ldomid: int,
                      readonly: bool) -> tuple[int, Frame | None]:
    incr = GNTPIN_hstr_inc if readonly else GNTPIN_hstw_inc
    with rgt.lock:
        if rgt.dead:
            return GNTST_bad_domain, None
        if not 0 <= ref < rgt.nr_entries:
            return GNTST_bad_gntref, None
        act = rgt.active.get(ref) or Active()
        if act.pin and (act.domid != ldomid or _overflows(act.pin, incr)):
            return GNTST_general_error, None
        if not act.pin or (not readonly and not act.pin & WRITE_PINS):
            rc = _set_status(rgt, ref, act, readonly, False, ldomid)
            if rc != GNTST_okay:
                return rc, None
            gfn = rgt.frame_of(ref)
            rc, frame = _paged_frame(rgt.domain, gfn)
            if rc == GNTST_okay and act.pin and frame != act.frame:
                rc = GNTST_general_error           # the entry changed under an existing pin
            if rc != GNTST_okay:
                _reduce_status_for_pin(rgt, ref, act, readonly)
                return rc, None
            if not act.pin:
                act.domid, act.gfn, act.frame = ldomid, gfn, frame
        act.pin += incr
        rgt.active[ref] = act
        return GNTST_okay, act.frame


def copy(cd: "Domain", src: CopyPtr, dst: CopyPtr, length: int, flags: int) -> int:
    """One GNTTABOP_copy element on behalf of `cd`. Returns its status."""
    rc = _copy(cd, src, dst, length, flags)
    if trace.ENABLED:
        trace.emit("grant_copy", current_vcpu_of(cd), domid=cd.domid, length=length, status=rc)
    return rc


def _copy(cd: "Domain", src: CopyPtr, dst: CopyPtr, length: int, flags: int) -> int:
    if not length:
        return GNTST_okay                          # nothing at all is checked
    doms: list["Domain"] = []
    for ptr, is_gref in ((src, flags & GNTCOPY_source_gref), (dst, flags & GNTCOPY_dest_gref)):
        if ptr.domid != DOMID_SELF and not is_gref:
            return GNTST_permission_denied         # only DOMID_SELF may name a frame
        d = domain_by_any_id(cd, ptr.domid)
        if d is None or _table(d) is None:
            return GNTST_bad_domain
        doms.append(d)
    held: list[tuple[GrantTable, int, bool]] = []
    bufs: list[tuple[mmap.mmap, int]] = []
    try:
        for d, ptr, is_gref, readonly in ((doms[0], src, flags & GNTCOPY_source_gref, True),
                                          (doms[1], dst, flags & GNTCOPY_dest_gref, False)):
            gt = _table(d)
            assert gt is not None
            if is_gref:
                ref = ptr.ref_or_gmfn & 0xFFFFFFFF
                rc, frame = _acquire_for_copy(gt, ref, cd.domid, readonly)
                if rc == GNTST_okay:
                    held.append((gt, ref, readonly))
            else:
                rc, frame = _paged_frame(d, ptr.ref_or_gmfn)
            if rc != GNTST_okay:
                return rc
            assert frame is not None
            bufs.append(_frame_buffer(frame))
        if src.offset + length > PAGE_SIZE or dst.offset + length > PAGE_SIZE:
            return GNTST_bad_copy_arg
        (sbuf, soff), (dbuf, doff) = bufs
        data = sbuf[soff + src.offset:soff + src.offset + length]
        dbuf[doff + dst.offset:doff + dst.offset + length] = data
        return GNTST_okay
    except ValueError:
        return GNTST_general_error                 # a domain's RAM went away mid-copy
    finally:
        for gt, ref, readonly in held:
            _unpin(gt, ref, GNTPIN_hstr_inc if readonly else GNTPIN_hstw_inc, readonly)


# -- table setup and queries ----------------------------------------------------------------------

def setup_table(cd: "Domain", dom: int, nr_frames: int) -> tuple[int, list[int]]:
    """GNTTABOP_setup_table: grow the table to nr_frames; on ARM the frame list holds the GFN
    where the guest mapped each frame (INVALID_GFN if it has not)."""
    d = domain_by_any_id(cd, dom)
    gt = _table(d)
    if d is None or gt is None:
        return GNTST_bad_domain, []
    if xsm_target(cd, d):
        return GNTST_permission_denied, []
    with gt.lock:
        if nr_frames > gt.max_grant_frames:
            return GNTST_general_error, []
        if nr_frames > gt.nr_grant_frames:
            gt.grow(nr_frames)
        return GNTST_okay, gt.frame_gfn[:nr_frames]


def query_size(cd: "Domain", dom: int) -> tuple[int, int, int]:
    """GNTTABOP_query_size: (status, nr_frames, max_nr_frames)."""
    d = domain_by_any_id(cd, dom)
    gt = _table(d)
    if d is None or gt is None:
        return GNTST_bad_domain, 0, 0
    if xsm_target(cd, d):
        return GNTST_permission_denied, 0, 0
    with gt.lock:
        return GNTST_okay, gt.nr_grant_frames, gt.max_grant_frames


def dump_table(cd: "Domain", dom: int) -> int:
    """GNTTABOP_dump_table: print the domain's grant entries in use to the hypervisor console
    (the header still defines it, "debugging use only"; Xen's GRANT_DEBUG builds served it)."""
    d = domain_by_any_id(cd, dom)
    gt = _table(d)
    if d is None or gt is None:
        return GNTST_bad_domain
    if xsm_target(cd, d):
        return GNTST_permission_denied
    log = d.hv.log
    with gt.lock:
        log(f"grant table for d{d.domid}: {gt.nr_grant_frames} frames ({gt.max_grant_frames} max),"
            f" {len(gt.active)} active, {len(gt.maptrack)} maptrack entries")
        for ref in range(gt.nr_grant_frames * ENTRIES_PER_FRAME):
            flags, domid, frame = gt.entry(ref)
            if flags & GTF_type_mask:
                act = gt.active.get(ref)
                log(f"  [{ref:#06x}] flags {flags:#06x} domid {domid:5d} frame {frame:#010x}"
                    f" pin {act.pin if act else 0:#010x}")
    return GNTST_okay


def table_entries(d: "Domain") -> list[dict]:
    """The entries in use with who maps them: GNTTABOP_dump_table's content, as data for dom0's
    `xenpy gnttab list` (mapped_by comes from every domain's maptrack)."""
    gt = _table(d)
    if gt is None:
        return []
    mapped: dict[int, list[dict]] = {}
    for other in list(d.hv.domains.values()):
        ot = _table(other)
        if ot is None:
            continue
        with ot.map_lock:
            for handle, m in ot.mappings():
                if m.rgt is gt:
                    mapped.setdefault(m.ref, []).append(
                        {"domid": other.domid, "handle": handle,
                         "readonly": bool(m.flags & GNTMAP_readonly)})
    rows = []
    with gt.lock:
        for ref in range(gt.nr_grant_frames * ENTRIES_PER_FRAME):
            flags, domid, frame = gt.entry(ref)
            if not flags & GTF_type_mask and ref not in mapped:
                continue
            act = gt.active.get(ref)
            rows.append({"ref": ref, "flags": flags, "domid": domid, "frame": frame,
                         "pin": act.pin if act else 0, "mapped_by": mapped.get(ref, [])})
    return rows


def set_version(d: "Domain", version: int) -> tuple[int, int]:
    """GNTTABOP_set_version for the calling domain: (rc, version now in force)."""
    gt = _table(d)
    assert gt is not None
    if version not in (1, 2):
        return -errno.EINVAL, gt.version
    if version > GNTTAB_MAX_VERSION:
        return -errno.ENOSYS, gt.version           # "behave as before set_version existed"
    return 0, gt.version


def get_version(cd: "Domain", dom: int) -> tuple[int, int]:
    d = domain_by_any_id(cd, dom)
    gt = _table(d)
    if d is None or gt is None:
        return -errno.ESRCH, 0
    rc = xsm_target(cd, d)
    if rc:
        return rc, 0
    return 0, gt.version


def get_status_frames(cd: "Domain", dom: int, nr_frames: int) -> int:
    """Version 1 has no status frames: only a request for none succeeds."""
    d = domain_by_any_id(cd, dom)
    if d is None or _table(d) is None:
        return GNTST_bad_domain
    if xsm_target(cd, d):
        return GNTST_permission_denied
    return GNTST_general_error if nr_frames > 0 else GNTST_okay


def swap_grant_ref(d: "Domain", ref_a: int, ref_b: int) -> int:
    gt = _table(d)
    assert gt is not None
    with gt.lock:
        if not 0 <= ref_a < gt.nr_entries or not 0 <= ref_b < gt.nr_entries:
            return GNTST_bad_gntref
        if ref_a == ref_b:
            return GNTST_okay
        if ref_a in gt.active or ref_b in gt.active:
            return GNTST_eagain                    # in use
        a = bytes(gt.shared[ref_a * 8:ref_a * 8 + 8])
        gt.shared[ref_a * 8:ref_a * 8 + 8] = gt.shared[ref_b * 8:ref_b * 8 + 8]
        gt.shared[ref_b * 8:ref_b * 8 + 8] = a
        return GNTST_okay


def cache_flush(cd: "Domain", dev_bus_addr: int, offset: int, length: int, op: int,
                cur_ref: int = 0) -> int:
    """GNTTABOP_cache_flush (ARM): validate, and check the caller may touch the page (its own,
    or one it has a grant of). Unicorn models no caches, so there is nothing to flush."""
    if (offset >= PAGE_SIZE or length > PAGE_SIZE or offset + length > PAGE_SIZE
            or op & ~(GNTTAB_CACHE_INVAL | GNTTAB_CACHE_CLEAN)):
        return -errno.EINVAL                       # GNTTAB_CACHE_SOURCE_GREF lands here too
    if length == 0 or op == 0:
        return -EILSEQ if cur_ref else 0
    frame = machine_map(cd.hv).lookup(dev_bus_addr >> PAGE_SHIFT)
    if frame is None:
        return -errno.EINVAL
    owner = frame.owner
    if owner.domain is cd:
        return 0
    with owner.lock:
        for act in owner.active.values():
            if act.pin and act.domid == cd.domid and act.frame == frame:
                return 0
    return -errno.EINVAL



# -- XENMAPSPACE_grant_table --------------------------------------------------------------------

def map_frame(d: "Domain", idx: int, gpfn: int) -> int:
    """XENMEM_add_to_physmap(XENMAPSPACE_grant_table): show shared frame `idx` at `gpfn`, growing
    the table up to it. XENMAPIDX_grant_table_status is a v2 request: under v1 the index, with
    that bit, is simply out of range (-EINVAL). Xen takes the index as an unsigned int."""
    gt = _table(d)
    if gt is None or d.p2m is None:
        return -errno.EINVAL
    idx &= 0xFFFFFFFF
    with gt.map_lock:
        with gt.lock:
            if idx >= gt.nr_grant_frames:
                if idx + 1 <= gt.max_grant_frames:
                    gt.grow(idx + 1)
                if idx >= gt.nr_grant_frames:
                    return -errno.EINVAL
            if gt.frame_gfn[idx] != INVALID_GFN:
                return -errno.EBUSY                # unmap it first (current Xen)
        if gpfn >= IPA_LIMIT_GFN:
            return -errno.EINVAL
        try:
            d.p2m.map(gpfn, gt.shared, idx * PAGE_SIZE, writable=True)
        except UcError:
            return -errno.EINVAL
        _drop_p2m_record(gt, gpfn)
        with gt.lock:
            gt.frame_gfn[idx] = gpfn
            gt.frame_at[gpfn] = idx
    return 0


memory.register_mapspace(XENMAPSPACE_grant_table, map_frame)


# -- for the toolstack and tests: what a granting guest writes ------------------------------------

def seed_entry(d: "Domain", ref: int, domid: int, gfn: int, flags: int = GTF_permit_access) -> None:
    """Write grant entry `ref` as a guest would (frame and domid first, then flags), as the
    domain builder does for GNTTAB_RESERVED_CONSOLE / _XENSTORE (Xen's gnttab_seed_entry)."""
    gt = _table(d)
    assert gt is not None and 0 <= ref < gt.max_grant_frames * ENTRIES_PER_FRAME
    off = ref * ENTRY_SIZE
    gt.shared[off + 4:off + 8] = gfn.to_bytes(4, "little")
    gt.shared[off + 2:off + 4] = domid.to_bytes(2, "little")
    gt.shared[off:off + 2] = flags.to_bytes(2, "little")


def end_foreign_access(d: "Domain", ref: int) -> bool:
    """Revoke grant `ref` as a guest does: swap its flags to 0 unless Xen marked it in use."""
    gt = _table(d)
    assert gt is not None
    combo = gt.load_combo(ref)
    while True:
        if combo & (GTF_reading | GTF_writing):
            return False
        prev = gt.cmpxchg_combo(ref, combo, combo & 0xFFFF0000)
        if prev == combo:
            return True
        combo = prev


def usage(hv: "Hypervisor") -> list[str]:
    """Every domain's active grants, like Xen's 'g' debug key (gnttab_usage_print_all)."""
    lines = []
    for d in list(hv.domains.values()):
        gt = _table(d)
        if gt is None:
            continue
        with gt.lock:
            acts = sorted(gt.active.items())
            if not acts:
                continue
            lines.append(f"grant-table for remote d{d.domid} (v{gt.version})")
            lines.append(f"  {gt.nr_grant_frames} frames ({gt.max_grant_frames} max), "
                         f"{len(gt.maptrack)} maptrack entries")
            lines.append("[ref] localdom mfn      pin          flags   domid     gfn")
            for ref, act in acts:
                flags, domid, frame = gt.entry(ref)
                mfn = gt.mfn(act.frame) if act.frame is not None else 0
                lines.append(f"[{ref:#5x}]  {act.domid:5d} {mfn:#08x} {act.pin:#010x} "
                             f"{flags:#06x} {domid:5d} {frame:#07x}")
    return lines


# -- HYPERVISOR_grant_table_op ------------------------------------------------------------------

def _status_at(v: "Vcpu", addr: int, status: int) -> None:
    assert v.arch is not None
    copy_to_guest(v.arch, addr, STATUS.pack(status))


@hypercall(HYPERVISOR_grant_table_op)
def do_grant_table_op(v: "Vcpu", args: tuple[int, ...]) -> int:
    cmd, uop, count = args[0] & 0xFFFFFFFF, args[1], args[2] & 0xFFFFFFFF
    d, a = v.domain, v.arch
    assert a is not None
    if _table(d) is None:
        return -errno.ENOSYS
    if count >= 1 << 31:
        return -errno.EINVAL                       # (int)count < 0
    op, opaque = cmd & GNTTABOP_CMD_MASK, cmd >> GNTTABOP_CONTINUATION_ARG_SHIFT
    if opaque and op != GNTTABOP_cache_flush:
        return -errno.EINVAL

    if op == GNTTABOP_map_grant_ref:
        for i in range(count):
            at = uop + i * MAP_GRANT_REF.size
            host_addr, flags, ref, dom, _st, handle, bus = MAP_GRANT_REF.unpack(
                copy_from_guest(a, at, MAP_GRANT_REF.size))
            r = map_grant_ref(d, host_addr, flags, ref, dom)
            if r.status == GNTST_okay:
                handle, bus = r.handle, r.dev_bus_addr
            copy_to_guest(a, at, MAP_GRANT_REF.pack(host_addr, flags, ref, dom, r.status,
                                                    handle, bus))
        return 0
    if op in (GNTTABOP_unmap_grant_ref, GNTTABOP_unmap_and_replace):
        s, status_off = ((UNMAP_GRANT_REF, UNMAP_GRANT_REF_STATUS) if op == GNTTABOP_unmap_grant_ref
                         else (UNMAP_AND_REPLACE, UNMAP_AND_REPLACE_STATUS))
        for i in range(count):
            at = uop + i * s.size
            host_addr, second, handle, _st = s.unpack(copy_from_guest(a, at, s.size))
            if op == GNTTABOP_unmap_grant_ref:
                st = unmap_grant_ref(d, host_addr, second, handle)
            else:
                st = unmap_grant_ref(d, host_addr, 0, handle, new_addr=second)
            _status_at(v, at + status_off, st)
        return 0
    if op == GNTTABOP_setup_table:
        if count != 1:
            return -errno.EINVAL
        dom, nr_frames, _st, frame_list = SETUP_TABLE.unpack(
            copy_from_guest(a, uop, SETUP_TABLE.size))
        st, gfns = setup_table(d, dom, nr_frames)
        for i, gfn in enumerate(gfns):
            try:
                copy_to_guest(a, frame_list + i * XEN_PFN.size, XEN_PFN.pack(gfn))
            except GuestFault:     # the rest of the list is unwritable
                st = GNTST_bad_virt_addr
                break
        _status_at(v, uop + SETUP_TABLE_STATUS, st)
        return 0
    if op == GNTTABOP_copy:
        for i in range(count):
            at = uop + i * COPY.size
            (s_u, s_dom, s_off, d_u, d_dom, d_off, length, flags,
             _st) = COPY.unpack(copy_from_guest(a, at, COPY.size))
            st = copy(d, CopyPtr(s_u, s_dom, s_off), CopyPtr(d_u, d_dom, d_off), length, flags)
            _status_at(v, at + COPY_STATUS, st)
        return 0
    if op == GNTTABOP_query_size:
        if count != 1:
            return -errno.EINVAL
        dom, nr, mx, _st = QUERY_SIZE.unpack(copy_from_guest(a, uop, QUERY_SIZE.size))
        st, n, m = query_size(d, dom)
        if st == GNTST_okay:
            nr, mx = n, m
        copy_to_guest(a, uop, QUERY_SIZE.pack(dom, nr, mx, st))
        return 0
    if op == GNTTABOP_set_version:
        (version,) = SET_VERSION.unpack(copy_from_guest(a, uop, SET_VERSION.size))
        rc, now = set_version(d, version)
        copy_to_guest(a, uop, SET_VERSION.pack(now))
        return rc
    if op == GNTTABOP_get_version:
        dom, _pad, _ver = GET_VERSION.unpack(copy_from_guest(a, uop, GET_VERSION.size))
        rc, version = get_version(d, dom)
        if rc:
            return rc
        copy_to_guest(a, uop + GET_VERSION_VERSION, version.to_bytes(4, "little"))
        return 0
    if op == GNTTABOP_get_status_frames:
        if count != 1:
            return -errno.EINVAL
        nr_frames, dom, _st, _list = GET_STATUS_FRAMES.unpack(
            copy_from_guest(a, uop, GET_STATUS_FRAMES.size))
        _status_at(v, uop + GET_STATUS_FRAMES_STATUS, get_status_frames(d, dom, nr_frames))
        return 0
    if op == GNTTABOP_swap_grant_ref:
        for i in range(count):
            at = uop + i * SWAP_GRANT_REF.size
            ref_a, ref_b, _st = SWAP_GRANT_REF.unpack(copy_from_guest(a, at, SWAP_GRANT_REF.size))
            _status_at(v, at + SWAP_GRANT_REF_STATUS, swap_grant_ref(d, ref_a, ref_b))
        return 0
    if op == GNTTABOP_cache_flush:
        cur_ref = opaque
        for i in range(count):
            bus, off, length, fop = CACHE_FLUSH.unpack(
                copy_from_guest(a, uop + i * CACHE_FLUSH.size, CACHE_FLUSH.size))
            rc = cache_flush(d, bus, off, length, fop, cur_ref)
            if rc < 0:
                return rc
            cur_ref = 0
        return 0
    if op == GNTTABOP_dump_table:
        if count != 1:
            return -errno.EINVAL
        dom, _st = DUMP_TABLE.unpack(copy_from_guest(a, uop, DUMP_TABLE.size))
        _status_at(v, uop + 2, dump_table(d, dom))
        return 0
    if op == GNTTABOP_transfer:
        return -errno.EOPNOTSUPP                   # no page transfer without PV guests
    return -errno.ENOSYS
