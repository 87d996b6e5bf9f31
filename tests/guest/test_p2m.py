"""Frames mapped over a domain's RAM (the mechanism behind grant mappings): zero copy, read-only
enforced by a data abort, and the RAM page back after unmap."""
from __future__ import annotations

import mmap
import time

from tests.guest.a32 import DATA, boot, load32, reg, shutdown, wait_shutdown

FRAME = 0x80100000


def test_mapped_frame_is_shared_memory_and_read_only_writes_abort(hv):
    shared = mmap.mmap(-1, 0x1000)
    shared[0:4] = b"PEER"
    # r5 = [FRAME]; spin until [FRAME+4] becomes nonzero (written by the host), then write r5 to FRAME.
    prog = [*load32(2, FRAME), 0xE5925000,                 # ldr r5, [r2]
            0xE5923004, 0xE3530000, 0x0AFFFFFC,            # 1: ldr r3, [r2, #4]; cmp r3, #0; beq 1b
            0xE5825000,                                     # str r5, [r2]  (read-only: aborts)
            *shutdown(DATA + 0x14)]

    def map_frame(d):
        d.p2m.map(FRAME >> 12, shared, 0, writable=False)

    d = boot(hv, prog, before_start=map_frame)
    time.sleep(0.2)
    shared[4:8] = b"\x01\0\0\0"                          # the guest sees a host write at once
    wait_shutdown(d)
    assert reg(d, 5) == int.from_bytes(b"PEER", "little")
    assert reg(d, 8) == 0x10 and d.vcpus[0].arch.cp15("DFAR") == FRAME   # data abort on the write
    assert d.vcpus[0].arch.cp15("DFSR") & (1 << 11)                      # WnR: it was a write
    d.p2m.unmap(FRAME >> 12)
    assert d.vcpus[0].arch.read_phys(FRAME, 4) == b"\0\0\0\0"            # the RAM page is back
