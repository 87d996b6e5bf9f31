"""Grant tables v1: every GNTTABOP through the hypercall table with each status it can return,
the flag protocol (GTF_reading/GTF_writing set while mapped, cleared at the last unmap), zero-copy
p2m mappings, XENMAPSPACE_grant_table, release on destruction, dom0's gntdev over privcmd, a
concurrent revoking guest, and a stateful property test.

No guest code runs: the hypervisor is never started; the granting guest's side (writing entries,
revoking with a compare-and-swap) is done on its grant frames from the test, and a mapper's view
of memory is read through its vCPU's p2m-aware read_phys/write_phys."""
from __future__ import annotations

import mmap
import struct
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, initialize, invariant,
                                 rule)

from toolstack.xc import LocalTransport
from toolstack.xengnttab import GnttabError, Xengnttab
from xenpy.board import gntdev
from xenpy.board.privcmd import Privcmd
from xenpy.common import grant_table as gt
from xenpy.common.domain import Domain
from xenpy.common.hypercall import dispatch
from xenpy.common.hypervisor import Hypervisor
from xenpy.public import errno
from xenpy.public.grant_table import (
    CACHE_FLUSH, COPY, GET_STATUS_FRAMES, GET_VERSION, GNTCOPY_dest_gref, GNTCOPY_source_gref,
    GNTMAP_application_map, GNTMAP_contains_pte, GNTMAP_device_map, GNTMAP_host_map,
    GNTMAP_readonly, GNTST_bad_copy_arg, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle,
    GNTST_bad_page, GNTST_bad_virt_addr, GNTST_eagain, GNTST_general_error, GNTST_no_space,
    GNTST_okay, GNTST_permission_denied, GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL,
    GNTTAB_CACHE_SOURCE_GREF, GNTTABOP_cache_flush, GNTTABOP_copy, GNTTABOP_dump_table,
    GNTTABOP_get_status_frames, GNTTABOP_get_version, GNTTABOP_map_grant_ref,
    GNTTABOP_query_size, GNTTABOP_set_version, GNTTABOP_setup_table, GNTTABOP_swap_grant_ref,
    GNTTABOP_transfer, GNTTABOP_unmap_and_replace, GNTTABOP_unmap_grant_ref, GTF_accept_transfer,
    GTF_PWT, GTF_permit_access, GTF_readonly, GTF_reading, GTF_sub_page, GTF_transitive,
    GTF_writing,
    MAP_GRANT_REF, QUERY_SIZE, SET_VERSION, SETUP_TABLE, SWAP_GRANT_REF, UNMAP_AND_REPLACE,
    UNMAP_GRANT_REF, XENMAPIDX_grant_table_status,
)
from xenpy.public.memory import XENMAPSPACE_grant_table, XENMEM_add_to_physmap
from xenpy.public.xen import DOMID_SELF, HYPERVISOR_grant_table_op, HYPERVISOR_memory_op

RAM = 0x80000000                 # the "4.4" layout's RAM base
RAM_GFN = RAM >> 12
PAGES = 64
ARG = RAM + 0x20000              # where a test puts hypercall argument structs
LIST = RAM + 0x21000             # and frame lists
GNT_GFN = 0xB0000                # the 4.4 grant window
HOLE_GFN = 0x90000               # neither RAM nor anything mapped: a free guest-physical frame
RW = GTF_permit_access
RO = GTF_permit_access | GTF_readonly


# -- rig -------------------------------------------------------------------------------------------

class Rig:
    def __init__(self) -> None:
        self.hv = Hypervisor()
        self.hv.vcpu_mark_events_pending = lambda v: None   # type: ignore[attr-defined]
        self.dom0 = self.hv.domains[0]
        ensure_gnttab(self.dom0)

    def domu(self, pages: int = PAGES, **limits: int) -> Domain:
        d = self.hv.domains[self.hv.domain_create(0, 1, None, "4.4")]
        assert self.hv.domain_populate(d, pages) == 0
        if limits:
            assert gt.gnttab_init(d, **limits) == 0
        ensure_gnttab(d)
        return d

    def destroy(self, d: Domain) -> None:
        gt.gnttab_release(d)
        self.hv.domains.pop(d.domid, None)
        d.is_dying = True
        d.release()

    def close(self) -> None:
        for d in list(self.hv.domains.values()):
            d.release()


def ensure_gnttab(d: Domain) -> None:
    if getattr(d, "grant_table", None) is None:     # the hypervisor may already do it
        assert gt.gnttab_init(d) == 0


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def table(d: Domain) -> gt.GrantTable:
    return d.grant_table      # type: ignore[attr-defined]


def grant(d: Domain, ref: int, to: int, page: int, flags: int = RW) -> None:
    """The granting guest fills entry `ref`: its RAM page number `page` for domain `to`."""
    gt.seed_entry(d, ref, to, RAM_GFN + page, flags)


def flags_of(d: Domain, ref: int) -> int:
    return table(d).entry(ref)[0]


def fill(d: Domain, page: int, data: bytes) -> None:
    d.ram_write(RAM + page * 4096, data)


def gop(d: Domain, cmd: int, payload: bytes, count: int = 1, addr: int = ARG) -> tuple[int, bytes]:
    d.ram_write(addr, payload)
    rc = dispatch(d.vcpus[0], HYPERVISOR_grant_table_op, (cmd, addr, count, 0, 0))
    return rc, bytes(d.vcpus[0].arch.read_phys(addr, len(payload)))


def map_op(d: Domain, dom: int, ref: int, gfn: int = HOLE_GFN, flags: int = GNTMAP_host_map
           ) -> tuple[int, int, int]:
    """GNTTABOP_map_grant_ref from d's vCPU: (status, handle, dev_bus_addr)."""
    rc, out = gop(d, GNTTABOP_map_grant_ref,
                  MAP_GRANT_REF.pack(gfn << 12, flags, ref, dom, 0x55, 0xAAAA, 0xBB))
    assert rc == 0
    _, _, _, _, status, handle, bus = MAP_GRANT_REF.unpack(out)
    return status, handle, bus


def unmap_op(d: Domain, handle: int, gfn: int = HOLE_GFN) -> int:
    rc, out = gop(d, GNTTABOP_unmap_grant_ref, UNMAP_GRANT_REF.pack(gfn << 12, 0, handle, 0x55))
    assert rc == 0
    return UNMAP_GRANT_REF.unpack(out)[3]


def copy_op(d: Domain, src: tuple[int, int, int], dst: tuple[int, int, int], length: int,
            flags: int) -> int:
    rc, out = gop(d, GNTTABOP_copy, COPY.pack(*src, *dst, length, flags, 0x55))
    assert rc == 0
    return COPY.unpack(out)[8]


def physmap(d: Domain, idx: int, gpfn: int, domid: int = DOMID_SELF) -> int:
    d.ram_write(ARG, struct.pack("<HHIQQ", domid, 0, XENMAPSPACE_grant_table, idx, gpfn))
    return dispatch(d.vcpus[0], HYPERVISOR_memory_op, (XENMEM_add_to_physmap, ARG, 0, 0, 0))


def phys(d: Domain, gfn: int, n: int = 4, off: int = 0) -> bytes | None:
    return d.vcpus[0].arch.read_phys((gfn << 12) + off, n)


