"""Each vCPU reads its own MPIDR (Xen's VMPIDR: MPIDR_SMP | affinity), the value the device tree's
cpu@N reg and PSCI CPU_ON name it by. Linux builds its CPU topology from it."""
from __future__ import annotations

from tests.guest.a32 import B_SELF, CODE, DATA, boot, load32, reg, shutdown, wait_shutdown
from tests.guest.test_traps import psci

MRC_MPIDR_R9 = 0xEE109FB0      # mrc p15, 0, r9, c0, c0, 5
MRC_MPIDR_R0 = 0xEE100FB0      # mrc p15, 0, r0, c0, c0, 5
PROLOGUE = 3                   # boot() puts three words (VBAR set-up) before the program


def test_each_vcpu_reads_its_own_mpidr(hv):
    slot = DATA + 0x20

    def program(entry: int) -> list[int]:
        main = [MRC_MPIDR_R9, *psci(0x84000003, 1, entry, 0)]         # CPU_ON(mpidr 1, entry)
        wait = [*load32(1, slot), 0xE5912000, 0xE3520000]             # ldr r2, [r1]; cmp r2, #0
        here = len(main) + len(wait)
        wait.append(0x0A000000 | ((len(main) - (here + 2)) & 0xFFFFFF))    # beq back to ldr
        return main + wait + [0xE1A0A002, *shutdown(DATA + 0x14)]     # r10 = r2; poweroff

    secondary = [MRC_MPIDR_R0, *load32(1, slot), 0xE5810000, B_SELF]   # str r0, [r1]
    entry = CODE + 4 * (PROLOGUE + len(program(0)))
    d = boot(hv, program(entry) + secondary, vcpus=2)
    wait_shutdown(d)
    assert d.shutdown_code == 0
    assert reg(d, 9) == 0x80000000                    # vCPU 0
    assert reg(d, 10) == 0x80000001                   # vCPU 1, as it read it itself
