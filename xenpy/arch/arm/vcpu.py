"""An arm32 vCPU: one Unicorn instance running guest code until it traps.

The counterpart of Xen's arch/arm/domain.c (vCPU state) and the entry half of arch/arm/traps.c.
Nothing here hooks single instructions: guest code runs at Unicorn's full speed until it executes
HVC (Unicorn raises it as an invalid instruction at EL1), takes an exception of its own (Unicorn
hands those to us instead of entering them, so we perform the ARM exception entry), touches an
address outside its memory map, executes WFI, or is stopped at a block start by its exit control
(tbhook: a preemption, posted work, a timer deadline). An interrupt it can take is entered by the
exit control itself, without leaving emu_start, once the run loop has entered one at that vector.

Exactness: no thread calls uc_emu_stop() while guest code runs (Unicorn 2.1 would re-run the
instruction whose memory access was in flight). Other threads ask through the exit control; work
that must run on the vCPU's own thread (stage-2 updates, timer sampling) is posted to it and done
between two emu_starts, without going back to the scheduler.
"""
from __future__ import annotations

import collections
import ctypes
import enum
import mmap
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from unicorn import (UC_ARCH_ARM, UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UC_HOOK_MEM_PROT,
                     UC_HOOK_MEM_UNMAPPED, UC_MEM_FETCH_PROT, UC_MEM_FETCH_UNMAPPED,
                     UC_MEM_WRITE_PROT, UC_MEM_WRITE_UNMAPPED, UC_MODE_ARM, UC_PROT_ALL, Uc,
                     UcError)
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
from unicorn.arm_const import (UC_ARM_REG_CPSR, UC_ARM_REG_LR, UC_ARM_REG_PC,
                               UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3,
                               UC_ARM_REG_R4, UC_ARM_REG_R12, UC_ARM_REG_SP, UC_ARM_REG_SPSR,
                               UC_CPU_ARM_CORTEX_A7)

from xenpy.arch.arm import decode, guest_walk
from xenpy.arch.arm.regs import Cp15Access, RegBatch, RegReader, RegWriter
from xenpy.arch.arm.tbhook import ExitControl, Reason
from xenpy.public.arch_arm import XEN_HYPERCALL_TAG, hvc_a32

if TYPE_CHECKING:
    from xenpy.common.domain import Domain

# Unicorn's (QEMU's) ARM exception numbers, as passed to UC_HOOK_INTR.
EXCP_UDEF, EXCP_SWI, EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT, EXCP_BKPT = 1, 2, 3, 4, 7

# CPSR bits and modes.
PSR_T, PSR_F, PSR_I, PSR_A = 1 << 5, 1 << 6, 1 << 7, 1 << 8
PSR_J, PSR_IT_MASK = 1 << 24, 0x0600FC00
MODE_MASK, MODE_USR, MODE_IRQ, MODE_SVC, MODE_ABT, MODE_UND = 0x1F, 0x10, 0x12, 0x13, 0x17, 0x1B

SCTLR_M, SCTLR_V, SCTLR_EE, SCTLR_TE = 1 << 0, 1 << 13, 1 << 25, 1 << 30

# Fault status values Xen uses when it injects an abort for an access it refused (a stage-2 fault):
# a "debug event" status, in the short-descriptor or LPAE format the guest is using.
FSR_DEBUG_SHORT, FSR_DEBUG_LPAE = 0x2, (1 << 9) | 0x22

WFI_A32 = 0xE320F003
WFI_T16 = 0xBF30
# The hints QEMU ends a block with and reports (EXCP_YIELD) with PC past them: YIELD and WFE
# (A32 ones under any condition: Linux's read lock waits in `wfemi`).
_A32_YIELDS = (0x0320F001, 0x0320F002)
_T16_YIELDS = (0xBF10, 0xBF20)
_T32_YIELDS = (0xF3AF8001, 0xF3AF8002)
UNTIL = 0xFFFFFFFF  # never an instruction address: emu_start runs until something stops it
# What a trap costs in virtual time on a deterministic board, as code bytes (clock.BYTES_PER_NS
# a ns): about what a hypercall or an emulated device access costs on a Cortex-A7 under Xen.
TRAP_COST = 2000    # 500 ns