def writable(d: Domain, gfn: int) -> bool:
    """Whether the domain can write frame gfn (a write of what is there, so nothing changes)."""
    cur = phys(d, gfn, 4)
    return cur is not None and d.vcpus[0].arch.write_phys(gfn << 12, cur)


def leak_free(*doms: Domain) -> None:
    """No pins, no maptrack entries, no grant p2m entries anywhere."""
    for d in doms:
        t = table(d)
        assert t.active == {}, f"d{d.domid} still has pins"
        assert t.mappings() == [], f"d{d.domid} still maps grants"
        assert t.grant_p2m == {}


# -- init ------------------------------------------------------------------------------------------

def test_init_limits(rig):
    d = rig.domu()
    t = table(d)
    assert (t.nr_grant_frames, t.max_grant_frames, t.version) == (1, 32, 1)  # 4.4 window: 32
    assert t.max_maptrack_frames == 1024
    assert table(rig.dom0).max_grant_frames == 64          # no layout: the default
    assert gt.gnttab_init(d, max_grant_frames=0) == -errno.EINVAL
    assert gt.gnttab_init(d, max_maptrack_frames=-1) == -errno.EINVAL
    assert gt.gnttab_init(d, max_grant_frames=4, max_maptrack_frames=0) == 0
    assert table(d).max_grant_frames == 4


# -- query_size / setup_table / physmap ------------------------------------------------------------

def test_query_size(rig):
    a, b = rig.domu(), rig.domu()
    rc, out = gop(a, GNTTABOP_query_size, QUERY_SIZE.pack(DOMID_SELF, 7, 7, 0x55))
    assert rc == 0 and QUERY_SIZE.unpack(out) == (DOMID_SELF, 1, 32, GNTST_okay)
    # Another domU's table: XSM_TARGET refuses; the struct keeps what the guest wrote.
    rc, out = gop(a, GNTTABOP_query_size, QUERY_SIZE.pack(b.domid, 7, 8, 0x55))
    assert rc == 0 and QUERY_SIZE.unpack(out) == (b.domid, 7, 8, GNTST_permission_denied)
    rc, out = gop(a, GNTTABOP_query_size, QUERY_SIZE.pack(0x7000, 7, 8, 0x55))
    assert QUERY_SIZE.unpack(out)[3] == GNTST_bad_domain
    assert gt.query_size(rig.dom0, a.domid) == (GNTST_okay, 1, 32)       # dom0 may ask
    assert gop(a, GNTTABOP_query_size, QUERY_SIZE.pack(DOMID_SELF, 0, 0, 0), count=2)[0] == \
        -errno.EINVAL
    assert dispatch(a.vcpus[0], HYPERVISOR_grant_table_op,
                    (GNTTABOP_query_size, 0x1000, 1, 0, 0)) == -errno.EFAULT


def test_setup_table_grows_and_lists_where_frames_are_mapped(rig):
    a, b = rig.domu(), rig.domu()
    d_list = LIST
    a.ram_write(d_list, b"\xEE" * 64)
    rc, out = gop(a, GNTTABOP_setup_table, SETUP_TABLE.pack(DOMID_SELF, 3, 0x55, d_list))
    assert rc == 0 and SETUP_TABLE.unpack(out)[2] == GNTST_okay
    assert table(a).nr_grant_frames == 3
    assert struct.unpack("<3Q", phys(a, d_list >> 12, 24)) == (gt.INVALID_GFN,) * 3
    assert struct.unpack("<Q", phys(a, d_list >> 12, 8, 24))[0] == 0xEEEEEEEEEEEEEEEE
    assert physmap(a, 1, GNT_GFN + 1) == 0
    gop(a, GNTTABOP_setup_table, SETUP_TABLE.pack(DOMID_SELF, 2, 0, d_list))
    assert struct.unpack("<2Q", phys(a, d_list >> 12, 16)) == (gt.INVALID_GFN, GNT_GFN + 1)
    # Never shrinks; more than the maximum is refused and changes nothing.
    gop(a, GNTTABOP_setup_table, SETUP_TABLE.pack(DOMID_SELF, 1, 0, d_list))
    assert table(a).nr_grant_frames == 3
    rc, out = gop(a, GNTTABOP_setup_table, SETUP_TABLE.pack(DOMID_SELF, 33, 0, d_list))
    assert SETUP_TABLE.unpack(out)[2] == GNTST_general_error and table(a).nr_grant_frames == 3
    _, out = gop(a, GNTTABOP_setup_table, SETUP_TABLE.pack(b.domid, 1, 0, d_list))
    assert SETUP_TABLE.unpack(out)[2] == GNTST_permission_denied
    _, out = gop(a, GNTTABOP_setup_table, SETUP_TABLE.pack(0x7000, 1, 0, d_list))
    assert SETUP_TABLE.unpack(out)[2] == GNTST_bad_domain
    # An unwritable frame list: the frames before the fault are written, status says so.
    last = RAM + PAGES * 4096 - 8
    _, out = gop(a, GNTTABOP_setup_table, SETUP_TABLE.pack(DOMID_SELF, 2, 0, last))
    assert SETUP_TABLE.unpack(out)[2] == GNTST_bad_virt_addr
    assert gop(a, GNTTABOP_setup_table, SETUP_TABLE.pack(DOMID_SELF, 1, 0, d_list), 0)[0] == \
        -errno.EINVAL
    assert gt.setup_table(rig.dom0, a.domid, 4) == (GNTST_okay, [gt.INVALID_GFN, GNT_GFN + 1,
                                                                 gt.INVALID_GFN, gt.INVALID_GFN])


def test_physmap_shows_the_shared_frame_zero_copy(rig):
    a = rig.domu()
    assert physmap(a, 0, GNT_GFN) == 0
    # The guest writes an entry through its mapping; the hypervisor sees it, and back.
    assert a.vcpus[0].arch.write_phys((GNT_GFN << 12) + 8 * 9, struct.pack("<HHI", RW, 5, 0x80001))
    assert table(a).entry(9) == (RW, 5, 0x80001)
    gt.seed_entry(a, 10, 6, 0x80002, RO)
    assert phys(a, GNT_GFN, 8, 80) == struct.pack("<HHI", RO, 6, 0x80002)
    # Frames beyond the current size grow the table; the same frame twice is -EBUSY.
    assert physmap(a, 5, GNT_GFN + 5) == 0 and table(a).nr_grant_frames == 6
    assert physmap(a, 5, GNT_GFN + 6) == -errno.EBUSY
    assert physmap(a, 0, GNT_GFN) == -errno.EBUSY
    assert physmap(a, 32, GNT_GFN + 7) == -errno.EINVAL                  # max is 32 frames
    assert physmap(a, XENMAPIDX_grant_table_status | 1, GNT_GFN + 7) == -errno.EINVAL   # v2 only
    assert physmap(a, (1 << 32) | 3, GNT_GFN + 3) == 0                  # Xen's idx is 32-bit
    assert table(a).frame_gfn[3] == GNT_GFN + 3
    assert physmap(a, 4, 1 << 20) == -errno.EINVAL                       # beyond 4 GiB of IPA
    assert table(a).frame_gfn[4] == gt.INVALID_GFN
    # Over RAM: the RAM page is hidden while the frame is there.
    assert physmap(a, 7, RAM_GFN + 40) == 0
    assert phys(a, RAM_GFN + 40, 8, 0) == bytes(table(a).shared[7 * 4096:7 * 4096 + 8])
    # dom0 may map a domU's frame into that domU.
    b = rig.domu()
    d0 = rig.dom0
    assert gt.map_frame(b, 2, GNT_GFN + 2) == 0 and table(b).frame_gfn[2] == GNT_GFN + 2
    assert gt.map_frame(d0, 0, GNT_GFN) == -errno.EINVAL                 # dom0 has no p2m here


