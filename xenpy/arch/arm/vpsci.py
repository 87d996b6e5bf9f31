"""Virtual PSCI (Xen's arch/arm/vpsci.c): HVC #0 with the function id in r0.

Both the PSCI 0.1 ids Xen 4.4 guests use (from the /psci node: cpu_off = 1, cpu_on = 2) and the
PSCI 0.2+ SMCCC function ids are served.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.arch.arm.vcpu import CpuContext, Exit
from xenpy.public.arch_arm import SCTLR_GUEST_INIT
from xenpy.public.sched import SHUTDOWN_poweroff, SHUTDOWN_reboot

if TYPE_CHECKING:
    from xenpy.common.domain import Vcpu

PSCI_0_1_CPU_OFF, PSCI_0_1_CPU_ON = 1, 2
PSCI_VERSION = 0x84000000
PSCI_CPU_SUSPEND = 0x84000001
PSCI_CPU_OFF = 0x84000002
PSCI_CPU_ON = 0x84000003
PSCI_AFFINITY_INFO = 0x84000004
PSCI_MIGRATE_INFO_TYPE = 0x84000006
PSCI_SYSTEM_OFF = 0x84000008
PSCI_SYSTEM_RESET = 0x84000009
PSCI_FEATURES = 0x8400000A
ARM_SMCCC_VERSION = 0x80000000

PSCI_SUCCESS, PSCI_NOT_SUPPORTED, PSCI_INVALID_PARAMETERS = 0, -1, -2
PSCI_ALREADY_ON = -4
AFFINITY_ON, AFFINITY_OFF = 0, 1

SUPPORTED = {PSCI_VERSION, PSCI_CPU_SUSPEND, PSCI_CPU_OFF, PSCI_CPU_ON, PSCI_AFFINITY_INFO,
             PSCI_MIGRATE_INFO_TYPE, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_FEATURES,
             ARM_SMCCC_VERSION}


def _target(v: "Vcpu", mpidr: int) -> "Vcpu | None":
    # Xen's virtual MPIDR: Aff0 holds vcpu_id % 16, Aff1 vcpu_id / 16.
    vcpu_id = (mpidr & 0xF) | ((mpidr >> 8) & 0xFF) << 4
    if mpidr & ~0xFF0F & 0xFFFFFF:   # bits Xen never sets
        return None
    vcpus = v.domain.vcpus
    return vcpus[vcpu_id] if vcpu_id < len(vcpus) else None


def cpu_on(v: "Vcpu", mpidr: int, entry: int, context_id: int) -> int:
    t = _target(v, mpidr)
    if t is None or t.arch is None:
        return PSCI_INVALID_PARAMETERS
    if t.online:
        return PSCI_ALREADY_ON
    assert t.domain.layout is not None
    cpsr = t.domain.layout.psr_guest32_init | (1 << 5 if entry & 1 else 0)
    t.arch.set_context(CpuContext(pc=entry & ~1, r0=context_id, cpsr=cpsr, sctlr=SCTLR_GUEST_INIT))
    t.blocked = False
    t.online = True
    v.domain.hv.scheduler.kick()
    return PSCI_SUCCESS


def do_psci(v: "Vcpu") -> None:
    a = v.arch
    assert a is not None
    fid, x1, x2, x3 = (a.reg(n) for n in range(4))
    d = v.domain
    ret: int
    if fid == PSCI_VERSION:
        ret = 0x00010001
    elif fid in (PSCI_CPU_ON, PSCI_0_1_CPU_ON):
        ret = cpu_on(v, x1, x2, x3)
    elif fid in (PSCI_CPU_OFF, PSCI_0_1_CPU_OFF):
        v.online = False
        a.stop(Exit.DOWN)
        return          # does not return to the caller
    elif fid == PSCI_CPU_SUSPEND:
        a.stop(Exit.WFI)     # a standby state: wake on the next interrupt
        ret = PSCI_SUCCESS
    elif fid == PSCI_AFFINITY_INFO:
        t = _target(v, x1)
        ret = PSCI_INVALID_PARAMETERS if t is None or x2 != 0 else (
            AFFINITY_ON if t.online else AFFINITY_OFF)
    elif fid == PSCI_MIGRATE_INFO_TYPE:
        ret = 2          # trusted OS not present
    elif fid == PSCI_SYSTEM_OFF:
        d.shutdown(SHUTDOWN_poweroff)
        return
    elif fid == PSCI_SYSTEM_RESET:
        d.shutdown(SHUTDOWN_reboot)
        return
    elif fid == PSCI_FEATURES:
        ret = PSCI_SUCCESS if x1 in SUPPORTED else PSCI_NOT_SUPPORTED
    elif fid == ARM_SMCCC_VERSION:
        ret = 0x10002
    else:
        ret = PSCI_NOT_SUPPORTED
    a.set_reg(0, ret)
