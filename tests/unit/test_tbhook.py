"""The vCPU's exit control on bare Unicorn: a timer deadline stops running guest code at a block
start once the host clock has passed it, and never before; the idle poll ends at its deadline or
at once when kicked."""
from __future__ import annotations

import ctypes
import threading
import time

from unicorn import UC_ARCH_ARM, UC_MODE_ARM, Uc
from unicorn.arm_const import UC_ARM_REG_PC, UC_ARM_REG_R0

from xenpy.arch.arm.tbhook import ExitControl, Reason, idle_poll

BASE = 0x10000
# loop: add r0, r0, #1 ; b loop
LOOP = bytes.fromhex("010080e2") + bytes.fromhex("fdffffea")
TIMEOUT_US = 30_000_000     # Unicorn's own limit, should the exit control never stop it


def cpu() -> tuple[Uc, ExitControl]:
    uc = Uc(UC_ARCH_ARM, UC_MODE_ARM)
    uc.mem_map(BASE, 0x1000)
    uc.mem_write(BASE, LOOP)
    return uc, ExitControl(uc._uch)


def test_a_passed_deadline_stops_the_guest_at_a_block_start():
    uc, ctl = cpu()
    start = time.monotonic_ns()
    ctl.set_deadline(start + 20_000_000)
    uc.emu_start(BASE, 0xFFFFFFFF, timeout=TIMEOUT_US)
    stopped = time.monotonic_ns()
    why, pc = ctl.take(), uc.reg_read(UC_ARM_REG_PC)
    assert why is Reason.TIMER, f"stopped for {why!r} after {(stopped - start) / 1e6:.1f} ms"
    assert stopped >= start + 20_000_000, f"stopped {(stopped - start) / 1e6:.1f} ms in"
    assert pc in (BASE, BASE + 4), f"stopped at {pc:#x}, not an instruction of the loop"
    assert uc.reg_read(UC_ARM_REG_R0) > 0
    ctl.close()


def test_no_deadline_and_a_deadline_past_any_host_time_never_stop_it():
    uc, ctl = cpu()
    for ns in (None, 1 << 70):          # a CVAL near 2^64 gives a deadline beyond 64 bits
        ctl.set_deadline(ns)
        timer = threading.Timer(0.05, ctl.request_stop)
        timer.start()
        uc.emu_start(BASE, 0xFFFFFFFF, timeout=TIMEOUT_US)
        timer.join()
        assert ctl.take() is Reason.REQUESTED
    ctl.close()


def test_idle_poll_ends_at_its_deadline_or_when_kicked():
    kick = ctypes.c_uint32(0)
    t0 = time.monotonic_ns()
    assert idle_poll(t0 + 2_000_000, kick) is False
    assert time.monotonic_ns() >= t0 + 2_000_000
    threading.Timer(0.02, lambda: setattr(kick, "value", 1)).start()
    t0 = time.monotonic_ns()
    assert idle_poll(t0 + 60_000_000_000, kick) is True
    assert time.monotonic_ns() - t0 < 30_000_000_000, "the kick did not end the poll"