# -- map_grant_ref ---------------------------------------------------------------------------------

def test_map_writable_is_zero_copy_and_sets_the_flags(rig):
    a, b = rig.domu(), rig.domu()
    fill(a, 3, b"GRANTED")
    grant(a, 8, b.domid, 3)
    status, handle, bus = map_op(b, a.domid, 8)
    assert (status, handle) == (GNTST_okay, 0)
    assert flags_of(a, 8) == RW | GTF_reading | GTF_writing
    assert phys(b, HOLE_GFN, 7) == b"GRANTED"
    assert b.vcpus[0].arch.write_phys(HOLE_GFN << 12, b"ANSWER!")
    assert bytes(a.ram[3 * 4096:3 * 4096 + 7]) == b"ANSWER!"          # same memory, no copy
    m = b.p2m.lookup(HOLE_GFN)
    assert m is not None and m.writable
    # A second mapping of the same grant: same page, same machine address, next handle.
    status, handle2, bus2 = map_op(b, a.domid, 8, HOLE_GFN + 1, GNTMAP_host_map | GNTMAP_readonly)
    assert (status, handle2, bus2) == (GNTST_okay, 1, bus) and bus != 0
    assert not writable(b, HOLE_GFN + 1) and phys(b, HOLE_GFN + 1, 7) == b"ANSWER!"
    assert table(a).active[8].pin == gt.GNTPIN_hstw_inc + gt.GNTPIN_hstr_inc
    # Unmapping the writable one keeps GTF_reading only; the last unmap clears both.
    assert unmap_op(b, handle) == GNTST_okay
    assert flags_of(a, 8) == RW | GTF_reading
    assert unmap_op(b, handle2, HOLE_GFN + 1) == GNTST_okay
    assert flags_of(a, 8) == RW
    assert b.p2m.lookup(HOLE_GFN) is None and phys(b, HOLE_GFN) is None
    leak_free(a, b)


def test_map_over_own_ram_hides_it_and_unmap_brings_it_back(rig):
    a, b = rig.domu(), rig.domu()
    fill(a, 3, b"A's page")
    fill(b, 10, b"B's page")
    grant(a, 8, b.domid, 3)
    status, handle, _ = map_op(b, a.domid, 8, RAM_GFN + 10, GNTMAP_host_map | GNTMAP_readonly)
    assert status == GNTST_okay and phys(b, RAM_GFN + 10, 8) == b"A's page"
    assert not writable(b, RAM_GFN + 10)
    assert unmap_op(b, handle, RAM_GFN + 10) == GNTST_okay
    assert phys(b, RAM_GFN + 10, 8) == b"B's page" and writable(b, RAM_GFN + 10)
    leak_free(a, b)


@pytest.mark.parametrize("entry_flags, map_flags, expect", [
    (RW, GNTMAP_host_map, GNTST_okay),
    (RW, GNTMAP_host_map | GNTMAP_readonly, GNTST_okay),
    (RO, GNTMAP_host_map | GNTMAP_readonly, GNTST_okay),
    (RO, GNTMAP_host_map, GNTST_general_error),                    # write-pin of a r/o grant
    (GTF_accept_transfer, GNTMAP_host_map, GNTST_general_error),
    (GTF_transitive, GNTMAP_host_map | GNTMAP_readonly, GNTST_general_error),
    (0, GNTMAP_host_map | GNTMAP_readonly, GNTST_general_error),   # revoked / never granted
    (RW | GTF_sub_page, GNTMAP_host_map, GNTST_general_error),     # sub-page: no mapping
    (RW, 0, GNTST_bad_gntref),                                     # neither host nor device
    (RW, GNTMAP_readonly, GNTST_bad_gntref),
    (RW, GNTMAP_device_map, GNTST_general_error),                  # ARM: no device mappings
    (RW, GNTMAP_device_map | GNTMAP_host_map, GNTST_general_error),
    (RW, GNTMAP_host_map | GNTMAP_application_map, GNTST_general_error),
    (RW, GNTMAP_host_map | GNTMAP_contains_pte, GNTST_general_error),
    (RW, GNTMAP_host_map | 1 << 16, GNTST_general_error),          # guest_avail bits
])
def test_map_status_matrix(rig, entry_flags, map_flags, expect):
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3, entry_flags)
    status, handle, _ = map_op(b, a.domid, 8, HOLE_GFN, map_flags)
    assert status == expect
    if expect == GNTST_okay:
        assert writable(b, HOLE_GFN) == (not map_flags & GNTMAP_readonly)
        assert unmap_op(b, handle) == GNTST_okay
    # Whatever happened, nothing is left: flags as granted, no pin, no handle, no p2m entry.
    assert flags_of(a, 8) == entry_flags
    assert b.p2m.lookup(HOLE_GFN) is None
    leak_free(a, b)
    assert table(b).maptrack == [] or 0 in table(b).maptrack_free      # handle 0 free again


def test_map_refusals(rig):
    a, b, c = rig.domu(), rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    assert map_op(c, a.domid, 8)[0] == GNTST_general_error             # named b, not c
    assert map_op(b, a.domid, 512)[0] == GNTST_bad_gntref              # one frame: 512 entries
    assert map_op(b, a.domid, 0xFFFFFFFF)[0] == GNTST_bad_gntref
    assert map_op(b, 0x7000, 8)[0] == GNTST_bad_domain
    assert map_op(b, DOMID_SELF, 8)[0] == GNTST_bad_domain             # map takes ids only
    grant(a, 9, b.domid, PAGES + 5)                                    # beyond a's RAM
    assert map_op(b, a.domid, 9)[0] == GNTST_bad_page
    grant(a, 10, b.domid, 0x10000 - RAM_GFN)                           # gfn 0x10000: MMIO-ish
    assert map_op(b, a.domid, 10)[0] == GNTST_bad_page
    assert map_op(b, a.domid, 8, 1 << 20)[0] == GNTST_general_error    # host_addr beyond IPA
    for ref in (8, 9, 10):
        assert flags_of(a, ref) == RW                                   # reading/writing undone
    leak_free(a, b, c)
    # After growing the table the ref is valid.
    assert gt.setup_table(a, DOMID_SELF, 2)[0] == GNTST_okay
    grant(a, 600, b.domid, 3)
    status, handle, _ = map_op(b, a.domid, 600)
    assert status == GNTST_okay and unmap_op(b, handle) == GNTST_okay


