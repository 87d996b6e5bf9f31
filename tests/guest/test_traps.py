"""Traps and exception entry on a real vCPU, with small hand-assembled A32 programs.

Each program is a list of instruction words placed at RAM + 0x8000; a vector table at RAM + 0x1000
records which exception was taken (r8 = vector offset) and shuts the domain down with the crash code,
so a test reads the outcome from the registers and the domain's state.
"""
from __future__ import annotations

import struct
import time

from tests.guest.a32 import (CODE, DATA, HVC, B_SELF, MCR_VBAR_R0, boot, load32, mov, reg, shutdown,
                             wait_shutdown)


def test_console_io_reaches_domain_log_and_hypervisor_log(hv):
    msg = b"hello, hypervisor\n"
    d = boot(hv, [mov(0, 0), mov(1, len(msg)), *load32(2, DATA + 0x100), mov(12, 18), HVC,
                  *shutdown(DATA + 0x14)], data={DATA + 0x100: msg})
    wait_shutdown(d)
    assert d.shutdown_code == 0
    assert bytes(d.console.data) == msg
    assert f"(d{d.domid}) hello, hypervisor" in hv.dmesg


def test_unknown_hypercall_is_enosys_and_logged_once(hv):
    prog = []
    for _ in range(3):
        prog += [*load32(12, 0x7777), HVC]
    d = boot(hv, prog + [0xE1A09000, *shutdown(DATA + 0x14)])   # mov r9, r0
    wait_shutdown(d)
    assert reg(d, 9) == (-38) & 0xFFFFFFFF
    assert sum("unimplemented hypercall 30583" in line for line in hv.dmesg) == 1


def test_undefined_instruction_enters_the_guest_undef_vector(hv):
    d = boot(hv, [0xE7F000F0, B_SELF])          # udf
    wait_shutdown(d)
    assert d.shutdown_code == 3 and reg(d, 8) == 0x4
    cpsr = d.vcpus[0].arch.cpsr
    assert cpsr & 0x1F == 0x1B and cpsr & 0x80          # UND mode, IRQs masked
    udf_addr = CODE + 3 * 4
    assert reg(d, 14) == udf_addr + 4                    # LR_und = faulting instruction + 4


def test_svc_enters_the_guest_svc_vector(hv):
    d = boot(hv, [0xEF000000, B_SELF])          # svc #0
    wait_shutdown(d)
    assert reg(d, 8) == 0x8


def test_access_outside_guest_memory_is_a_data_abort_with_dfar(hv):
    d = boot(hv, [*load32(2, 0x10000000), 0xE5921000, B_SELF])   # ldr r1, [r2]
    wait_shutdown(d)
    a = d.vcpus[0].arch
    assert reg(d, 8) == 0x10 and a.cp15("DFAR") == 0x10000000
    assert a.cpsr & 0x1F == 0x17                          # ABT mode
    assert reg(d, 14) == CODE + 5 * 4 + 8                 # LR_abt = faulting instruction + 8


def test_hvc_with_a_wrong_immediate_is_undefined(hv):
    d = boot(hv, [0xE1400071, B_SELF])          # hvc #0x1 (neither 0xEA1 nor 0)
    wait_shutdown(d)
    assert reg(d, 8) == 0x4


def test_bad_pointer_in_hypercall_is_efault(hv):
    d = boot(hv, [mov(0, 0), mov(1, 16), *load32(2, 0x10000000), mov(12, 18), HVC,
                  0xE1A09000, *shutdown(DATA + 0x14)])
    wait_shutdown(d)
    assert reg(d, 9) == (-14) & 0xFFFFFFFF and d.shutdown_code == 0


def test_wfi_blocks_the_vcpu_and_pause_unpause(hv):
    d = boot(hv, [0xE320F003, B_SELF])          # wfi
    deadline = time.monotonic() + 3
    while not d.vcpus[0].blocked and time.monotonic() < deadline:
        time.sleep(0.01)
    assert d.vcpus[0].blocked and d.state_letters() == "-b----"
    hv.domain_pause(d)
    assert d.state_letters() == "--p---"


def test_guest_mmu_translation_fault_reports_dfar_and_dfsr(hv):
    table = 0x80010000                                   # 16 KiB aligned L1 table in RAM
    prog = [*load32(0, table), 0xEE020F10,               # TTBR0 = table
            *load32(0, 0x55555555), 0xEE030F10,          # DACR: all client
            0xEE110F10, 0xE3800001, 0xEE010F10,          # SCTLR.M = 1
            0xF57FF06F,                                  # isb
            *load32(2, 0x10000000), 0xE5921000, B_SELF]  # ldr r1, [r2]: no mapping
    d = boot(hv, prog, data={table + 0x800 * 4: (0x80000000 | 0xC02).to_bytes(4, "little")})
    wait_shutdown(d)
    a = d.vcpus[0].arch
    assert reg(d, 8) == 0x10
    assert a.cp15("DFAR") == 0x10000000
    assert a.cp15("DFSR") & 0x40F == 0x005               # section translation fault


