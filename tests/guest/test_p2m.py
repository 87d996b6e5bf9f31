"""Frames mapped over a domain's RAM (the mechanism behind grant mappings): zero copy, read-only
enforced by a data abort, and the RAM page back after unmap."""
from __future__ import annotations

import mmap
import threading
import time

from tests.guest.a32 import CODE, DATA, boot, load32, reg, shutdown, wait_shutdown
from xenpy.arch.arm.vcpu import CpuContext

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


def test_concurrent_updates_from_two_threads_while_vcpus_run(hv):
    d = boot(hv, [0xEAFFFFFE], vcpus=2)              # vCPU 0 spins
    d.vcpus[1].arch.set_context(CpuContext(pc=CODE + 3 * 4))
    d.vcpus[1].online = True                          # vCPU 1 spins too
    hv.scheduler.kick()
    pages = [mmap.mmap(-1, 0x1000) for _ in range(2)]
    for n, p in enumerate(pages):
        p[0:1] = bytes([0x41 + n])
    t0 = time.monotonic()

    def churn(n: int) -> None:
        for _ in range(20):
            d.p2m.map((FRAME >> 12) + n, pages[n], 0, writable=True)
            d.p2m.unmap((FRAME >> 12) + n)
        d.p2m.map((FRAME >> 12) + n, pages[n], 0, writable=True)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 < 5
    hv.domain_pause(d)
    for v in d.vcpus:
        assert not v.p2m_pending
        assert bytes(v.arch.uc.mem_read(FRAME, 1)) == b"A"
        assert bytes(v.arch.uc.mem_read(FRAME + 0x1000, 1)) == b"B"