def test_a_granter_cannot_grant_pages_it_mapped_from_others_but_can_grant_its_gnttab(rig):
    a, b, c = rig.domu(), rig.domu(), rig.domu()
    grant(c, 8, a.domid, 1)
    st_, h, _ = map_op(a, c.domid, 8, RAM_GFN + 20)                    # a maps c's page...
    assert st_ == GNTST_okay
    grant(a, 8, b.domid, 20)                                           # ...and re-grants it
    assert map_op(b, a.domid, 8)[0] == GNTST_bad_page
    assert flags_of(a, 8) == RW
    assert physmap(a, 0, GNT_GFN) == 0
    gt.seed_entry(a, 9, b.domid, GNT_GFN, RO)                          # its own grant frame
    status, h2, _ = map_op(b, a.domid, 9, HOLE_GFN, GNTMAP_host_map | GNTMAP_readonly)
    assert status == GNTST_okay
    assert phys(b, HOLE_GFN, 8, 9 * 8) == struct.pack("<HHI", RO | GTF_reading, b.domid, GNT_GFN)
    assert unmap_op(b, h2) == GNTST_okay and unmap_op(a, h, RAM_GFN + 20) == GNTST_okay
    leak_free(a, b, c)


def test_a_domain_may_map_and_copy_its_own_grant(rig):
    a = rig.domu()
    fill(a, 3, b"mine")
    grant(a, 8, a.domid, 3)
    status, h, _ = map_op(a, a.domid, 8, HOLE_GFN)
    assert status == GNTST_okay and phys(a, HOLE_GFN) == b"mine"
    assert copy_op(a, (8, DOMID_SELF, 0), (RAM_GFN + 5, DOMID_SELF, 0), 4,
                   GNTCOPY_source_gref) == GNTST_okay
    assert bytes(a.ram[5 * 4096:5 * 4096 + 4]) == b"mine"
    assert unmap_op(a, h) == GNTST_okay and flags_of(a, 8) == RW
    leak_free(a)


def test_pinned_entries_are_not_rechecked_and_keep_their_frame(rig):
    """Once pinned, later maps by the same domain do not re-read the entry (benign by design):
    neither a new GTF_readonly nor a new frame affect them until the last unmap."""
    a, b, c = rig.domu(), rig.domu(), rig.domu()
    fill(a, 3, b"page 3")
    fill(a, 4, b"page 4")
    grant(a, 8, b.domid, 3)
    st1, h1, _ = map_op(b, a.domid, 8, HOLE_GFN)
    gt.seed_entry(a, 8, c.domid, RAM_GFN + 4, RO | GTF_reading | GTF_writing)   # guest rewrites
    assert map_op(c, a.domid, 8)[0] == GNTST_general_error      # pinned by b
    st2, h2, _ = map_op(b, a.domid, 8, HOLE_GFN + 1)            # writable, entry now says r/o
    assert (st1, st2) == (GNTST_okay, GNTST_okay)
    assert phys(b, HOLE_GFN + 1, 6) == b"page 3"                # the pinned frame, not page 4
    assert writable(b, HOLE_GFN + 1)
    assert unmap_op(b, h1) == GNTST_okay and unmap_op(b, h2, HOLE_GFN + 1) == GNTST_okay
    assert flags_of(a, 8) == RO                                 # in-use bits cleared
    # Now unpinned: the entry as it stands applies.
    assert map_op(b, a.domid, 8)[0] == GNTST_general_error      # names c now
    status, h3, _ = map_op(c, a.domid, 8, HOLE_GFN, GNTMAP_host_map | GNTMAP_readonly)
    assert status == GNTST_okay and phys(c, HOLE_GFN, 6) == b"page 4"
    assert unmap_op(c, h3) == GNTST_okay
    leak_free(a, b, c)


def test_pin_counter_overflow_and_maptrack_exhaustion(rig):
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    handles = []
    for _ in range(128):
        status, h, _ = map_op(b, a.domid, 8, HOLE_GFN)          # same address: remapped
        assert status == GNTST_okay
        handles.append(h)
    assert map_op(b, a.domid, 8, HOLE_GFN)[0] == GNTST_general_error   # 8-bit counter full
    status, ro_handle, _ = map_op(b, a.domid, 8, HOLE_GFN, GNTMAP_host_map | GNTMAP_readonly)
    assert status == GNTST_okay and ro_handle == 129     # 128 was taken and freed by the refusal
    assert unmap_op(b, handles[0]) == GNTST_okay
    # The p2m entry is gone; the other handles now unmap a hole, which Xen reports as success.
    assert all(unmap_op(b, h) == GNTST_okay for h in handles[1:] + [ro_handle])
    assert flags_of(a, 8) == RW
    leak_free(a, b)

    c = rig.domu(max_grant_frames=4, max_maptrack_frames=0)
    grant(a, 9, c.domid, 3)
    assert map_op(c, a.domid, 9)[0] == GNTST_no_space
    assert flags_of(a, 9) == RW

    d = rig.domu(max_grant_frames=4, max_maptrack_frames=1)     # one page: 256 handles
    for ref in range(8, 8 + 257):
        grant(a, ref, d.domid, 3, RO)
    got = [map_op(d, a.domid, ref, HOLE_GFN + ref, GNTMAP_host_map | GNTMAP_readonly)
           for ref in range(8, 8 + 256)]
    assert [g[0] for g in got] == [GNTST_okay] * 256
    assert sorted(g[1] for g in got) == list(range(256))
    assert map_op(d, a.domid, 8 + 256, HOLE_GFN, GNTMAP_host_map | GNTMAP_readonly)[0] == \
        GNTST_no_space
    assert flags_of(a, 8 + 256) == RO


# -- unmap_grant_ref -------------------------------------------------------------------------------

def test_unmap_bad_and_stale_handles_change_nothing(rig):
    a, b, c = rig.domu(), rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    grant(a, 9, b.domid, 4)
    _, h1, _ = map_op(b, a.domid, 8, HOLE_GFN)
    _, h2, _ = map_op(b, a.domid, 9, HOLE_GFN + 1)
    assert unmap_op(b, 5000) == GNTST_bad_handle                 # beyond the maptrack
    assert unmap_op(b, 7) == GNTST_bad_handle                    # allocated page, free entry
    assert unmap_op(c, h1) == GNTST_bad_handle                   # handles are per domain
    assert unmap_op(b, h1) == GNTST_okay
    assert unmap_op(b, h1) == GNTST_bad_handle                   # double unmap
    assert flags_of(a, 9) == RW | GTF_reading | GTF_writing      # the other one untouched
    assert phys(b, HOLE_GFN + 1) is not None and flags_of(a, 8) == RW
    # host_addr 0 unmaps nothing but succeeds (Xen); the handle stays valid.
    assert unmap_op(b, h2, 0) == GNTST_okay
    assert flags_of(a, 9) == RW | GTF_reading | GTF_writing and table(b).maptrack[h2] is not None
    # A wrong address that holds RAM (or anything not this page) fails and changes nothing.
    assert unmap_op(b, h2, RAM_GFN + 2) == GNTST_general_error
    assert flags_of(a, 9) == RW | GTF_reading | GTF_writing and table(b).maptrack[h2] is not None
    # The address of another grant's mapping is not this mapping either.
    _, h3, _ = map_op(b, a.domid, 8, HOLE_GFN + 2)
    assert unmap_op(b, h3, HOLE_GFN + 1) == GNTST_general_error
    assert phys(b, HOLE_GFN + 1) is not None and flags_of(a, 8) & GTF_reading
    assert unmap_op(b, h2, HOLE_GFN + 1) == GNTST_okay
    assert unmap_op(b, h3, HOLE_GFN + 2) == GNTST_okay
    leak_free(a, b, c)
    # Freed handles are reused after fresh ones (FIFO), as Xen's free list does.
    assert map_op(b, a.domid, 8)[1] == 3


