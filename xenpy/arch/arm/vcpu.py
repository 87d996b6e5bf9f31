"""An arm32 vCPU: one Unicorn instance running guest code until it traps.

The counterpart of Xen's arch/arm/domain.c (vCPU state) and the entry half of arch/arm/traps.c.
Nothing here hooks single instructions: guest code runs at Unicorn's full speed until it executes
HVC (Unicorn raises it as an invalid instruction at EL1), takes an exception of its own (Unicorn
hands those to us instead of entering them, so we perform the ARM exception entry), touches an
address outside its memory map, executes WFI, or is stopped by the scheduler with emu_stop().
"""
from __future__ import annotations

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
from unicorn.arm_const import (UC_ARM_REG_CP_REG, UC_ARM_REG_CPSR, UC_ARM_REG_LR, UC_ARM_REG_PC,
                               UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3,
                               UC_ARM_REG_R4, UC_ARM_REG_R12, UC_ARM_REG_SP, UC_ARM_REG_SPSR,
                               UC_CPU_ARM_CORTEX_A7)

from xenpy.arch.arm import decode, guest_walk
from xenpy.arch.arm.regs import CP15, RegBatch, RegWriter
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
_A32_HINTS = {0xE320F001: "yield", 0xE320F002: "wfe", 0xE320F004: "sev", 0xE320F005: "sevl"}
_T16_HINTS = {0xBF10: "yield", 0xBF20: "wfe", 0xBF40: "sev", 0xBF50: "sevl"}
UNTIL = 0xFFFFFFFF  # never an instruction address: emu_start runs until something stops it

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