class Exit(enum.Enum):
    """Why run() returned to the scheduler."""
    PREEMPTED = "preempted"     # emu_stop from the scheduler, or a hypercall asked to reschedule
    WFI = "wfi"                 # the guest waits for an interrupt
    DOWN = "down"               # the vCPU went offline (PSCI CPU_OFF) or its domain stopped


class Vector(enum.IntEnum):
    UNDEF = 0x04
    SVC = 0x08
    PABT = 0x0C
    DABT = 0x10
    IRQ = 0x18


# mode, offset added to the preferred return address (ARM, Thumb), and whether CPSR.A is set.
_ENTRY = {
    Vector.UNDEF: (MODE_UND, (4, 2), False),
    Vector.SVC: (MODE_SVC, (0, 0), False),
    Vector.PABT: (MODE_ABT, (4, 4), True),
    Vector.DABT: (MODE_ABT, (8, 8), True),
    Vector.IRQ: (MODE_IRQ, (4, 4), True),
}


@dataclass
class CpuContext:
    """The part of vcpu_guest_context the toolstack sets for a new vCPU."""
    pc: int
    r0: int = 0
    r1: int = 0
    r2: int = 0
    cpsr: int = 0x400001D3
    sctlr: int = 0x00C50078



class ArmVcpu:
    """Guest CPU state and the trap entry. Scheduling state lives in common.domain.Vcpu."""

    def __init__(self, vcpu_id: int, ram: "mmap.mmap", ram_base: int, ram_size: int,
                 on_hypercall: Callable[[int, tuple[int, ...]], int | None],
                 on_psci: Callable[["ArmVcpu"], None],
                 log: Callable[[str], None]) -> None:
        self.vcpu_id = vcpu_id
        self.ram_base, self.ram_size = ram_base, ram_size
        self._on_hypercall, self._on_psci, self._log = on_hypercall, on_psci, log
        self.uc = uc = Uc(UC_ARCH_ARM, UC_MODE_ARM)
        uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_A7)
        self.ram = ram             # the domain's RAM: the same host memory Unicorn runs on
        uc.mem_map_ptr(ram_base, ram_size, UC_PROT_ALL, ram_pointer(ram))
        # Keep the callbacks referenced: Unicorn stores only ctypes pointers to them.
        self._hooks = [uc.hook_add(UC_HOOK_INSN_INVALID, self._hook_invalid),
                       uc.hook_add(UC_HOOK_INTR, self._hook_intr),
                       uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._hook_unmapped),
                       uc.hook_add(UC_HOOK_MEM_PROT, self._hook_unmapped)]
        h = uc._uch
        self._trap_regs = RegBatch(h, [UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3,
                                       UC_ARM_REG_R4, UC_ARM_REG_R12, UC_ARM_REG_PC,
                                       UC_ARM_REG_CPSR, "SCTLR"])
        self._mmu_regs = RegBatch(h, ["SCTLR", "TTBCR", "TTBR0", "TTBR1", "DACR"])
        self._write = RegWriter(h)
        self._cp15 = Cp15Access(h)
        self._read = RegReader(h)
        self._write2 = RegWriter(h, 2)
        self._write4 = RegWriter(h, 4)
        self._entry_regs = RegBatch(h, [UC_ARM_REG_CPSR, "SCTLR", "VBAR"])
        self.walks = guest_walk.WalkCache()     # the hypercall sites and buffers it uses
        self._pc_cpsr = RegBatch(h, [UC_ARM_REG_PC, UC_ARM_REG_CPSR])
        self._mmio_fault: tuple[int, bool] | None = None
        self._retranslate = False
        self._flush_tb = False
        self.exitctl = ExitControl(h, entry_cost=TRAP_COST)
        self._posted: collections.deque[Callable[[], None]] = collections.deque()
        self.irq_pending: Callable[[], bool] = lambda: False   # the vGIC's line (wire_irq)
        self.on_entry: Callable[[int], None] | None = None     # before emu_start (vcpreg scan)
        self.on_timer: Callable[[], None] = lambda: None       # a timer deadline passed
        self.wfi_wakes: Callable[[], bool] = lambda: False     # an interrupt is pending
        self.p2m_extra: dict = {}      # the domain's P2M.extra: frames mapped over or beside RAM
        self._preempt = False          # give the pCPU back at the next block start
        self._exit: Exit | None = None
        self._fault: tuple[int, bool, bool] | None = None   # (address, write, fetch)
        self.hypercalls = 0
        self.emu_count = 0     # a debugger's single step runs one instruction (0: no limit)

    # -- registers ---------------------------------------------------------------------------

    def reg(self, n: int) -> int:
        return self._read(UC_ARM_REG_R0 + n if n < 13 else
                          (UC_ARM_REG_SP, UC_ARM_REG_LR, UC_ARM_REG_PC)[n - 13])

    def set_reg(self, n: int, value: int) -> None:
        self.uc.reg_write(UC_ARM_REG_R0 + n if n < 13 else
                          (UC_ARM_REG_SP, UC_ARM_REG_LR, UC_ARM_REG_PC)[n - 13], value & 0xFFFFFFFF)

    @property
    def pc(self) -> int:
        return self._read(UC_ARM_REG_PC)

    @property
    def cpsr(self) -> int:
        return self._read(UC_ARM_REG_CPSR)

    def cp15(self, name: str) -> int:
        return self._cp15.read(name)

    def set_cp15(self, name: str, value: int) -> None:
        self._cp15.write(name, value)

    def stage1(self) -> guest_walk.Stage1Regs:
        return guest_walk.Stage1Regs(*self._mmu_regs.read())   # (SCTLR, TTBCR, TTBR0, TTBR1, DACR)

    def set_context(self, ctx: CpuContext) -> None:
        """Boot state as Xen's toolstack sets it: registers, CPSR, SCTLR (MMU off)."""
        self.uc.reg_write(UC_ARM_REG_CPSR, ctx.cpsr)
        self.set_cp15("SCTLR", ctx.sctlr)
        for n, v in enumerate((ctx.r0, ctx.r1, ctx.r2)):
            self.set_reg(n, v)
        self.uc.reg_write(UC_ARM_REG_PC, ctx.pc)

    # -- running ----------------------------------------------------------------------------

    def run(self) -> Exit:
        """Run guest code until it traps to the scheduler. Faults are reflected to the guest."""
        ctl = self.exitctl
        if self.emu_count:                       # a debugger's step: what it asked for runs
            self._preempt = False
            ctl.ctl.stop = 0
            # Blocks translated before Unicorn's counting hook existed would not count.
            self.uc.ctl_flush_tb()
        while True:
            while self._posted:
                self._posted.popleft()()
            if self._flush_tb:
                self._flush_tb = False
                self.uc.ctl_flush_tb()
            if self._exit is not None:
                why, self._exit, self._preempt = self._exit, None, False
                return why
            if self._preempt:
                self._preempt = False
                return Exit.PREEMPTED
            pc, cpsr = self._pc_cpsr.read()
            if self.irq_pending() and not cpsr & PSR_I:
                self.inject(Vector.IRQ, pc)      # taken before the next instruction runs
                pc, cpsr = self._pc_cpsr.read()
            pc |= 1 if cpsr & PSR_T else 0
            if self.on_entry is not None:
                self.on_entry(pc)
            try:
                self.uc.emu_start(pc, UNTIL, count=self.emu_count)
            except UcError:
                ctl.take()
                if self._fault is None:
                    raise
                addr, write, fetch = self._fault
                self._fault = None
                # Xen injects an abort with a debug-event status for an access to an address the
                # domain has no mapping for (a stage-2 fault).
                self.inject_abort(addr, prefetch=fetch, fsr=self._stage2_fsr(), write=write)
                continue
            why = ctl.take()
            if self._mmio_fault is not None:
                # A refused MMIO access (strict vGIC): Unicorn stopped with PC on the refused
                # instruction; if it completed, the abort is taken as if raised by it.
                addr, write = self._mmio_fault
                self._mmio_fault = None
                pc_now, cpsr_now = self._pc_cpsr.read()
                at = pc_now if self._access_at_pc(pc_now, cpsr_now) == (addr, write) else pc_now - 4
                self.inject_abort(addr, prefetch=False, write=write, at=at,
                                  fsr=self._stage2_fsr())
                continue
            if why is Reason.TIMER:
                self.on_timer()                  # raises the timer's PPI, sets the next deadline
            elif why is Reason.BUDGET:
                return Exit.PREEMPTED            # the deterministic quantum is over
            if self.emu_count:                   # a step ends after its instruction
                return Exit.WFI if self._after_wfi() else Exit.PREEMPTED
            if why is not Reason.NONE or self._retranslate:
                self._retranslate = False
                continue                         # posted work, a preemption or an interrupt
            if self._after_wfi():
                if self.wfi_wakes():
                    continue     # WFI completes at once on a pending interrupt, masked or not
                return Exit.WFI

    def stop(self, why: Exit = Exit.PREEMPTED) -> None:
        """Make run() return at the next block start; safe from any thread and from hooks."""
        if why is Exit.PREEMPTED:
            self._preempt = True
        else:
            self._exit = why
        self.exitctl.request_stop()

    def post(self, work: Callable[[], None]) -> None:
        """Run `work` on this vCPU's thread before it executes another guest instruction (now,
        if it is not running; any thread)."""
        self._posted.append(work)
        self.exitctl.request_stop()

    def wire_irq(self, line: ctypes.c_uint32) -> None:
        """The vGIC's IRQ line for this vCPU: the run loop and, while guest code runs, the block
        hook read it (the hook enters the exception at the first block start where CPSR.I is
        clear)."""
        self.exitctl.wire_line(line)
        self.irq_pending = lambda: bool(line.value)

    def _stage2_fsr(self) -> int:
        return FSR_DEBUG_LPAE if self.cp15("TTBCR") >> 31 else FSR_DEBUG_SHORT

    def _after_wfi(self) -> bool:
        """emu_start returning by itself means the CPU halted: the instruction before PC is WFI.
        It is read through the guest's tables (PC is virtual: uc.mem_read is physical, and with
        the MMU on it missed every WFI of a guest not mapped one to one, such as Linux, which
        then idled at 100% of a host core)."""
        pc, cpsr = self._pc_cpsr.read()
        if cpsr & PSR_T:
            return self.fetch_insn(pc - 2, True) == WFI_T16
        return self.fetch_insn(pc - 4, False) == WFI_A32

    # -- hooks (run on the pCPU thread, inside emu_start) -----------------------------------------

    def fetch_insn(self, pc: int, thumb: bool, sctlr: int | None = None) -> int | None:
        """The instruction at a guest virtual PC, fetched through the guest's tables (a
        hypercall site is hot: its walk is remembered, see WalkCache)."""
        if sctlr is not None and not sctlr & SCTLR_M:
            ipa = pc
        else:
            try:
                ipa, _ = self.walks.translate(self.stage1(), pc, write=False, exec_=True,
                                              read_phys=self.read_phys)
            except guest_walk.GuestFault:
                return None
        raw = self.read_phys(ipa, 4) if (ipa & 0xFFF) <= 0xFFC else self.read_virt(pc, 4)
        if raw is None:
            return None
        if not thumb:
            return int.from_bytes(raw, "little")
        hw1, hw2 = struct.unpack("<HH", raw)
        return (hw1 << 16) | hw2 if hw1 >> 11 in (0x1D, 0x1E, 0x1F) else hw1

    def flush_tlb(self) -> None:
        """Drop every cached stage-1 translation in Unicorn's TLB (the walks the hypervisor
        remembers check themselves)."""
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def flush_translations(self) -> None:
        """Drop every translated block before the next block runs (from a hook: blocks cannot
        go while one runs; the instruction cache maintenance that asks for it ends its block
        with an ISB anyway)."""
        self._flush_tb = True
        self.exitctl.request_stop()

    def retranslate(self) -> None:
        """Leave emu_start before the block being entered runs, then come back to it."""
        self._retranslate = True
        self.exitctl.request_stop()

    def read_virt(self, va: int, size: int) -> bytes | None:
        try:
            chunks = guest_walk.translate_range(self.stage1(), va, size, write=False,
                                                read_phys=self.read_phys, cache=self.walks)
        except guest_walk.GuestFault:
            return None
        parts = [self.read_phys(ipa, n) for ipa, n in chunks]
        return None if any(p is None for p in parts) else b"".join(parts)  # type: ignore[misc]

    def _hook_invalid(self, uc: Uc, _data: object) -> bool:
        r0, r1, r2, r3, r4, r12, pc, cpsr, sctlr = self._trap_regs.read()
        thumb = bool(cpsr & PSR_T)
        insn = self.fetch_insn(pc, thumb, sctlr)
        imm = _hvc_imm(insn, thumb) if insn is not None else None
        if imm is None:
            if self._yielded(pc, thumb):
                # WFE and YIELD give the pCPU away if another vCPU wants it. A WFE may complete
                # at any time (the guest re-checks its condition): no event register is needed.
                self.stop()
            else:
                self.inject(Vector.UNDEF, pc)
            return True
        # An HVC at PC is this trap's instruction (after a WFE it may also be the WFE's report:
        # the WFE has completed either way, and the HVC runs once, here).
        self.exitctl.charge(TRAP_COST)
        if imm == XEN_HYPERCALL_TAG:
            self.hypercalls += 1
            ret = self._on_hypercall(r12, (r0, r1, r2, r3, r4))
            if ret is None:
                self._write(UC_ARM_REG_PC, pc + 4)
            else:
                self._write2(UC_ARM_REG_PC, pc + 4, UC_ARM_REG_R0, ret)
            return True
        if imm == 0:
            self._write(UC_ARM_REG_PC, pc + 4)
            self._on_psci(self)     # SMCCC / PSCI: function id in r0
        else:
            # Current Xen logs the bad immediate and injects UNDEF.
            self._log(f"vcpu{self.vcpu_id}: invalid HVC imm {imm:#x}")
            self.inject(Vector.UNDEF, pc)
        return True

    def _yielded(self, pc: int, thumb: bool) -> bool:
        """Is this WFE or YIELD completing, rather than an undefined instruction at PC?

        QEMU ends a block with WFE/YIELD and reports it with PC past the hint; an undefined
        instruction is reported with PC on it. The instruction after a hint always starts a
        block, so if that block began (the last block start is PC) it is PC that is undefined.
        """
        if self.exitctl.last_block == pc:
            return False
        if thumb:
            hw = self.read_virt(pc - 2, 2)
            if hw is not None and int.from_bytes(hw, "little") in _T16_YIELDS:
                return True
            word = self.read_virt(pc - 4, 4)
            return word is not None and struct.unpack("<HH", word) in (
                (w >> 16, w & 0xFFFF) for w in _T32_YIELDS)
        prev = self.fetch_insn(pc - 4, False)
        return prev is not None and prev >> 28 != 0xF and prev & 0x0FFFFFFF in _A32_YIELDS

    def _hook_intr(self, uc: Uc, intno: int, _data: object) -> None:
        pc, cpsr = self._pc_cpsr.read()
        thumb = bool(cpsr & PSR_T)
        if intno == EXCP_SWI:
            self.inject(Vector.SVC, pc)     # PC is already past the SVC
        elif intno == EXCP_UDEF:
            self.inject(Vector.UNDEF, pc)
        elif intno == EXCP_BKPT:
            self.inject_abort(pc, prefetch=True, fsr=guest_walk.debug_fsr(self.stage1()), at=pc)
        elif intno == EXCP_PREFETCH_ABORT:
            ifar, ifsr = guest_walk.prefetch_abort(self.stage1(), pc, thumb, cpsr, self.read_phys)
            self.inject_abort(ifar, prefetch=True, fsr=ifsr, at=pc)
        elif intno == EXCP_DATA_ABORT:
            def banked_sp(mode: int) -> int:        # SRS to another mode's stack
                uc.reg_write(UC_ARM_REG_CPSR, (cpsr & ~MODE_MASK) | mode)
                sp = uc.reg_read(UC_ARM_REG_SP)
                uc.reg_write(UC_ARM_REG_CPSR, cpsr)
                return sp
            # The fault is recomputed from the instruction with the faulting access's own
            # privilege, direction and alignment, since Unicorn does not pass DFAR/DFSR on.
            regs = self.stage1()
            insn = guest_walk.fetch_insn(regs, pc, thumb, cpsr, self.read_phys)
            found = guest_walk.data_abort(regs, insn, thumb, self.reg, pc, cpsr, self.read_phys,
                                          banked_sp=banked_sp)
            far, fsr, wnr = found or (0, guest_walk.debug_fsr(regs), False)
            self.inject_abort(far, prefetch=False, fsr=fsr, write=wnr, at=pc)
        else:
            self._log(f"vcpu{self.vcpu_id}: unexpected exception {intno} at {pc:#x}")
            self.stop(Exit.DOWN)
        if self.exitctl.stop_requested:
            # Outside any block (QEMU is between its exception and the next block), so a stop
            # here is exact; needed when no block starts again (a vector that cannot be fetched
            # faults at translation, forever).
            uc.emu_stop()

    def _hook_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int,
                       _data: object) -> bool:
        # An unmapped frame, or a write to a read-only one (a read-only grant): a stage-2 fault.
        self._fault = (address, access in (UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT),
                       access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT))
        return False

    # -- exception entry --------------------------------------------------------------------------

    def inject(self, vector: Vector, preferred_return: int) -> None:
        """ARM exception entry (ARM ARM B1.8): mode, banked LR and SPSR, CPSR bits, vector."""
        self.exitctl.charge(TRAP_COST)
        cpsr, sctlr, vbar = self._entry_regs.read()
        mode, (off_arm, off_thumb), mask_a = _ENTRY[vector]
        lr = preferred_return + (off_thumb if cpsr & PSR_T else off_arm)
        new = (cpsr & ~(MODE_MASK | PSR_T | PSR_J | PSR_IT_MASK | (1 << 9))) | mode | PSR_I
        if mask_a:
            new |= PSR_A
        if sctlr & SCTLR_TE:
            new |= PSR_T
        if sctlr & SCTLR_EE:
            new |= 1 << 9
        base = 0xFFFF0000 if sctlr & SCTLR_V else vbar
        # In this order: the CPSR write switches the banked SP/LR/SPSR the next two write.
        self._write4(UC_ARM_REG_CPSR, new, UC_ARM_REG_SPSR, cpsr, UC_ARM_REG_LR, lr,
                     UC_ARM_REG_PC, (base + vector) | (1 if new & PSR_T else 0))
        if vector is Vector.IRQ:
            # The next emu_start has the vector's block translated and scanned (on_entry):
            # the block hook may enter IRQs there itself from now on (tbhook.c, take_irq).
            self.exitctl.entered_irq_vector(base + vector)

    def inject_abort(self, address: int, *, prefetch: bool, fsr: int, write: bool = False,
                     at: int | None = None) -> None:
        """A Prefetch or Data Abort for `address`, faulting instruction at `at` (default PC)."""
        pc = self.pc if at is None else at
        if prefetch:
            self.set_cp15("IFSR", fsr)
            self.set_cp15("IFAR", address & 0xFFFFFFFF)
            self.inject(Vector.PABT, address if at is None else pc)
        else:
            self.set_cp15("DFSR", fsr | ((1 << 11) if write else 0))
            self.set_cp15("DFAR", address & 0xFFFFFFFF)
            self.inject(Vector.DABT, pc)

    # -- MMIO ------------------------------------------------------------------------------------------

    def map_mmio(self, base: int, size: int, read: Callable[[int, int], int],
                 write: Callable[[int, int, int], None]) -> None:
        """An emulated device window: accesses call read(offset, size) / write(offset, size, value).

        A device refuses an access by raising an exception with an `offset` attribute (e.g.
        VgicAccessError): the guest then takes a data abort for it. Each access reaches the
        device exactly once: nothing stops the vCPU inside an instruction (see tbhook).
        """
        charge = self.exitctl.charge

        def on_read(uc: Uc, off: int, sz: int, _ud: object) -> int:
            charge(TRAP_COST)
            try:
                return read(off, sz)
            except Exception as e:  # noqa: BLE001 - a device refusal becomes a guest abort
                self._refuse(base + off, False, e)
                return 0

        def on_write(uc: Uc, off: int, sz: int, value: int, _ud: object) -> None:
            charge(TRAP_COST)
            try:
                write(off, sz, value)
            except Exception as e:  # noqa: BLE001 - a device refusal becomes a guest abort
                self._refuse(base + off, True, e)

        self._mmio_callbacks = getattr(self, "_mmio_callbacks", []) + [on_read, on_write]
        self.uc.mmio_map(base, size, on_read, None, on_write, None)

    def _refuse(self, addr: int, write: bool, err: Exception) -> None:
        if not hasattr(err, "offset"):
            self._log(f"vcpu{self.vcpu_id}: device error at {addr:#x}: {err!r}")
        self._mmio_fault = (addr, write)
        # The one synchronous stop inside an instruction: Unicorn leaves with PC on the refused
        # access, where the abort is taken, so nothing runs twice.
        self.uc.emu_stop()

    def _access_at_pc(self, pc: int, cpsr: int) -> tuple[int, bool] | None:
        """(guest-physical address, write) of the load/store at PC, if it is one."""
        thumb = bool(cpsr & PSR_T)
        insn = self.fetch_insn(pc, thumb)
        if insn is None:
            return None
        acc = decode.decode_data_abort(insn, thumb, self.reg, pc, carry=bool(cpsr & 1 << 29),
                                       mode=cpsr & MODE_MASK)
        if acc is None:
            return None
        try:
            ipa = guest_walk.gva_to_ipa(self.stage1(), acc.va, write=acc.write,
                                        privileged=guest_walk.privileged(cpsr)
                                        and not acc.unprivileged, read_phys=self.read_phys)
        except guest_walk.GuestFault:
            return None
        return ipa, acc.write

    # -- guest physical memory (RAM only; MMIO is not reachable this way) ------------------------------

    def read_phys(self, ipa: int, size: int) -> bytes | None:
        """Guest-physical bytes, through the domain's p2m: RAM, or a frame mapped over it."""
        if self.p2m_extra and any(g in self.p2m_extra for g in range(ipa >> 12, (ipa + size - 1 >> 12) + 1)):
            return self._p2m_access(ipa, size, None)
        off = ipa - self.ram_base
        if off < 0 or off + size > self.ram_size:
            return None
        return self.ram[off:off + size]

    def write_phys(self, ipa: int, data: bytes) -> bool:
        """Write guest-physical bytes; False if any of it is not writable RAM or a writable frame."""
        size = len(data)
        if self.p2m_extra and any(g in self.p2m_extra for g in range(ipa >> 12, (ipa + size - 1 >> 12) + 1)):
            return self._p2m_access(ipa, size, data) is not None
        off = ipa - self.ram_base
        if off < 0 or off + size > self.ram_size:
            return False
        self.ram[off:off + size] = data
        return True

    def _p2m_access(self, ipa: int, size: int, data: bytes | None) -> bytes | None:
        out, pos = [], 0
        while pos < size:
            a = ipa + pos
            n = min(size - pos, 0x1000 - (a & 0xFFF))
            m = self.p2m_extra.get(a >> 12)
            if m is not None:
                buf, base = m.buffer, m.offset + (a & 0xFFF)
                if data is not None and not m.writable:
                    return None
            else:
                buf, base = self.ram, a - self.ram_base
                if base < 0 or base + n > self.ram_size:
                    return None
            if data is None:
                out.append(buf[base:base + n])
            else:
                buf[base:base + n] = data[pos:pos + n]
            pos += n
        return b"".join(out)

    def close(self) -> None:
        for h in self._hooks:
            self.uc.hook_del(h)
        self._hooks.clear()
        self.exitctl.close()


def _hvc_imm(insn: int, thumb: bool) -> int | None:
    """The immediate of an HVC instruction, or None if `insn` is not HVC."""
    if not thumb:
        if insn & 0x0FF000F0 == 0x01400070 and insn >> 28 == 0xE:
            return ((insn >> 4) & 0xFFF0) | (insn & 0xF)
        return None
    # T32 HVC: 1111 0111 1110 imm4 | 1000 imm12
    if insn >> 16 & 0xFFF0 == 0xF7E0 and insn & 0xF000 == 0x8000:
        return ((insn >> 16) & 0xF) << 12 | (insn & 0xFFF)
    return None


assert _hvc_imm(hvc_a32(XEN_HYPERCALL_TAG), False) == XEN_HYPERCALL_TAG


def ram_pointer(buffer: object) -> int:
    """The address of a writable host buffer (an mmap), for Unicorn's mem_map_ptr."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))  # type: ignore[arg-type]
