"""Interrupts a guest really takes: the virtual timer's PPI 27 through the vGIC into the guest's
IRQ vector, while the vCPU is blocked in WFI."""
from __future__ import annotations

import time

from tests.guest.a32 import boot, load32, reg, wait_shutdown

GICD, GICC = 0x2C001000, 0x2C002000          # Xen 4.4 guest layout
MRRC_CNTVCT_R0_R1 = 0xEC510F1E                # mrrc p15, 1, r0, r1, c14
MCRR_CNTV_CVAL_R0_R1 = 0xEC410F3E             # mcrr p15, 3, r0, r1, c14
MCR_CNTV_CTL_R3 = 0xEE0E3F33                  # mcr p15, 0, r3, c14, c3, 1
CPSIE_I = 0xF1080080
WFI = 0xE320F003
B_WFI = 0xEAFFFFFD                            # b back to the wfi


def str_r1(rn_is_r0_offset: int) -> int:
    return 0xE5801000 | rn_is_r0_offset       # str r1, [r0, #off]


def timer_program(delay_ticks: int) -> list[int]:
    return [
        *load32(0, GICD), *load32(1, 1), str_r1(0x000),               # GICD_CTLR = 1
        *load32(1, 1 << 27), str_r1(0x100),                           # ISENABLER0: PPI 27
        *load32(0, GICC), *load32(1, 1), str_r1(0x000),               # GICC_CTLR = 1
        *load32(1, 0xFF), str_r1(0x004),                              # GICC_PMR = 0xff
        MRRC_CNTVCT_R0_R1, *load32(2, delay_ticks),
        0xE0900002, 0xE2A11000,                                       # adds r0, r2; adc r1, #0
        MCRR_CNTV_CVAL_R0_R1, *load32(3, 1), MCR_CNTV_CTL_R3,         # CVAL = now + delay; enable
        CPSIE_I, WFI, B_WFI,
    ]


def test_virtual_timer_interrupt_wakes_wfi_and_enters_irq_vector(hv):
    delay = 62_500 * 50          # 50 ms at 62.5 MHz
    t0 = time.monotonic()
    d = boot(hv, timer_program(delay))
    wait_shutdown(d, timeout=5)
    elapsed = time.monotonic() - t0
    assert reg(d, 8) == 0x18                      # the IRQ slot of the vector table
    assert d.vcpus[0].arch.cpsr & 0x1F == 0x12    # IRQ mode
    assert elapsed >= 0.045
    assert d.vgic.highest_pending(0) == 27 or d.vgic.is_pending(0, 27)


def test_masked_timer_interrupt_is_not_taken(hv):
    prog = timer_program(62_500 * 10)
    prog[prog.index(CPSIE_I)] = 0xE1A00000        # keep CPSR.I set: nop instead of cpsie i
    d = boot(hv, prog)
    time.sleep(0.3)
    assert not d.is_shutdown                       # WFI woke (interrupt pending) but no IRQ taken
    assert d.vgic.is_pending(0, 27)


def test_unimplemented_vgic_register_is_raz_and_logged_once_or_aborts_in_strict_mode():
    from xenpy.common.hypervisor import Hypervisor, HypervisorConfig
    from tests.guest.a32 import shutdown, DATA
    prog = [*load32(0, GICD), 0xE5905FE8, 0xE5906FE8,       # ldr r5/r6, [r0, #0xfe8] (ICPIDR2)
            *shutdown(DATA + 0x14)]
    for strict in (False, True):
        hv = Hypervisor(HypervisorConfig(vgic_strict=strict), sink=None)
        hv.start()
        try:
            d = boot(hv, prog)
            wait_shutdown(d)
            if strict:
                assert reg(d, 8) == 0x10 and d.vcpus[0].arch.cp15("DFAR") == GICD + 0xFE8
            else:
                assert d.shutdown_code == 0 and reg(d, 5) == 0 and reg(d, 6) == 0
                assert sum("vgic: unhandled read of GICD+0xfe8" in l for l in hv.dmesg) == 1
        finally:
            hv.shutdown()