# How far ahead of a block start a re-run device access is looked for (_note_stop_point).
MAX_BLOCK_INSNS = 32


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
        self._write2 = RegWriter(h, 2)
        self._fetch_cache: dict[tuple[int, ...], int] = {}
        self._pc_cpsr = RegBatch(h, [UC_ARM_REG_PC, UC_ARM_REG_CPSR])
        self._mmio_fault: tuple[int, bool] | None = None
        self._last_access: tuple | None = None     # the last device access (see map_mmio)
        self._replay: tuple | None = None          # an access about to be re-run by Unicorn
        self._stopping = False                     # emu_stop() asked for in this emu_start
        self._stop_in_mmio = False                 # ... before the last device access ended
        self._retranslate = False
        self._hint_pc: int | None = None
        self.irq_pending: Callable[[], bool] = lambda: False   # the vGIC's line for this vCPU
        # Called when run() resumes with an interrupt waiting behind CPSR.I: unmasking does not
        # trap, so someone must look again soon. Not after a WFI: a guest that waits with IRQs
        # masked takes the interrupt from its GIC itself once it runs on.
        self.irq_masked: Callable[[], None] = lambda: None
        self._halted = False
        self.p2m_extra: dict = {}      # the domain's P2M.extra: frames mapped over or beside RAM
        self._stop_requested = False
        self._exit: Exit | None = None
        self._fault: tuple[int, bool, bool] | None = None   # (address, write, fetch)
        self.hypercalls = 0
        self.emu_count = 0     # a debugger's single step runs one instruction (0: no limit)

    # -- registers ---------------------------------------------------------------------------

    def reg(self, n: int) -> int:
        return self.uc.reg_read(UC_ARM_REG_R0 + n) if n < 13 else self.uc.reg_read(
            (UC_ARM_REG_SP, UC_ARM_REG_LR, UC_ARM_REG_PC)[n - 13])

    def set_reg(self, n: int, value: int) -> None:
        self.uc.reg_write(UC_ARM_REG_R0 + n if n < 13 else
                          (UC_ARM_REG_SP, UC_ARM_REG_LR, UC_ARM_REG_PC)[n - 13], value & 0xFFFFFFFF)

    @property
    def pc(self) -> int:
        return self.uc.reg_read(UC_ARM_REG_PC)

    @property
    def cpsr(self) -> int:
        return self.uc.reg_read(UC_ARM_REG_CPSR)

    def cp15(self, name: str) -> int:
        return self.uc.reg_read(UC_ARM_REG_CP_REG, CP15[name])

    def set_cp15(self, name: str, value: int) -> None:
        self.uc.reg_write(UC_ARM_REG_CP_REG, CP15[name] + (value,))

    def stage1(self) -> guest_walk.Stage1Regs:
        sctlr, ttbcr, ttbr0, ttbr1, dacr = self._mmu_regs.read()
        return guest_walk.Stage1Regs(sctlr=sctlr, ttbcr=ttbcr, ttbr0=ttbr0, ttbr1=ttbr1, dacr=dacr)

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
        self._exit = None
        woken, self._halted = self._halted, False
        while True:
            self._stop_requested = self._stopping = False
            pc, cpsr = self._pc_cpsr.read()
            if self.irq_pending():
                if not cpsr & PSR_I:
                    self.inject(Vector.IRQ, pc)   # the guest takes the interrupt first
                    pc, cpsr = self._pc_cpsr.read()
                elif not woken:
                    self.irq_masked()
            woken = False
            pc |= 1 if cpsr & PSR_T else 0
            try:
                self.uc.emu_start(pc, UNTIL, count=self.emu_count)
                self._note_stop_point()
            except UcError:
                self._last_access, self._stop_in_mmio = None, False
                if self._fault is None:
                    raise
                addr, write, fetch = self._fault
                self._fault = None
                # Xen injects an abort with a debug-event status for an access to an address the
                # domain has no mapping for (a stage-2 fault).
                lpae = self.cp15("TTBCR") >> 31
                self.inject_abort(addr, prefetch=fetch,
                                  fsr=FSR_DEBUG_LPAE if lpae else FSR_DEBUG_SHORT, write=write)
                if self._exit:
                    return self._exit
                continue
            if self._mmio_fault is not None:
                # A refused MMIO access (strict vGIC): the access has completed in Unicorn, so
                # the abort is taken with the return address of the instruction that made it.
                addr, write = self._mmio_fault
                self._mmio_fault = self._replay = None
                lpae = self.cp15("TTBCR") >> 31
                pc_now, cpsr_now = self._pc_cpsr.read()
                # Unicorn usually stops on the refused instruction itself; if it completed, the
                # abort is taken as if raised by it (the instruction before PC).
                at = pc_now if self._access_at_pc(pc_now, cpsr_now) == (addr, write) else pc_now - 4
                self.inject_abort(addr, prefetch=False, write=write, at=at,
                                  fsr=FSR_DEBUG_LPAE if lpae else FSR_DEBUG_SHORT)
                continue
            if self._exit:
                return self._exit
            if self._stop_requested:
                return Exit.PREEMPTED
            if self._retranslate:
                self._retranslate = False
                continue
            if self._after_wfi():
                self._halted = True
                return Exit.WFI
            return Exit.PREEMPTED

    def stop(self, why: Exit = Exit.PREEMPTED) -> None:
        """Make run() return soon; safe from any thread and from inside hooks."""
        if why is not Exit.PREEMPTED:
            self._exit = why
        self._stop_requested = True
        self._emu_stop()

    def _after_wfi(self) -> bool:
        """emu_start returning by itself means the CPU halted: the instruction before PC is WFI."""
        pc = self.pc
        try:
            if self.cpsr & PSR_T:
                return struct.unpack("<H", self.uc.mem_read(pc - 2, 2))[0] == WFI_T16
            return struct.unpack("<I", self.uc.mem_read(pc - 4, 4))[0] == WFI_A32
        except UcError:
            return False

    # -- hooks (run on the pCPU thread, inside emu_start) -----------------------------------------

    def _fetch_insn(self, pc: int, thumb: bool, sctlr: int | None = None) -> int | None:
        """The instruction at a guest virtual PC, fetched through the guest's tables.

        With the MMU on, the page translation is cached per (page, translation registers): a
        hypercall site is hot, and the walk is the expensive part of the trap.
        """
        if sctlr is not None and not sctlr & SCTLR_M:
            ipa = pc
        else:
            regs = self.stage1()
            key = (pc >> 12, regs.sctlr, regs.ttbcr, regs.ttbr0, regs.ttbr1)
            page = self._fetch_cache.get(key)
            if page is None:
                try:
                    page = guest_walk.gva_to_ipa(regs, pc & ~0xFFF, write=False, exec_=True,
                                                 read_phys=self.read_phys) >> 12
                except guest_walk.GuestFault:
                    return None
                if len(self._fetch_cache) > 256:
                    self._fetch_cache.clear()
                self._fetch_cache[key] = page
            ipa = page << 12 | pc & 0xFFF
        raw = self.read_phys(ipa, 4) if (ipa & 0xFFF) <= 0xFFC else self.read_virt(pc, 4)
        if raw is None:
            return None
        if not thumb:
            return int.from_bytes(raw, "little")
        hw1, hw2 = struct.unpack("<HH", raw)
        return (hw1 << 16) | hw2 if hw1 >> 11 in (0x1D, 0x1E, 0x1F) else hw1

    def retranslate(self) -> None:
        """Leave emu_start before the block being entered runs, then come back to it."""
        self._retranslate = True
        self._emu_stop()

    def _emu_stop(self) -> None:
        # Flagged first: a device access that ends after this abandons its instruction.
        self._stopping = True
        self.uc.emu_stop()

    def read_virt(self, va: int, size: int) -> bytes | None:
        try:
            chunks = guest_walk.translate_range(self.stage1(), va, size, write=False,
                                                read_phys=self.read_phys)
        except guest_walk.GuestFault:
            return None
        parts = [self.read_phys(ipa, n) for ipa, n in chunks]
        return None if any(p is None for p in parts) else b"".join(parts)  # type: ignore[misc]

    def _hook_invalid(self, uc: Uc, _data: object) -> bool:
        r0, r1, r2, r3, r4, r12, pc, cpsr, sctlr = self._trap_regs.read()
        thumb = bool(cpsr & PSR_T)
        insn = self._fetch_insn(pc, thumb, sctlr)
        imm = _hvc_imm(insn, thumb) if insn is not None else None
        if imm is None:
            if self._after_hint(pc, thumb):
                return True
            self.inject(Vector.UNDEF, pc)
            return True
        self._hint_pc = None
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

    def _after_hint(self, pc: int, thumb: bool) -> bool:
        """Unicorn reports WFE, YIELD, SEV and SEVL here with PC already past them.

        WFE and YIELD give the pCPU away (a WFE may end early: the guest re-checks its condition);
        SEV needs nothing since no vCPU really sleeps in WFE. Seeing the same PC twice means the
        instruction at PC itself is undefined.
        """
        if self._hint_pc == pc:
            self._hint_pc = None
            return False
        size = 2 if thumb else 4
        prev = self._fetch_insn(pc - size, thumb)
        hints = _T16_HINTS if thumb else _A32_HINTS
        if prev is None or (prev & 0xFFFF if thumb else prev) not in hints:
            return False
        self._hint_pc = pc
        if hints[prev & 0xFFFF if thumb else prev] in ("wfe", "yield"):
            self.stop()
        return True

    def _hook_intr(self, uc: Uc, intno: int, _data: object) -> None:
        pc, cpsr = self._pc_cpsr.read()
        thumb = bool(cpsr & PSR_T)
        if intno == EXCP_SWI:
            self.inject(Vector.SVC, pc)     # PC is already past the SVC
        elif intno == EXCP_UDEF:
            self.inject(Vector.UNDEF, pc)
        elif intno in (EXCP_PREFETCH_ABORT, EXCP_BKPT):
            self.inject_abort(pc, prefetch=True, fsr=self._walk_fsr(pc, False, True))
        elif intno == EXCP_DATA_ABORT:
            insn = self._fetch_insn(pc, thumb)
            acc = (decode.decode_data_abort(insn, thumb, self.reg, pc, carry=bool(cpsr & 1 << 29))
                   if insn is not None else None)
            va, write = (acc.va, acc.write) if acc else (0, False)
            self.inject_abort(va, prefetch=False, fsr=self._walk_fsr(va, write, False),
                              write=write, at=pc)
        else:
            self._log(f"vcpu{self.vcpu_id}: unexpected exception {intno} at {pc:#x}")
            self.stop(Exit.DOWN)

    def _walk_fsr(self, va: int, write: bool, fetch: bool) -> int:
        """Re-walk the guest's tables to find the status the MMU reported for a guest fault."""
        try:
            guest_walk.gva_to_ipa(self.stage1(), va, write=write, exec_=fetch,
                                  read_phys=self.read_phys)
        except guest_walk.GuestFault as f:
            return f.fsr
        lpae = self.cp15("TTBCR") >> 31
        return FSR_DEBUG_LPAE if lpae else FSR_DEBUG_SHORT

    def _hook_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int,
                       _data: object) -> bool:
        # An unmapped frame, or a write to a read-only one (a read-only grant): a stage-2 fault.
        self._fault = (address, access in (UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT),
                       access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT))
        return False

    # -- exception entry --------------------------------------------------------------------------

    def inject(self, vector: Vector, preferred_return: int) -> None:
        """ARM exception entry (ARM ARM B1.8): mode, banked LR and SPSR, CPSR bits, vector."""
        uc = self.uc
        cpsr = uc.reg_read(UC_ARM_REG_CPSR)
        sctlr = self.cp15("SCTLR")
        mode, (off_arm, off_thumb), mask_a = _ENTRY[vector]
        lr = preferred_return + (off_thumb if cpsr & PSR_T else off_arm)
        new = (cpsr & ~(MODE_MASK | PSR_T | PSR_J | PSR_IT_MASK | (1 << 9))) | mode | PSR_I
        if mask_a:
            new |= PSR_A
        if sctlr & SCTLR_TE:
            new |= PSR_T
        if sctlr & SCTLR_EE:
            new |= 1 << 9
        base = 0xFFFF0000 if sctlr & SCTLR_V else self.cp15("VBAR")
        uc.reg_write(UC_ARM_REG_CPSR, new)      # switches the banked SP/LR/SPSR
        uc.reg_write(UC_ARM_REG_SPSR, cpsr)
        uc.reg_write(UC_ARM_REG_LR, lr & 0xFFFFFFFF)
        uc.reg_write(UC_ARM_REG_PC, (base + vector) | (1 if new & PSR_T else 0))

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
        VgicAccessError): the guest then takes a data abort for it.

        Unicorn 2.1 quirk: when an emu_stop() is pending as an access ends (asked for from a
        device callback, or from another thread: the ticker, a kick, any time since the block
        began), emulation stops without finishing the access instruction, with PC on it or on
        the start of its translation block, so it runs again on resume. Re-running an
        acknowledge or an SGI write is not harmless, so the access is recorded, and if the vCPU
        will re-run it (see _note_stop_point) the replay is answered from the record without
        reaching the device.
        """
        def access(off: int, sz: int, write_: bool, value: int) -> int:
            key = (base + off, sz, write_, value)
            replay = self._replay
            if replay is not None:
                self._replay = None
                if replay[0] == key:
                    self._last_access = replay      # a stop may land on the replay too
                    self._stop_in_mmio = self._stopping
                    return replay[1]
            try:
                if write_:
                    write(off, sz, value)
                    value = 0
                else:
                    value = read(off, sz)
            except Exception as e:  # noqa: BLE001 - a device refusal becomes a guest abort
                self._refuse(base + off, write_, e)
                return 0
            self._last_access = (key, value)
            self._stop_in_mmio = self._stopping
            return value

        def on_read(uc: Uc, off: int, sz: int, _ud: object) -> int:
            return access(off, sz, False, 0)

        def on_write(uc: Uc, off: int, sz: int, value: int, _ud: object) -> None:
            access(off, sz, True, value)

        self._mmio_callbacks = getattr(self, "_mmio_callbacks", []) + [on_read, on_write]
        self.uc.mmio_map(base, size, on_read, None, on_write, None)

    def _refuse(self, addr: int, write: bool, err: Exception) -> None:
        if not hasattr(err, "offset"):
            self._log(f"vcpu{self.vcpu_id}: device error at {addr:#x}: {err!r}")
        self._mmio_fault = (addr, write)
        self._stop_requested = True
        self._emu_stop()

    def _access_at_pc(self, pc: int, cpsr: int) -> tuple[int, bool] | None:
        """(guest-physical address, write) of the load/store at PC, if it is one."""
        thumb = bool(cpsr & PSR_T)
        insn = self._fetch_insn(pc, thumb)
        if insn is None:
            return None
        acc = decode.decode_data_abort(insn, thumb, self.reg, pc, carry=bool(cpsr & 1 << 29))
        if acc is None:
            return None
        try:
            ipa = guest_walk.gva_to_ipa(self.stage1(), acc.va, write=acc.write,
                                        read_phys=self.read_phys)
        except guest_walk.GuestFault:
            return None
        return ipa, acc.write

    def _note_stop_point(self) -> None:
        """After emu_start returns: will the next instructions re-run the last device access?

        Yes if PC is on it, or if a stop was pending when it ended and it lies ahead in the
        straight-line code from PC (Unicorn went back to the start of its block).
        """
        last, self._last_access = self._last_access, None
        in_flight, self._stop_in_mmio = self._stop_in_mmio, False
        if last is None:
            return
        (addr, _size, write, _value), _result = last
        pc, cpsr = self._pc_cpsr.read()
        thumb = bool(cpsr & PSR_T)
        for _ in range(MAX_BLOCK_INSNS if in_flight else 1):
            if self._access_at_pc(pc, cpsr) == (addr, write):
                self._replay = last
                return
            if not in_flight:
                return
            insn = self._fetch_insn(pc, thumb)
            if insn is None:
                return
            pc += 4 if not thumb or insn > 0xFFFF else 2

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
