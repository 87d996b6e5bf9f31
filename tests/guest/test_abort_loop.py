"""A guest stuck in its own aborts is the guest's problem: the log says once where it is stuck
(vCPU, vector, PC, fault address, status), and the board and the other domains carry on."""
from __future__ import annotations

import struct
import time

from tests.guest.a32 import (B_SELF, CODE, DATA, HVC, MCR_VBAR_R0, boot, load32, mov,
                             shutdown)
from xenpy.common.hypervisor import Hypervisor, HypervisorConfig

MSG = b"still alive\n"


def good_guest(hv):
    return boot(hv, [mov(0, 0), mov(1, len(MSG)), *load32(2, DATA + 0x100), mov(12, 18), HVC,
                     *shutdown(DATA + 0x14)], data={DATA + 0x100: MSG})


def wait(pred, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


def one_pcpu() -> tuple[Hypervisor, list[str]]:
    lines: list[str] = []
    hv = Hypervisor(HypervisorConfig(nr_pcpus=1), sink=lines.append)
    hv.start()
    return hv, lines


def test_an_abort_vector_that_cannot_be_fetched_is_logged_once_and_parks_the_vcpu():
    hv, lines = one_pcpu()          # one pCPU: the stuck guest and the good one share it
    try:
        # VBAR into nothing, then a load from nothing: the data abort's vector cannot be
        # fetched, so every abort entry aborts again. The load is word 8 (after boot()'s
        # three-word prologue).
        bad = boot(hv, [*load32(0, 0x10000000), MCR_VBAR_R0, *load32(2, 0x20000000),
                        0xE5921000, B_SELF])
        good = good_guest(hv)
        assert wait(lambda: good.is_shutdown), "the other domain did not get the pCPU"
        assert bytes(good.console.data) == MSG
        for _ in range(20):          # interrupts wake the stuck vCPU; it parks again
            hv.vgic_kick(bad, 0)
            time.sleep(0.01)
        stuck = [ln for ln in lines if "stuck in an abort loop" in ln]
        assert stuck == [
            "(XEN) d1v0: stuck in an abort loop: its DABT vector at 0x10000010 cannot be "
            "fetched (prefetch abort, IFSR 0x2, vectors at 0x10000000); it started with a data "
            f"abort at PC {CODE + 8 * 4:#010x}, address 0x20000000, DFSR 0x2; the vCPU waits "
            "for an interrupt (logged once)"]
        assert not bad.is_shutdown and bad.state_letters()[1] == "b"   # blocked, not spinning
        again = good_guest(hv)       # the board still creates and runs domains
        assert wait(lambda: again.is_shutdown) and again.shutdown_code == 0
    finally:
        hv.shutdown()


def test_an_abort_handler_that_faults_again_is_logged_once():
    hv, lines = one_pcpu()
    try:
        vt = CODE + 0x400
        table = [B_SELF] * 4 + [0xEA000000 | ((0x40 - 0x10 - 8) // 4)] + [B_SELF] * 3
        handler = [*load32(3, 0x30000000), 0xE5933000, B_SELF]        # ldr r3, [r3]
        bad = boot(hv, [*load32(0, vt), MCR_VBAR_R0, *load32(2, 0x20000000), 0xE5921000,
                        B_SELF],
                   data={vt: struct.pack("<8I", *table),
                         vt + 0x40: struct.pack(f"<{len(handler)}I", *handler)})
        good = good_guest(hv)
        assert wait(lambda: good.is_shutdown)
        assert wait(lambda: any("the same data abort" in ln for ln in lines))
        time.sleep(0.2)
        same = [ln for ln in lines if "the same data abort" in ln]
        assert same == [
            f"(XEN) d1v0: the same data abort 1000 times in a row: PC {vt + 0x48:#010x}, "
            "address 0x30000000, DFSR 0x2: a fault in its abort handler, or a handler that "
            "returns without curing it (logged once)"]
        assert not bad.is_shutdown
    finally:
        hv.shutdown()
