"""Grant tables from real guest code: a domU maps another domain's grant with the hypercall,
uses the page zero-copy, takes a data abort writing a read-only grant, unmaps; a domU writes a
grant entry through its own mapped grant frame and dom0's userspace maps it through gntdev."""
from __future__ import annotations

import struct

from tests.guest.a32 import BASE, DATA, HVC, boot, load32, mov, reg, shutdown, wait_shutdown
from toolstack.xc import LocalTransport
from toolstack.xengnttab import Xengnttab
from xenpy.board.privcmd import Privcmd
from xenpy.common import grant_table as gt
from xenpy.public.grant_table import (GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access,
                                      GTF_readonly, GTF_reading, GTF_writing, MAP_GRANT_REF,
                                      UNMAP_GRANT_REF)
from xenpy.public.memory import XENMAPSPACE_grant_table
from xenpy.public.xen import DOMID_SELF

MAP = DATA + 0x200          # struct gnttab_map_grant_ref
UNMAP = DATA + 0x240        # struct gnttab_unmap_grant_ref
XATP = DATA + 0x280         # struct xen_add_to_physmap
HOST = 0x90000000           # where the mapper puts the granted page: a free guest-physical frame
GNT = 0xB0000000            # the 4.4 grant-table window
PAGE = BASE + 0x100000      # the granter's shared page
NR_grant_table_op, NR_memory_op = 20, 12


def mov_reg(rd: int, rm: int) -> int:
    return 0xE1A00000 | rd << 12 | rm


def ldr(rt: int, rn: int, imm: int = 0) -> int:
    return 0xE5900000 | rn << 16 | rt << 12 | imm


def str_(rt: int, rn: int, imm: int = 0) -> int:
    return 0xE5800000 | rn << 16 | rt << 12 | imm


def gnttab_op(cmd: int, uop: int) -> list[int]:
    return [*load32(1, uop), mov(0, cmd), mov(2, 1), mov(12, NR_grant_table_op), HVC]


def ensure_gnttab(d) -> None:
    if getattr(d, "grant_table", None) is None:     # until the hypervisor does it at creation
        assert gt.gnttab_init(d) == 0


def granter(hv, to: int, flags: int, content: bytes):
    """A second, never started domain that grants its page 0x80100 as ref 8 to domain `to`."""
    a = hv.domains[hv.domain_create(0, 1, None, "4.4")]
    assert hv.domain_populate(a, 16 << 8) == 0
    ensure_gnttab(a)
    a.ram_write(PAGE, content)
    gt.seed_entry(a, 8, to, PAGE >> 12, flags)
    return a


def test_guest_maps_a_read_only_grant_and_a_write_aborts(hv):
    prog = [*gnttab_op(0, MAP), mov_reg(9, 0),                  # map; r9 = rc
            *load32(2, HOST), ldr(5, 2),                         # r5 = the granted word
            *load32(3, MAP), ldr(6, 3, 16),                      # r6 = dom | status << 16
            str_(5, 2),                                          # write: stage-2 fault
            *shutdown(DATA + 0x14)]
    doms = {}

    def setup(d):
        ensure_gnttab(d)
        doms["a"] = a = granter(hv, d.domid, GTF_permit_access | GTF_readonly, b"PEER")
        return {MAP: MAP_GRANT_REF.pack(HOST, GNTMAP_host_map | GNTMAP_readonly, 8, a.domid,
                                        0, 0, 0)}

    b = boot(hv, prog, before_start=setup)
    wait_shutdown(b)
    a = doms["a"]
    assert reg(b, 9) == 0 and reg(b, 6) >> 16 == 0                # hypercall ok, GNTST_okay
    assert reg(b, 5) == int.from_bytes(b"PEER", "little")          # zero copy
    assert reg(b, 8) == 0x10 and b.vcpus[0].arch.cp15("DFAR") == HOST   # data abort
    assert bytes(a.ram[0x100000:0x100004]) == b"PEER"              # the write did not land
    assert a.grant_table.entry(8)[0] == GTF_permit_access | GTF_readonly | GTF_reading
    gt.gnttab_release(b)                                           # b dies holding the mapping
    assert a.grant_table.entry(8)[0] == GTF_permit_access | GTF_readonly
    assert a.grant_table.active == {}