def test_unmap_at_a_hole_succeeds_and_leaves_the_mapping_where_it_was(rig):
    """Xen's p2m removal of an empty slot succeeds: the handle is released and the pin dropped,
    but the page stays mapped at its real address (the guest's bug, faithfully kept)."""
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    _, h, _ = map_op(b, a.domid, 8, HOLE_GFN)
    assert unmap_op(b, h, HOLE_GFN + 9) == GNTST_okay
    assert flags_of(a, 8) == RW and table(a).active == {} and table(b).mappings() == []
    assert phys(b, HOLE_GFN) is not None


def test_unmap_and_replace(rig):
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    _, h, _ = map_op(b, a.domid, 8, HOLE_GFN)
    rc, out = gop(b, GNTTABOP_unmap_and_replace,
                  UNMAP_AND_REPLACE.pack(HOLE_GFN << 12, (HOLE_GFN + 1) << 12, h, 0x55))
    assert rc == 0 and UNMAP_AND_REPLACE.unpack(out)[3] == GNTST_general_error  # ARM: no new_addr
    assert flags_of(a, 8) & GTF_reading
    rc, out = gop(b, GNTTABOP_unmap_and_replace, UNMAP_AND_REPLACE.pack(HOLE_GFN << 12, 0, h, 0x55))
    assert UNMAP_AND_REPLACE.unpack(out)[3] == GNTST_okay
    leak_free(a, b)


def test_batches_write_status_per_element_and_fault_midway(rig):
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    ops = (MAP_GRANT_REF.pack(HOLE_GFN << 12, GNTMAP_host_map, 8, a.domid, 0, 0, 0)
           + MAP_GRANT_REF.pack(HOLE_GFN << 12, GNTMAP_host_map, 9, a.domid, 0, 0, 0)
           + MAP_GRANT_REF.pack((HOLE_GFN + 1) << 12, GNTMAP_host_map | GNTMAP_readonly, 8,
                                a.domid, 0, 0, 0))
    rc, out = gop(b, GNTTABOP_map_grant_ref, ops, count=3)
    res = [MAP_GRANT_REF.unpack_from(out, 32 * i) for i in range(3)]
    assert rc == 0 and [r[4] for r in res] == [GNTST_okay, GNTST_general_error, GNTST_okay]
    # The refused element's handle went back to the tail of the free list; its field is as sent.
    assert [r[5] for r in res] == [0, 0, 2]
    # The array runs off the end of RAM: the first element is done, then -EFAULT.
    last = RAM + PAGES * 4096 - 32
    unmaps = UNMAP_GRANT_REF.pack(HOLE_GFN << 12, 0, 0, 0x55)
    rc, out = gop(b, GNTTABOP_unmap_grant_ref, unmaps, count=2, addr=last - 24 + 32)
    assert rc == -errno.EFAULT and UNMAP_GRANT_REF.unpack(out)[3] == GNTST_okay
    assert flags_of(a, 8) == RW | GTF_reading
    assert gop(b, GNTTABOP_map_grant_ref, ops, count=0)[0] == 0
    assert gop(b, GNTTABOP_map_grant_ref, ops, count=0x80000000)[0] == -errno.EINVAL
    assert gop(b, GNTTABOP_map_grant_ref | 1 << 12, ops)[0] == -errno.EINVAL   # opaque bits


# -- copy ------------------------------------------------------------------------------------------

def test_copy_between_grants_and_local_frames(rig):
    a, b = rig.domu(), rig.domu()
    fill(a, 3, b"source bytes")
    grant(a, 8, b.domid, 3, RO)
    grant(a, 9, b.domid, 4)
    # a's grant -> b's own frame 5, offset 100.
    assert copy_op(b, (8, a.domid, 2), (RAM_GFN + 5, DOMID_SELF, 100), 10,
                   GNTCOPY_source_gref) == GNTST_okay
    assert bytes(b.ram[5 * 4096 + 100:5 * 4096 + 110]) == b"urce bytes"
    # b's frame -> a's writable grant.
    fill(b, 6, b"reply")
    assert copy_op(b, (RAM_GFN + 6, DOMID_SELF, 0), (9, a.domid, 4000), 5,
                   GNTCOPY_dest_gref) == GNTST_okay
    assert bytes(a.ram[4 * 4096 + 4000:4 * 4096 + 4005]) == b"reply"
    # grant -> grant, both a's.
    assert copy_op(b, (8, a.domid, 0), (9, a.domid, 0), 6,
                   GNTCOPY_source_gref | GNTCOPY_dest_gref) == GNTST_okay
    assert bytes(a.ram[4 * 4096:4 * 4096 + 6]) == b"source"
    assert (flags_of(a, 8), flags_of(a, 9)) == (RO, RW)      # the copies hold nothing after
    leak_free(a, b)


def test_copy_status_matrix(rig):
    a, b, c = rig.domu(), rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3, RO)
    grant(a, 9, b.domid, 4)
    grant(a, 10, c.domid, 4)
    grant(a, 11, b.domid, 3, RW | GTF_sub_page)
    local = (RAM_GFN + 5, DOMID_SELF, 0)
    S, D = GNTCOPY_source_gref, GNTCOPY_dest_gref
    cases = [
        ((8, a.domid, 0), local, 0, S, GNTST_okay),                  # len 0: nothing checked
        ((8, 0x7000, 0), (0, 0x7001, 0), 0, 0, GNTST_okay),
        ((8, a.domid, 0), local, 16, S, GNTST_okay),
        ((11, a.domid, 0), local, 16, S, GNTST_okay),                # sub_page ok for copy
        ((RAM_GFN + 5, a.domid, 0), local, 16, 0, GNTST_permission_denied),  # frame of another
        ((RAM_GFN + 5, b.domid, 0), local, 16, 0, GNTST_permission_denied),  # own id, not SELF
        (local, (RAM_GFN, a.domid, 0), 16, 0, GNTST_permission_denied),
        ((8, 0x7000, 0), local, 16, S, GNTST_bad_domain),
        (local, (9, 0x7000, 0), 16, D, GNTST_bad_domain),
        ((600, a.domid, 0), local, 16, S, GNTST_bad_gntref),
        (local, (8, a.domid, 0), 16, D, GNTST_general_error),        # write to a r/o grant
        ((10, a.domid, 0), local, 16, S, GNTST_general_error),       # granted to c
        ((RAM_GFN + PAGES, DOMID_SELF, 0), local, 16, 0, GNTST_bad_page),
        (local, (0x90000, DOMID_SELF, 0), 16, 0, GNTST_bad_page),
        ((8, a.domid, 4090), local, 16, S, GNTST_bad_copy_arg),      # crosses the page
        (local, (9, a.domid, 4095), 2, D, GNTST_bad_copy_arg),
        ((8, a.domid, 0), (9, a.domid, 0), 4097, S | D, GNTST_bad_copy_arg),
    ]
    for src, dst, length, flags, expect in cases:
        assert copy_op(b, src, dst, length, flags) == expect, (src, dst, length, flags)
        assert (flags_of(a, 8), flags_of(a, 9), flags_of(a, 10)) == (RO, RW, RW)
    leak_free(a, b, c)


