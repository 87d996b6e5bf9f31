"""The vCPU's exit control on bare Unicorn: a timer deadline stops running guest code at a block
start once the host clock has passed it, and never before; an interrupt line is taken right after
the instruction that unmasks, with the architecture's IRQ entry; the idle poll ends at its
deadline or at once when kicked."""
from __future__ import annotations

import ctypes
import threading
import time

from unicorn import UC_ARCH_ARM, UC_MODE_ARM, Uc
from unicorn.arm_const import (UC_ARM_REG_CPSR, UC_ARM_REG_PC, UC_ARM_REG_R0, UC_ARM_REG_R1,
                               UC_ARM_REG_R2, UC_ARM_REG_R3, UC_CPU_ARM_CORTEX_A7)

from xenpy.arch.arm.regs import Cp15Access
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


# cpsie i ; loop: add r0, r0, #1 ; b loop
UNMASK_LOOP = bytes.fromhex("800008f1") + LOOP
VBAR = 0x18000
# At the IRQ vector: mrs r1, cpsr ; mov r2, lr ; mrs r3, spsr ; b .
AT_VECTOR = bytes.fromhex("00100fe1" "0e20a0e1" "00304fe1" "feffffea")
SVC_I_F = 0x1D3            # SVC mode, IRQs and FIQs masked (A clear)


def unmasking_cpu() -> tuple[Uc, ExitControl]:
    uc = Uc(UC_ARCH_ARM, UC_MODE_ARM)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_A7)
    uc.mem_map(BASE, 0x10000)
    uc.mem_write(BASE, UNMASK_LOOP)
    uc.mem_write(VBAR + 0x18, AT_VECTOR)
    Cp15Access(uc._uch).write("VBAR", VBAR)
    uc.reg_write(UC_ARM_REG_CPSR, SVC_I_F)
    return uc, ExitControl(uc._uch)


def run_for(uc: Uc, ctl: ExitControl, seconds: float) -> Reason:
    timer = threading.Timer(seconds, ctl.request_stop)
    timer.start()
    uc.emu_start(BASE, 0xFFFFFFFF, timeout=TIMEOUT_US)
    timer.cancel()
    timer.join()
    return ctl.take()


def test_the_hook_enters_an_irq_before_the_instruction_after_the_unmask():
    uc, ctl = unmasking_cpu()
    ctl.entered_irq_vector(VBAR + 0x18)
    ctl.set_irq(True)
    assert run_for(uc, ctl, 0.1) is Reason.REQUESTED
    cpsr, lr, spsr = (uc.reg_read(r) for r in (UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3))
    assert ctl.irqs_entered == 1
    assert uc.reg_read(UC_ARM_REG_PC) == VBAR + 0x18 + 12, "the vector's code did not run"
    assert uc.reg_read(UC_ARM_REG_R0) == 0, "the add after cpsie ran before the interrupt"
    assert cpsr == 0x1D2, f"CPSR in the handler {cpsr:#x}: IRQ mode with A, I (and F) set"
    assert spsr == SVC_I_F & ~0x80, f"SPSR_irq {spsr:#x}: the CPSR after cpsie i"
    assert lr == BASE + 4 + 4, f"LR_irq {lr:#x}: the next instruction + 4"
    ctl.close()


def test_at_a_vector_the_hypervisor_has_not_entered_the_hook_stops_instead():
    uc, ctl = unmasking_cpu()
    ctl.set_irq(True)                  # no entered_irq_vector: the hypervisor must enter it
    assert run_for(uc, ctl, 10.0) is Reason.IRQ
    assert ctl.irqs_entered == 0
    assert uc.reg_read(UC_ARM_REG_PC) == BASE + 4, "not stopped on the instruction after cpsie"
    assert uc.reg_read(UC_ARM_REG_CPSR) & 0x1F == 0x13 and uc.reg_read(UC_ARM_REG_R0) == 0
    ctl.close()


def test_a_line_that_drops_before_the_unmask_takes_nothing():
    uc, ctl = unmasking_cpu()
    ctl.entered_irq_vector(VBAR + 0x18)
    line = ctypes.c_uint32(1)
    ctl.wire_line(line)
    line.value = 0                     # the guest acknowledged it (the vGIC lowered its line)
    assert run_for(uc, ctl, 0.05) is Reason.REQUESTED
    assert ctl.irqs_entered == 0 and uc.reg_read(UC_ARM_REG_R0) > 0
    ctl.close()