def test_runstate_area_is_published_when_the_vcpu_is_scheduled_in(hv):
    area, handle = DATA + 0x200, DATA + 0x300
    prog = [mov(0, 5), mov(1, 0), *load32(2, handle), mov(12, 24), HVC,   # register runstate area
            0xE1A09000,                                                   # mov r9, r0
            mov(0, 0), mov(1, 0), mov(12, 29), HVC,                       # SCHEDOP_yield
            *shutdown(DATA + 0x14)]
    d = boot(hv, prog, data={handle: area.to_bytes(8, "little")})
    wait_shutdown(d)
    assert reg(d, 9) == 0
    raw = d.vcpus[0].arch.read_phys(area, 48)
    state, _pad, entry, *times = struct.unpack("<iI5Q", raw)
    assert state == 0 and entry > 0                     # RUNSTATE_running, stamped
    assert times[0] > 0 or times[1] > 0                  # time accounted before the yield


def test_vcpu_op_other_than_the_two_arm_ones_is_einval(hv):
    d = boot(hv, [mov(0, 1), mov(1, 0), mov(2, 0), mov(12, 24), HVC, 0xE1A09000,   # VCPUOP_up
                  *shutdown(DATA + 0x14)])
    wait_shutdown(d)
    assert reg(d, 9) == (-22) & 0xFFFFFFFF


def test_wfe_yield_and_sev_are_hints_not_undefined(hv):
    d = boot(hv, [0xE320F002, 0xE320F001, 0xE320F004, mov(9, 7), *shutdown(DATA + 0x14)])
    wait_shutdown(d)
    assert d.shutdown_code == 0 and reg(d, 9) == 7


def test_undefined_instruction_right_after_wfe_is_still_undefined(hv):
    d = boot(hv, [0xE320F002, 0xE7F000F0, B_SELF])
    wait_shutdown(d)
    assert reg(d, 8) == 0x4


def psci(fid: int, *args: int) -> list[int]:
    """hvc #0 with the function id in r0 and arguments in r1.."""
    words = [*load32(0, fid)]
    for n, a in enumerate(args, start=1):
        words += load32(n, a)
    return words + [0xE1400070]                       # hvc #0


def test_psci_version_features_and_system_off(hv):
    d = boot(hv, [*psci(0x84000000), 0xE1A09000,                 # r9 = PSCI_VERSION
                  *psci(0x8400000A, 0x84000003), 0xE1A0A000,     # r10 = FEATURES(CPU_ON)
                  *psci(0x8400000A, 0x8400001F), 0xE1A0B000,     # r11 = FEATURES(unknown)
                  *psci(0x84000008), B_SELF])                     # SYSTEM_OFF
    wait_shutdown(d)
    assert d.shutdown_code == 0
    assert (reg(d, 9), reg(d, 10), reg(d, 11)) == (0x10001, 0, 0xFFFFFFFF)


def test_psci_system_reset_is_a_reboot_and_cpu_on_checks_its_target(hv):
    d = boot(hv, [*psci(0x84000003, 5, CODE, 0), 0xE1A09000,       # CPU_ON of a vCPU it lacks
                  *psci(0x84000003, 0, CODE, 0), 0xE1A0A000,       # CPU_ON of itself: already on
                  *psci(0x84000004, 1, 0), 0xE1A0B000,             # AFFINITY_INFO(vcpu1): off
                  *psci(0x84000009), B_SELF], vcpus=2)             # SYSTEM_RESET
    wait_shutdown(d)
    assert d.shutdown_code == 1
    assert reg(d, 9) == (-2) & 0xFFFFFFFF and reg(d, 10) == (-4) & 0xFFFFFFFF and reg(d, 11) == 1


def test_stage2_prefetch_abort_and_a_guest_stuck_in_its_vectors_are_logged_once(hv):
    # Jump to an unmapped address with the vectors unmapped too: the prefetch abort faults
    # again at the abort vector, forever. Each is one line in the log, naming vCPU, PC, address.
    d = boot(hv, [*load32(0, 0x90000000), MCR_VBAR_R0, *load32(1, 0x10000000), 0xE12FFF11])  # bx r1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("stuck" in line for line in hv.dmesg):
        time.sleep(0.01)
    time.sleep(0.1)                 # the guest keeps faulting meanwhile
    hv.domain_destroy(d)
    who = f"d{d.domid}v0"
    assert [l for l in hv.dmesg if "stage-2 prefetch abort" in l] == [
        f"(XEN) {who}: stage-2 prefetch abort: pc 0x10000000 fault address 0x10000000 "
        "(no mapping in the domain)"]
    stuck = [l for l in hv.dmesg if "stuck" in l]
    assert len(stuck) == 1 and stuck[0].startswith(f"(XEN) {who}: stuck in an abort loop: its "
                                                   "PABT vector at 0x9000000c cannot be fetched")


def test_vm_assist_as_arm_xen_answers_it(hv):
    # HYPERVISOR_vm_assist(cmd, type): only VMASST_TYPE_runstate_update_flag (5) exists on ARM.
    prog = []
    for n, (cmd, type_) in enumerate(((0, 5), (0, 2), (1, 5), (7, 5), (0, 64))):
        prog += [mov(0, cmd), mov(1, type_), mov(12, 21), HVC, *load32(3, DATA + 0x200 + 4 * n),
                 0xE5830000]                                  # str r0, [r3]
    d = boot(hv, prog + [mov(0, 0), mov(1, 5), mov(12, 21), HVC, *shutdown(DATA + 0x14)])
    wait_shutdown(d)
    got = struct.unpack("<5i", bytes(d.ram[0x9200:0x9214]))
    assert got == (0, -22, 0, -38, -22)    # enable, x86-only type, disable, bad cmd, out of range
    assert d.vm_assist == 1 << 5