def test_copy_alongside_a_mapping(rig):
    a, b, c = rig.domu(), rig.domu(), rig.domu()
    fill(a, 3, b"shared")
    grant(a, 8, b.domid, 3)
    _, h, _ = map_op(b, a.domid, 8, HOLE_GFN, GNTMAP_host_map | GNTMAP_readonly)
    assert copy_op(b, (RAM_GFN + 7, DOMID_SELF, 0), (8, a.domid, 0), 2,
                   GNTCOPY_dest_gref) == GNTST_okay                      # b's own pin: fine
    assert flags_of(a, 8) == RW | GTF_reading                            # writing dropped again
    assert phys(b, HOLE_GFN, 6) == b"\0\0ared"
    gt.seed_entry(a, 8, c.domid, RAM_GFN + 3, RW | GTF_reading)          # re-aimed while pinned
    assert copy_op(c, (8, a.domid, 0), (RAM_GFN + 7, DOMID_SELF, 0), 2,
                   GNTCOPY_source_gref) == GNTST_general_error           # pinned by b
    assert unmap_op(b, h) == GNTST_okay
    leak_free(a, b, c)


def test_copy_batch(rig):
    a, b = rig.domu(), rig.domu()
    fill(a, 3, b"0123456789")
    grant(a, 8, b.domid, 3)
    ops = b"".join(COPY.pack(8, a.domid, i, RAM_GFN + 9, DOMID_SELF, i * 2, 1,
                             GNTCOPY_source_gref, 0x55) for i in range(5))
    ops += COPY.pack(8, a.domid, 4095, RAM_GFN + 9, DOMID_SELF, 0, 2, GNTCOPY_source_gref, 0x55)
    rc, out = gop(b, GNTTABOP_copy, ops, count=6)
    assert rc == 0
    assert [COPY.unpack_from(out, 40 * i)[8] for i in range(6)] == [0] * 5 + [GNTST_bad_copy_arg]
    assert bytes(b.ram[9 * 4096:9 * 4096 + 9]) == b"0\x001\x002\x003\x004"


# -- versions, status frames, swap, cache flush, the rest ------------------------------------------

def test_set_and_get_version(rig):
    a, b = rig.domu(), rig.domu()
    for asked, rc in ((1, 0), (2, -errno.ENOSYS), (0, -errno.EINVAL), (3, -errno.EINVAL)):
        got, out = gop(a, GNTTABOP_set_version, SET_VERSION.pack(asked))
        assert (got, SET_VERSION.unpack(out)) == (rc, (1,))
    assert table(a).version == 1
    rc, out = gop(a, GNTTABOP_get_version, GET_VERSION.pack(DOMID_SELF, 0x77, 9))
    assert (rc, GET_VERSION.unpack(out)) == (0, (DOMID_SELF, 0x77, 1))
    rc, out = gop(a, GNTTABOP_get_version, GET_VERSION.pack(b.domid, 0, 9))
    assert (rc, GET_VERSION.unpack(out)[2]) == (-errno.EPERM, 9)
    assert gop(a, GNTTABOP_get_version, GET_VERSION.pack(0x7000, 0, 9))[0] == -errno.ESRCH
    assert gt.get_version(rig.dom0, a.domid) == (0, 1)


def test_get_status_frames_swap_and_unsupported_ops(rig):
    a, b = rig.domu(), rig.domu()
    _, out = gop(a, GNTTABOP_get_status_frames, GET_STATUS_FRAMES.pack(0, DOMID_SELF, 0x55, LIST))
    assert GET_STATUS_FRAMES.unpack(out)[2] == GNTST_okay
    _, out = gop(a, GNTTABOP_get_status_frames, GET_STATUS_FRAMES.pack(1, DOMID_SELF, 0, LIST))
    assert GET_STATUS_FRAMES.unpack(out)[2] == GNTST_general_error       # v1: none exist
    _, out = gop(a, GNTTABOP_get_status_frames, GET_STATUS_FRAMES.pack(0, b.domid, 0, LIST))
    assert GET_STATUS_FRAMES.unpack(out)[2] == GNTST_permission_denied
    assert gop(a, GNTTABOP_get_status_frames, GET_STATUS_FRAMES.pack(0, 0, 0, 0), 2)[0] == \
        -errno.EINVAL
    grant(a, 8, b.domid, 3)
    grant(a, 9, b.domid, 4, RO)
    swaps = (SWAP_GRANT_REF.pack(8, 9, 0x55) + SWAP_GRANT_REF.pack(8, 8, 0x55)
             + SWAP_GRANT_REF.pack(8, 512, 0x55))
    rc, out = gop(a, GNTTABOP_swap_grant_ref, swaps, count=3)
    assert [SWAP_GRANT_REF.unpack_from(out, 12 * i)[2] for i in range(3)] == \
        [GNTST_okay, GNTST_okay, GNTST_bad_gntref]
    assert table(a).entry(8) == (RO, b.domid, RAM_GFN + 4)
    _, h, _ = map_op(b, a.domid, 9)
    _, out = gop(a, GNTTABOP_swap_grant_ref, SWAP_GRANT_REF.pack(8, 9, 0x55))
    assert SWAP_GRANT_REF.unpack(out)[2] == GNTST_eagain
    assert unmap_op(b, h) == GNTST_okay
    rc, out = gop(a, GNTTABOP_dump_table, struct.pack("<Hh", DOMID_SELF, 0))
    assert rc == 0 and struct.unpack("<Hh", out)[1] == GNTST_okay
    assert any(f"grant table for d{a.domid}" in line for line in a.hv.dmesg)
    assert any("flags 0x0005" in line for line in a.hv.dmesg)          # ref 8: readonly grant
    rc, out = gop(b, GNTTABOP_dump_table, struct.pack("<Hh", a.domid, 0))
    assert rc == 0 and struct.unpack("<Hh", out)[1] == GNTST_permission_denied
    rc, out = gop(a, GNTTABOP_dump_table, struct.pack("<Hh", 0x1234, 0))
    assert struct.unpack("<Hh", out)[1] == GNTST_bad_domain
    assert gop(a, GNTTABOP_transfer, bytes(24))[0] == -errno.EOPNOTSUPP
    assert gop(a, 99, bytes(8))[0] == -errno.ENOSYS


def test_cache_flush(rig):
    a, b, c = rig.domu(), rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    _, h, bus = map_op(b, a.domid, 8)

    def flush(d: Domain, addr: int, off: int = 0, length: int = 64,
              op: int = GNTTAB_CACHE_CLEAN, cmd: int = GNTTABOP_cache_flush) -> int:
        return gop(d, cmd, CACHE_FLUSH.pack(addr, off, length, op))[0]

    assert flush(b, bus) == 0 and flush(a, bus) == 0          # mapper with a pin; the owner
    assert flush(c, bus) == -errno.EINVAL                      # no grant of that page
    assert flush(b, bus, op=GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_INVAL) == 0
    assert flush(b, bus, op=GNTTAB_CACHE_SOURCE_GREF) == -errno.EINVAL
    assert flush(b, bus, op=4) == -errno.EINVAL
    assert flush(b, bus, off=4000, length=200) == -errno.EINVAL
    assert flush(b, bus, off=4096, length=0) == -errno.EINVAL
    assert flush(c, bus, length=0) == 0 and flush(c, bus, op=0) == 0    # nothing to do
    assert flush(c, bus, length=0, cmd=GNTTABOP_cache_flush | 1 << 12) == -gt.EILSEQ
    assert flush(b, 0x1000) == -errno.EINVAL                   # no such machine page
    assert unmap_op(b, h) == GNTST_okay
    assert flush(b, bus) == -errno.EINVAL                      # no longer mapped