def test_guest_maps_writes_and_unmaps(hv):
    prog = [*gnttab_op(0, MAP), mov_reg(9, 0),
            *load32(2, HOST), ldr(5, 2),
            *load32(4, 0x474E4F50), str_(4, 2),                  # "PONG" into the page
            *load32(3, MAP), ldr(6, 3, 20), *load32(7, UNMAP), str_(6, 7, 16),   # the handle
            *gnttab_op(1, UNMAP), mov_reg(10, 0),                # unmap; r10 = rc
            ldr(11, 7, 20),                                      # r11 = status (low half)
            *shutdown(DATA + 0x14)]
    doms = {}

    def setup(d):
        ensure_gnttab(d)
        doms["a"] = a = granter(hv, d.domid, GTF_permit_access, b"PING")
        return {MAP: MAP_GRANT_REF.pack(HOST, GNTMAP_host_map, 8, a.domid, 0, 0, 0),
                UNMAP: UNMAP_GRANT_REF.pack(HOST, 0, 0xFFFF, 0x55)}

    b = boot(hv, prog, before_start=setup)
    wait_shutdown(b)
    a = doms["a"]
    assert reg(b, 8) != 0x10, "unexpected data abort"
    assert (reg(b, 9), reg(b, 10), reg(b, 11) & 0xFFFF) == (0, 0, 0)
    assert reg(b, 5) == int.from_bytes(b"PING", "little")
    assert bytes(a.ram[0x100000:0x100004]) == b"PONG"
    assert a.grant_table.entry(8)[0] == GTF_permit_access           # flags back after unmap
    assert b.p2m.lookup(HOST >> 12) is None and b.grant_table.mappings() == []




def test_guest_writes_an_entry_in_its_mapped_frame_and_dom0_maps_it(hv):
    ensure_gnttab(hv.domains[0])
    prog = [*load32(1, XATP), mov(0, 7), mov(12, NR_memory_op), HVC, mov_reg(9, 0),  # frame 0
            *load32(2, PAGE), *load32(4, int.from_bytes(b"HELO", "little")), str_(4, 2),
            *load32(2, GNT + 8 * 8),                              # entry 8
            *load32(3, PAGE >> 12), str_(3, 2, 4),               # frame first...
            mov(4, GTF_permit_access), str_(4, 2),               # ...then flags | domid 0 << 16
            *shutdown(DATA + 0x14)]
    a = boot(hv, prog, before_start=lambda d: ensure_gnttab(d) or {
        XATP: struct.pack("<HHIQQ", DOMID_SELF, 0, XENMAPSPACE_grant_table, 0, GNT >> 12)})
    wait_shutdown(a)
    assert reg(a, 9) == 0 and a.grant_table.frame_gfn[0] == GNT >> 12
    assert a.grant_table.entry(8) == (GTF_permit_access, 0, PAGE >> 12)
    lib = Xengnttab(LocalTransport(Privcmd(hv)))
    page, handle = lib.map_grant_ref(a.domid, 8, writable=False)
    assert page[:4] == b"HELO"
    # The guest sees Xen's in-use flag in its own frame.
    assert a.vcpus[0].arch.read_phys(GNT + 64, 2) == (GTF_permit_access | GTF_reading).to_bytes(2,
                                                                                          "little")
    lib.unmap(handle)
    assert a.grant_table.entry(8)[0] == GTF_permit_access
    lib.close()
    assert not a.grant_table.entry(8)[0] & (GTF_reading | GTF_writing)
