"""Decode a load/store that faulted, to recover the address it accessed.

Xen's decode.c exists because the hardware syndrome sometimes lacks the
register details of an abort.  We need more: Unicorn reports a guest MMU fault
without the faulting virtual address, so we recompute it from the instruction
and the register file, exactly as the CPU's address generation did (ARM ARM A8,
"LDR", "STR", "LDM", ... pseudocode).  Anything not decoded returns None and the
caller falls back to another strategy; a guest's odd instruction never raises.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

RegRead = Callable[[int], int]

_M32 = 0xFFFFFFFF
PC = 15


@dataclass(frozen=True)
class DataAccess:
    """One data access of a load/store.

    For multi-register transfers (LDM/STM, LDRD, VLDM) va is the lowest address
    touched and size the whole transfer; rt is the first (lowest) register,
    numbered as S or D registers for VFP transfers.
    writeback is the base register's value after the instruction when it
    updates the base, else None.
    """

    va: int
    write: bool
    size: int
    rt: int
    sign_extend: bool = False
    writeback: int | None = None


def _shift_imm(value: int, stype: int, imm5: int, carry: bool | None) -> int | None:
    """A32 DecodeImmShift + Shift for the offset register."""
    if stype == 0:                                   # LSL
        return (value << imm5) & _M32
    if stype == 1:                                   # LSR, #0 means #32
        return 0 if imm5 == 0 else value >> imm5
    if stype == 2:                                   # ASR, #0 means #32
        amount = 32 if imm5 == 0 else imm5
        signed = value - (1 << 32) if value & 0x80000000 else value
        return (signed >> amount) & _M32
    if imm5 == 0:                                    # RRX needs the carry flag
        if carry is None:
            return None
        return (int(carry) << 31) | (value >> 1)
    return ((value >> imm5) | (value << (32 - imm5))) & _M32   # ROR


def _bitcount(x: int) -> int:
    return bin(x).count("1")


def _lowest(reglist: int) -> int:
    return (reglist & -reglist).bit_length() - 1


# --------------------------------------------------------------------------
# A32
# --------------------------------------------------------------------------

def _a32_base(rn: int, reg: RegRead, pc: int) -> int:
    # Reading the PC as a base gives the instruction address + 8 in ARM state.
    return (pc + 8) & _M32 if rn == PC else reg(rn) & _M32


def _a32_single(insn: int, reg: RegRead, pc: int, carry: bool | None) -> DataAccess | None:
    """LDR/STR/LDRB/STRB (and the T variants)."""
    reg_form = bool(insn & (1 << 25))
    if reg_form and insn & (1 << 4):
        return None                      # media instruction space
    p, u, b, w, load = ((insn >> s) & 1 for s in (24, 23, 22, 21, 20))
    rn, rt = (insn >> 16) & 0xF, (insn >> 12) & 0xF
    base = _a32_base(rn, reg, pc)
    if reg_form:
        rm = insn & 0xF
        if rm == PC:
            return None                  # UNPREDICTABLE
        offset = _shift_imm(reg(rm) & _M32, (insn >> 5) & 3, (insn >> 7) & 0x1F, carry)
        if offset is None:
            return None
    else:
        offset = insn & 0xFFF
    offset_addr = (base + offset if u else base - offset) & _M32
    addr = offset_addr if p else base
    wb = offset_addr if (not p or w) else None
    return DataAccess(addr, not load, 1 if b else 4, rt, writeback=wb)


def _a32_extra(insn: int, reg: RegRead, pc: int) -> DataAccess | None:
    """LDRH/STRH/LDRSB/LDRSH/LDRD/STRD."""
    op2 = (insn >> 5) & 3
    p, u, imm, w, load = ((insn >> s) & 1 for s in (24, 23, 22, 21, 20))
    rn, rt = (insn >> 16) & 0xF, (insn >> 12) & 0xF
    if op2 == 1:
        size, write, signed = 2, not load, False           # STRH / LDRH
    elif op2 == 2:
        size, write, signed = (1, False, True) if load else (8, False, False)  # LDRSB / LDRD
    else:
        size, write, signed = (2, False, True) if load else (8, True, False)   # LDRSH / STRD
    if size == 8 and (rt & 1 or rt == 14 or (not p and w)):
        return None                      # UNPREDICTABLE dual forms
    if imm:
        offset = ((insn >> 4) & 0xF0) | (insn & 0xF)
    else:
        rm = insn & 0xF
        if rm == PC or (insn >> 8) & 0xF:
            return None                  # bits [11:8] are SBZ in the register form
        offset = reg(rm) & _M32
    base = _a32_base(rn, reg, pc)
    if rn == PC:
        base &= ~3                       # literal forms use Align(PC, 4)
    offset_addr = (base + offset if u else base - offset) & _M32
    addr = offset_addr if p else base
    wb = offset_addr if (not p or w) else None
    return DataAccess(addr, write, size, rt, sign_extend=signed, writeback=wb)


def _a32_exclusive(insn: int, reg: RegRead, pc: int) -> DataAccess | None:
    """LDREX/STREX and the B/H/D forms."""
    op = (insn >> 21) & 3
    load = bool(insn & (1 << 20))
    rn = (insn >> 16) & 0xF
    # Bits [11:8] (and [3:0] of loads) are should-be-one; cores reject the rest.
    if rn == PC or (insn >> 8) & 0xF != 0xF or (load and insn & 0xF != 0xF):
        return None
    size = {0: 4, 1: 8, 2: 1, 3: 2}[op]
    # Loads name Rt in [15:12]; stores put the status register there and Rt in [3:0].
    rt = (insn >> 12) & 0xF if load else insn & 0xF
    if size == 8 and (rt & 1 or rt == 14):
        return None                      # the doubleword pair must be even/odd
    return DataAccess(reg(rn) & _M32, not load, size, rt)


def _a32_block(insn: int, reg: RegRead, pc: int) -> DataAccess | None:
    """LDM/STM in all four addressing modes."""
    p, u, s_bit, w, load = ((insn >> s) & 1 for s in (24, 23, 22, 21, 20))
    rn = (insn >> 16) & 0xF
    reglist = insn & 0xFFFF
    if rn == PC or reglist == 0:
        return None
    # UNPREDICTABLE in ARMv7: user-bank transfers with writeback, and loads
    # that write back into a register they also load.
    if w and ((s_bit and not (load and reglist & 0x8000)) or (load and reglist & (1 << rn))):
        return None
    n = _bitcount(reglist)
    base = reg(rn) & _M32
    if u:
        low = base + 4 if p else base                     # IB / IA
        wb = base + 4 * n
    else:
        low = base - 4 * n if p else base - 4 * n + 4     # DB / DA
        wb = base - 4 * n
    return DataAccess(low & _M32, not load, 4 * n, _lowest(reglist),
                      writeback=(wb & _M32) if w else None)


def _vfp_transfer(insn: int, reg: RegRead, pc_value: int) -> DataAccess | None:
    """VLDR/VSTR/VLDM/VSTM; same layout in A32 and T32.

    pc_value is what reading the PC yields in the current state.
    """
    p, u, d, w, load = ((insn >> s) & 1 for s in (24, 23, 22, 21, 20))
    rn = (insn >> 16) & 0xF
    vd = (insn >> 12) & 0xF
    double = bool(insn & (1 << 8))
    imm8 = insn & 0xFF
    rt = (d << 4) | vd if double else (vd << 1) | d
    base = (pc_value & ~3) & _M32 if rn == PC else reg(rn) & _M32
    if p and not w:                                        # VLDR / VSTR
        addr = (base + imm8 * 4 if u else base - imm8 * 4) & _M32
        return DataAccess(addr, not load, 8 if double else 4, rt)
    if p == u or imm8 == 0 or (rn == PC and w):
        return None          # 64-bit core<->VFP moves, or UNPREDICTABLE forms
    # The register list runs upwards from the lowest address; an odd imm8 with
    # doubles is the FLDMX/FSTMX form, whose extra word is not transferred.
    count = imm8 // 2 if double else imm8
    if count == 0 or rt + count > 32 or (double and count > 16):
        return None
    span = imm8 * 4
    size = count * (8 if double else 4)
    if u:                                                  # increment after
        return DataAccess(base, not load, size, rt,
                          writeback=((base + span) & _M32) if w else None)
    low = (base - span) & _M32                             # decrement before
    return DataAccess(low, not load, size, rt, writeback=low)


def _decode_a32(insn: int, reg: RegRead, pc: int, carry: bool | None) -> DataAccess | None:
    cond = insn >> 28
    if cond == 0xF:
        return None          # unconditional space: PLD/PLI/SRS/RFE, not data aborts we decode
    op1 = (insn >> 25) & 7
    if op1 in (0b010, 0b011):
        return _a32_single(insn, reg, pc, carry)
    if op1 == 0b100:
        return _a32_block(insn, reg, pc)
    if op1 == 0b000 and insn & 0x90 == 0x90:
        if (insn >> 5) & 3:
            return _a32_extra(insn, reg, pc)
        if (insn >> 23) & 0x1F == 0b00011 and (insn >> 4) & 0xF == 0b1001:
            return _a32_exclusive(insn, reg, pc)
        return None          # multiplies, SWP
    if op1 == 0b110 and (insn >> 9) & 7 == 0b101:
        return _vfp_transfer(insn, reg, pc + 8)
    return None


# --------------------------------------------------------------------------
# T32
# --------------------------------------------------------------------------

def _decode_t16(hw: int, reg: RegRead, pc: int) -> DataAccess | None:
    pcv = (pc + 4) & _M32        # reading the PC in Thumb state
    top5 = hw >> 11
    if top5 == 0b01001:                                    # LDR (literal)
        addr = ((pcv & ~3) + (hw & 0xFF) * 4) & _M32
        return DataAccess(addr, False, 4, (hw >> 8) & 7)
    if hw >> 12 == 0b0101:                                 # register offset
        opb = (hw >> 9) & 7
        rm, rn, rt = (hw >> 6) & 7, (hw >> 3) & 7, hw & 7
        size, write, signed = [(4, True, False), (2, True, False), (1, True, False),
                               (1, False, True), (4, False, False), (2, False, False),
                               (1, False, False), (2, False, True)][opb]
        return DataAccess((reg(rn) + reg(rm)) & _M32, write, size, rt, sign_extend=signed)
    if hw >> 13 == 0b011:                                  # STR/LDR(B) immediate
        byte = bool(hw & (1 << 12))
        load = bool(hw & (1 << 11))
        imm5, rn, rt = (hw >> 6) & 0x1F, (hw >> 3) & 7, hw & 7
        off = imm5 if byte else imm5 * 4
        return DataAccess((reg(rn) + off) & _M32, not load, 1 if byte else 4, rt)
    if hw >> 12 == 0b1000:                                 # STRH/LDRH immediate
        load = bool(hw & (1 << 11))
        imm5, rn, rt = (hw >> 6) & 0x1F, (hw >> 3) & 7, hw & 7
        return DataAccess((reg(rn) + imm5 * 2) & _M32, not load, 2, rt)
    if hw >> 12 == 0b1001:                                 # STR/LDR SP-relative
        load = bool(hw & (1 << 11))
        return DataAccess((reg(13) + (hw & 0xFF) * 4) & _M32, not load, 4, (hw >> 8) & 7)
    if hw & 0xF600 == 0xB400:                              # PUSH / POP
        pop = bool(hw & (1 << 11))
        reglist = (hw & 0xFF) | ((hw >> 8) & 1) << (15 if pop else 14)
        if reglist == 0:
            return None
        n = _bitcount(reglist)
        sp = reg(13) & _M32
        if pop:
            return DataAccess(sp, False, 4 * n, _lowest(reglist),
                              writeback=(sp + 4 * n) & _M32)
        low = (sp - 4 * n) & _M32
        return DataAccess(low, True, 4 * n, _lowest(reglist), writeback=low)
    if hw >> 12 == 0b1100:                                 # STMIA / LDMIA
        load = bool(hw & (1 << 11))
        rn, reglist = (hw >> 8) & 7, hw & 0xFF
        if reglist == 0:
            return None
        n = _bitcount(reglist)
        base = reg(rn) & _M32
        # LDM writes back unless the base is in the list; STM always does.
        wb = None if load and reglist & (1 << rn) else (base + 4 * n) & _M32
        return DataAccess(base, not load, 4 * n, _lowest(reglist), writeback=wb)
    return None


def _t32_single(hw1: int, hw2: int, reg: RegRead, pc: int) -> DataAccess | None:
    """LDR{B,H,SB,SH}/STR{B,H} with 32-bit encodings."""
    signed = bool(hw1 & (1 << 8))
    size_field = (hw1 >> 5) & 3
    load = bool(hw1 & (1 << 4))
    rn, rt = hw1 & 0xF, hw2 >> 12
    if size_field == 3 or (signed and (size_field == 2 or not load)):
        return None
    size = 1 << size_field
    if load and rt == PC and size < 4:
        return None                      # PLD/PLI hints
    if rn == PC:                         # literal: loads only
        if not load:
            return None
        base = ((pc + 4) & ~3) & _M32
        off = hw2 & 0xFFF
        addr = (base + off if hw1 & (1 << 7) else base - off) & _M32
        return DataAccess(addr, False, size, rt, sign_extend=signed)
    base = reg(rn) & _M32
    if hw1 & (1 << 7):                   # T2/T3: positive imm12
        return DataAccess((base + (hw2 & 0xFFF)) & _M32, not load, size, rt,
                          sign_extend=signed)
    if (hw2 >> 6) & 0x3F == 0:           # register, LSL #imm2
        rm = hw2 & 0xF
        if rm in (13, 15):
            return None
        off = ((reg(rm) & _M32) << ((hw2 >> 4) & 3)) & _M32
        return DataAccess((base + off) & _M32, not load, size, rt, sign_extend=signed)
    if hw2 & (1 << 11):                  # imm8 with P/U/W
        p, u, w = (hw2 >> 10) & 1, (hw2 >> 9) & 1, (hw2 >> 8) & 1
        if not p and not w:
            return None
        imm8 = hw2 & 0xFF
        offset_addr = (base + imm8 if u else base - imm8) & _M32
        addr = offset_addr if p else base
        return DataAccess(addr, not load, size, rt, sign_extend=signed,
                          writeback=offset_addr if w else None)
    return None


def _t32_dual_excl(hw1: int, hw2: int, reg: RegRead, pc: int) -> DataAccess | None:
    """LDRD/STRD, LDREX/STREX family."""
    p, u, w, load = (hw1 >> 8) & 1, (hw1 >> 7) & 1, (hw1 >> 5) & 1, (hw1 >> 4) & 1
    rn = hw1 & 0xF
    if p or w:                                             # LDRD / STRD immediate
        rt = hw2 >> 12
        off = (hw2 & 0xFF) * 4
        if rn == PC:
            if not load or w:
                return None
            base = ((pc + 4) & ~3) & _M32
        else:
            base = reg(rn) & _M32
        offset_addr = (base + off if u else base - off) & _M32
        addr = offset_addr if p else base
        return DataAccess(addr, not load, 8, rt, writeback=offset_addr if w else None)
    if rn == PC:
        return None
    base = reg(rn) & _M32
    if not u:                                              # STREX / LDREX (word)
        if load and (hw2 >> 8) & 0xF != 0xF:
            return None
        addr = (base + (hw2 & 0xFF) * 4) & _M32
        return DataAccess(addr, not load, 4, hw2 >> 12)
    op3 = (hw2 >> 4) & 0xF
    size = {0b0100: 1, 0b0101: 2, 0b0111: 8}.get(op3)
    if size is None:
        return None                                        # TBB/TBH and others
    # Should-be-one fields: Rt2 slot for B/H forms, Rd slot for loads.
    if (size < 8 and (hw2 >> 8) & 0xF != 0xF) or (load and hw2 & 0xF != 0xF):
        return None
    return DataAccess(base, not load, size, hw2 >> 12)


def _t32_block(hw1: int, hw2: int, reg: RegRead) -> DataAccess | None:
    """LDM/STM (IA and DB), PUSH/POP wide forms."""
    op = (hw1 >> 7) & 3
    w, load = (hw1 >> 5) & 1, (hw1 >> 4) & 1
    rn = hw1 & 0xF
    reglist = hw2
    if op not in (0b01, 0b10) or rn == PC or reglist == 0:
        return None
    n = _bitcount(reglist)
    # T32 lists never hold SP, need two registers, and cannot store the PC
    # or load both LR and PC.
    if n < 2 or reglist & (1 << 13) or (not load and reglist & (1 << 15)) \
            or (load and reglist & 0xC000 == 0xC000) or (w and reglist & (1 << rn)):
        return None
    base = reg(rn) & _M32
    if op == 0b01:                                         # increment after
        return DataAccess(base, not load, 4 * n, _lowest(reglist),
                          writeback=((base + 4 * n) & _M32) if w else None)
    low = (base - 4 * n) & _M32                            # decrement before
    return DataAccess(low, not load, 4 * n, _lowest(reglist),
                      writeback=low if w else None)


def _decode_t32(hw1: int, hw2: int, reg: RegRead, pc: int) -> DataAccess | None:
    if hw1 >> 9 == 0b1111100:
        return _t32_single(hw1, hw2, reg, pc)
    if hw1 >> 9 == 0b1110100:
        if hw1 & (1 << 6):
            return _t32_dual_excl(hw1, hw2, reg, pc)
        return _t32_block(hw1, hw2, reg)
    if hw1 >> 12 == 0b1110 and (hw1 >> 9) & 7 == 0b110 and (hw2 >> 9) & 7 == 0b101:
        # Coprocessor space with cp10/11: the layout matches A32 with cond=AL.
        return _vfp_transfer((hw1 << 16) | hw2, reg, pc + 4)
    return None


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def decode_data_abort(insn: int, thumb: bool, reg: RegRead, pc: int, *,
                      carry: bool | None = None) -> DataAccess | None:
    """Work out the data access made by the load/store `insn` at address `pc`.

    reg(n) reads r0-r14 of the faulting mode.  A 32-bit Thumb instruction is
    passed as (first_halfword << 16) | second_halfword.  carry is CPSR.C, needed
    only for an RRX-shifted register offset.  Returns None for anything that is
    not a decodable load/store.
    """
    if not thumb:
        return _decode_a32(insn & _M32, reg, pc & _M32, carry)
    hw1, hw2 = (insn >> 16) & 0xFFFF, insn & 0xFFFF
    if hw1 == 0:
        if hw2 >> 11 in (0b11101, 0b11110, 0b11111):
            return None                   # first half of a 32-bit encoding alone
        return _decode_t16(hw2, reg, pc & _M32)
    if hw1 >> 11 not in (0b11101, 0b11110, 0b11111):
        return None
    return _decode_t32(hw1, hw2, reg, pc & _M32)