# -- destruction -----------------------------------------------------------------------------------

def test_release_of_a_mapper_drops_its_pins(rig):
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    grant(a, 9, b.domid, 4, RO)
    map_op(b, a.domid, 8, HOLE_GFN)
    map_op(b, a.domid, 9, HOLE_GFN + 1, GNTMAP_host_map | GNTMAP_readonly)
    rig.destroy(b)
    assert (flags_of(a, 8), flags_of(a, 9)) == (RW, RO)
    assert table(a).active == {} and table(b).maptrack == []
    assert gt.end_foreign_access(a, 8) and flags_of(a, 8) == 0      # a can revoke now


def test_a_destroyed_granters_pages_stay_mapped_until_unmapped(rig):
    a, b = rig.domu(), rig.domu()
    fill(a, 3, b"still here")
    grant(a, 8, b.domid, 3)
    grant(a, 9, b.domid, 4)
    _, h, _ = map_op(b, a.domid, 8, HOLE_GFN)
    a_id = a.domid
    rig.destroy(a)
    assert a.ram is None
    assert phys(b, HOLE_GFN, 10) == b"still here"                   # a zombie's page, as in Xen
    assert b.vcpus[0].arch.write_phys(HOLE_GFN << 12, b"STILL")
    assert map_op(b, a_id, 9, HOLE_GFN + 1)[0] == GNTST_bad_domain
    assert unmap_op(b, h) == GNTST_okay and table(b).mappings() == []
    assert phys(b, HOLE_GFN) is None


def test_a_released_table_takes_no_new_pins(rig):
    """Between gnttab_release and the domain leaving the table of domains, maps and copies of
    its grants are refused, not pinned."""
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    gt.gnttab_release(a)
    assert map_op(b, a.domid, 8)[0] == GNTST_bad_domain
    assert copy_op(b, (8, a.domid, 0), (RAM_GFN + 5, DOMID_SELF, 0), 4,
                   GNTCOPY_source_gref) == GNTST_bad_domain
    assert flags_of(a, 8) == RW
    leak_free(a, b)


# -- a guest that revokes while the hypervisor maps ------------------------------------------------

@pytest.mark.parametrize("changes, expect", [(4, GNTST_okay), (5, GNTST_general_error)])
def test_an_entry_changing_under_the_compare_and_swap(rig, monkeypatch, changes, expect):
    """The guest changes its entry between our read and our swap: retried, at most 5 times."""
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    real = gt.GrantTable.cmpxchg_combo
    left = [changes]

    def racing(self, ref, old, new):
        if left[0]:
            left[0] -= 1
            real(self, ref, old, old ^ GTF_PWT)      # the guest flips a bit first
        return real(self, ref, old, new)

    monkeypatch.setattr(gt.GrantTable, "cmpxchg_combo", racing)
    status, handle, _ = map_op(b, a.domid, 8)
    assert status == expect
    in_use = GTF_reading | GTF_writing if expect == GNTST_okay else 0
    assert flags_of(a, 8) == RW | (GTF_PWT if changes % 2 else 0) | in_use
    if expect == GNTST_okay:
        assert unmap_op(b, handle) == GNTST_okay
    leak_free(a, b)


def test_revocation_races_with_mapping(rig):
    """The guest revokes with a compare-and-swap while another thread maps and unmaps: a
    successful map always sees the entry still granted (the revoke cannot succeed while pinned),
    and once revoked nothing maps."""
    a, b = rig.domu(), rig.domu()
    grant(a, 8, b.domid, 3)
    stop = threading.Event()
    errors: list[str] = []
    maps = [0]

    def mapper() -> None:
        while not stop.is_set():
            r = gt.map_grant_ref(b, HOLE_GFN << 12, GNTMAP_host_map, 8, a.domid)
            if r.status == GNTST_okay:
                maps[0] += 1
                if flags_of(a, 8) & ~GTF_readonly != RW | GTF_reading | GTF_writing:
                    errors.append(f"mapped, but the entry reads {flags_of(a, 8):#x}")
                if gt.unmap_grant_ref(b, HOLE_GFN << 12, 0, r.handle) != GNTST_okay:
                    errors.append("unmap failed")
            elif r.status != GNTST_general_error:
                errors.append(f"status {r.status}")

    def flipper() -> None:                     # the guest toggles GTF_readonly meanwhile
        t = table(a)
        while not stop.is_set():
            combo = t.load_combo(8)
            if combo & 0xFFFF == 0:
                return
            t.cmpxchg_combo(8, combo, combo ^ GTF_readonly)

    threads = [threading.Thread(target=mapper), threading.Thread(target=flipper)]
    for th in threads:
        th.start()
    try:
        while maps[0] < 50 and not errors:
            threading.Event().wait(0.001)
        revoked = False
        for _ in range(100000):
            if gt.end_foreign_access(a, 8):
                revoked = True
                break
        assert revoked
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert errors == []
    assert flags_of(a, 8) == 0 and table(a).active == {}
    assert gt.map_grant_ref(b, HOLE_GFN << 12, GNTMAP_host_map, 8, a.domid).status == \
        GNTST_general_error
    leak_free(a, b)


# -- dom0's gntdev over privcmd --------------------------------------------------------------------



def test_dom0_maps_a_grant_into_userspace(rig):
    a = rig.domu()
    fill(a, 3, b"for dom0")
    grant(a, 8, 0, 3)
    grant(a, 9, 0, 4, RO)
    lib = Xengnttab(LocalTransport(Privcmd(rig.hv)))
    page, h = lib.map_grant_ref(a.domid, 8)
    assert isinstance(page, mmap.mmap) and len(page) == 4096
    assert page[:8] == b"for dom0"
    page[:4] = b"FROM"                                               # zero copy, both ways
    assert bytes(a.ram[3 * 4096:3 * 4096 + 8]) == b"FROMdom0"
    assert flags_of(a, 8) == RW | GTF_reading | GTF_writing
    d0 = table(rig.dom0)
    assert len(d0.mappings()) == 1                                    # dom0 holds a handle
    ro, h2 = lib.map_grant_ref(a.domid, 9, writable=False)
    assert flags_of(a, 9) == RO | GTF_reading
    with pytest.raises(TypeError):
        ro[:1] = b"x"                                                 # a read-only mapping
    with pytest.raises(GnttabError) as e:
        lib.map_grant_ref(a.domid, 9)                                 # r/o grant, writable map
    assert e.value.errno == errno.EINVAL and e.value.status == GNTST_general_error
    with pytest.raises(GnttabError) as e:
        lib.map_grant_ref(0x7000, 9)
    assert e.value.status == GNTST_bad_domain
    lib.unmap(h)
    assert flags_of(a, 8) == RW
    with pytest.raises(GnttabError) as e:
        lib.unmap(h)                                                  # gone: ENOENT
    assert e.value.errno == errno.ENOENT
    lib.close()                                                       # unmaps what is left
    assert flags_of(a, 9) == RO
    leak_free(a, rig.dom0)


def test_a_read_only_gntdev_descriptor_cannot_be_mapped_writable(rig):
    a = rig.domu()
    grant(a, 9, 0, 4, RO)
    with gntdev.GntdevDevice(rig.hv) as dev:
        m = dev.map_grant_ref(a.domid, 9, writable=False)
        with pytest.raises(PermissionError):
            mmap.mmap(m.fd, 4096, offset=m.offset)                    # PROT_WRITE refused
        with mmap.mmap(m.fd, 4096, prot=mmap.PROT_READ, offset=m.offset) as view:
            assert view[:4] == bytes(a.ram[4 * 4096:4 * 4096 + 4])
        reply, fd = gntdev.handle(rig.hv, {"op": "gntdev", "cmd": "unmap", "index": 12345}, {})
        assert reply["ret"] == -errno.ENOENT and fd is None
        assert gntdev.handle(rig.hv, {"cmd": "bogus"}, {})[0]["ret"] == -errno.ENOSYS
        assert gntdev.handle(rig.hv, {"cmd": "map", "domid": "x"}, {})[0]["ret"] == -errno.EINVAL
    assert flags_of(a, 9) == RO and table(rig.dom0).mappings() == []


# -- property: the flag protocol and who can write what --------------------------------------------

class GrantProtocol(RuleBasedStateMachine):
    """A granter A and mappers B and C (plus domid 99, which does not exist) under random grants,
    revocations, maps and unmaps. The model predicts every status; the invariants say a page is
    writable only by the domain its grant named (writable, at pin time) and that the in-use flags
    mirror the pins; tearing everything down restores every entry to what the guest wrote."""

    mapped = Bundle("mapped")
    REFS = range(8, 11)

    def __init__(self) -> None:
        super().__init__()
        self.rig = Rig()
        self.a = self.rig.domu()
        self.mappers = [self.rig.domu(), self.rig.domu()]
        self.written: dict[int, int] = {}          # ref -> flags the guest wrote
        self.named: dict[int, tuple[int, bool, int]] = {}   # pinned ref -> (domid, ro, page)
        self.pins: dict[int, list[bool]] = {}      # ref -> readonly flag of each live mapping
        self.gfn = HOLE_GFN

    def teardown(self) -> None:
        try:
            self.unmap_everything()
        finally:
            self.rig.close()

    @rule(ref=st.sampled_from(REFS), to=st.sampled_from([0, 1, 99]), ro=st.booleans(),
          page=st.integers(0, 3),
          kind=st.sampled_from([GTF_permit_access] * 3 + [GTF_accept_transfer]))
    def guest_grants(self, ref, to, ro, page, kind) -> None:
        if self.pins.get(ref):
            return                                 # a proper guest leaves in-use entries alone
        domid = self.mappers[to].domid if to < 2 else to
        flags = kind | (GTF_readonly if ro else 0)
        grant(self.a, ref, domid, page, flags)
        self.written[ref] = flags

    @rule(ref=st.sampled_from(REFS))
    def guest_revokes(self, ref) -> None:
        ok = gt.end_foreign_access(self.a, ref)
        assert ok == (not self.pins.get(ref))
        if ok:
            self.written[ref] = 0

    @initialize(tos=st.lists(st.integers(0, 1), min_size=3, max_size=3),
                ros=st.lists(st.booleans(), min_size=3, max_size=3))
    def guest_grants_all(self, tos, ros) -> None:
        for ref, to, ro in zip(self.REFS, tos, ros):
            self.guest_grants(ref, to, ro, ref % 4, GTF_permit_access)

    @rule(target=mapped, who=st.sampled_from(["named", "named", 0, 1]),
          ref=st.sampled_from(REFS), ro=st.booleans())
    def map(self, who, ref, ro):
        if who == "named":            # mostly ask as the domain the entry names
            domid = table(self.a).entry(ref)[1]
            who = next((i for i, m in enumerate(self.mappers) if m.domid == domid), 0)
        d = self.mappers[who]
        self.gfn += 1
        status, handle, _ = map_op(d, self.a.domid, ref, self.gfn,
                                   GNTMAP_host_map | (GNTMAP_readonly if ro else 0))
        flags, domid, frame = table(self.a).entry(ref)
        pins = self.pins.get(ref)
        if pins:
            pdomid = self.named[ref][0]
            write_pinned = any(not r for r in pins)
            if pdomid != d.domid or (not ro and not write_pinned and flags & GTF_readonly):
                expect = GNTST_general_error
            else:
                expect = GNTST_okay
        elif flags & 3 != GTF_permit_access or domid != d.domid:
            expect = GNTST_general_error
        elif not ro and flags & GTF_readonly:
            expect = GNTST_general_error
        else:
            expect = GNTST_okay
        assert status == expect
        if status != GNTST_okay:
            return None
        if not self.pins.get(ref):
            self.named[ref] = (d.domid, bool(flags & GTF_readonly), frame - RAM_GFN)
        self.pins.setdefault(ref, []).append(ro)
        return (who, handle, ref, ro, self.gfn)

    @rule(m=consumes(mapped))
    def unmap(self, m) -> None:
        if m is None:
            return
        who, handle, ref, ro, gfn = m
        assert unmap_op(self.mappers[who], handle, gfn) == GNTST_okay
        self.pins[ref].remove(ro)
        assert unmap_op(self.mappers[who], handle, gfn) == GNTST_bad_handle

    @invariant()
    def writable_only_by_the_named_domain(self) -> None:
        for d in self.mappers:
            for gfn, page in table(d).grant_p2m.items():
                m = d.p2m.lookup(gfn)
                assert m is not None and m.buffer is page.mm
                if not m.writable:
                    continue
                owners = [ref for ref, (domid, ro, pg) in self.named.items()
                          if self.pins.get(ref) and domid == d.domid and not ro
                          and pg == page.frame.index]
                assert owners, f"d{d.domid} can write page {page.frame.index} nobody granted it"

    @invariant()
    def flags_mirror_pins(self) -> None:
        for ref in self.REFS:
            flags = flags_of(self.a, ref)
            pins = self.pins.get(ref, [])
            assert bool(flags & GTF_reading) == bool(pins)
            assert bool(flags & GTF_writing) == any(not ro for ro in pins)
            assert flags & ~(GTF_reading | GTF_writing) == self.written.get(ref, 0)

    def unmap_everything(self) -> None:
        for d in self.mappers:
            for handle, mt in table(d).mappings():
                gfns = [g for g, p in table(d).grant_p2m.items() if p is mt.page]
                assert unmap_op(d, handle, gfns[0] if gfns else 0) == GNTST_okay
        self.pins.clear()
        for ref in self.REFS:
            assert flags_of(self.a, ref) == self.written.get(ref, 0)
        leak_free(self.a, *self.mappers)


TestGrantProtocol = GrantProtocol.TestCase
TestGrantProtocol.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
