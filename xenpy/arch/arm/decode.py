"""Decode a load/store that faulted, to recover the access it made.

Xen's decode.c exists because the hardware syndrome sometimes lacks the
register details of an abort.  We need more: Unicorn reports a guest MMU fault
without the faulting virtual address, so we recompute it from the instruction
and the register file, exactly as the CPU's address generation did (ARM ARM A8,
"LDR", "STR", "LDM", "VLD1", ... pseudocode), together with what decides the
fault status: direction, privilege (the T forms are unprivileged) and the
alignment the instruction demands (ARM ARM A3.2.1, "Alignment requirements
of load/store instructions").

The decoder is a table of (mask, value, handler) per instruction set, checked
in order; anything not matched returns None and the caller falls back to
another strategy; a guest's odd instruction never raises.  Hints (PLD, PLDW,
PLI) never abort, so they are not data accesses here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

RegRead = Callable[[int], int]

_M32 = 0xFFFFFFFF
PC = 15


@dataclass(frozen=True)
class DataAccess:
    """The data access of a load/store.

    Every access decoded here touches one contiguous range of bytes, [va,
    va + size), in increasing address order (LDM, VLDn, VPUSH, ... all do), so
    the architecturally first faulting element is the one at the lowest
    faulting address.  rt is the first (lowest) register, numbered as S or D
    registers for VFP/Advanced SIMD transfers.  writeback is the base
    register's value after the instruction when it updates the base, else None.

    align is the alignment the instruction always requires (LDREX: its size;
    LDM, LDRD, VLDM: a word; VLDn: its :align qualifier); elem the element
    size, which must be aligned too when SCTLR.A is set.  unprivileged marks
    LDRT/STRT and friends (a PL0 access from any mode); swap marks SWP/SWPB
    (a read, then a write, of the same bytes); cache_op a cache maintenance
    operation by VA (reported with DFSR.CM, never a permission fault).
    """

    va: int
    write: bool
    size: int
    rt: int
    sign_extend: bool = False
    writeback: int | None = None
    unprivileged: bool = False
    align: int = 1
    elem: int = 1
    swap: bool = False
    cache_op: bool = False


@dataclass(frozen=True)
class _Ctx:
    """What a handler may read besides the instruction."""

    reg: RegRead
    pc: int                       # the instruction's own address
    carry: bool | None            # CPSR.C, for RRX
    mode: int | None              # CPSR.M, to tell SRS to the current mode from another
    banked_sp: Callable[[int], int] | None


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

def _a32_base(rn: int, c: _Ctx) -> int:
    # Reading the PC as a base gives the instruction address + 8 in ARM state.
    return (c.pc + 8) & _M32 if rn == PC else c.reg(rn) & _M32


def _a32_single(insn: int, c: _Ctx) -> DataAccess | None:
    """LDR/STR/LDRB/STRB, and LDRT/STRT/LDRBT/STRBT (P=0, W=1)."""
    reg_form = bool(insn & (1 << 25))
    if reg_form and insn & (1 << 4):
        return None                      # media instruction space
    p, u, b, w, load = ((insn >> s) & 1 for s in (24, 23, 22, 21, 20))
    rn, rt = (insn >> 16) & 0xF, (insn >> 12) & 0xF
    base = _a32_base(rn, c)
    if reg_form:
        rm = insn & 0xF
        if rm == PC:
            return None                  # UNPREDICTABLE
        offset = _shift_imm(c.reg(rm) & _M32, (insn >> 5) & 3, (insn >> 7) & 0x1F, c.carry)
        if offset is None:
            return None
    else:
        offset = insn & 0xFFF
    offset_addr = (base + offset if u else base - offset) & _M32
    addr = offset_addr if p else base
    wb = offset_addr if (not p or w) else None
    size = 1 if b else 4
    return DataAccess(addr, not load, size, rt, writeback=wb,
                      unprivileged=bool(not p and w), elem=size)


def _a32_extra(insn: int, c: _Ctx) -> DataAccess | None:
    """LDRH/STRH/LDRSB/LDRSH/LDRD/STRD, and LDRHT/STRHT/LDRSBT/LDRSHT (P=0, W=1)."""
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
        offset = c.reg(rm) & _M32
    base = _a32_base(rn, c)
    if rn == PC:
        base &= ~3                       # literal forms use Align(PC, 4)
    offset_addr = (base + offset if u else base - offset) & _M32
    addr = offset_addr if p else base
    wb = offset_addr if (not p or w) else None
    if size == 8:                        # LDRD/STRD: a word alignment check, always
        return DataAccess(addr, write, 8, rt, writeback=wb, align=4, elem=4)
    return DataAccess(addr, write, size, rt, sign_extend=signed, writeback=wb,
                      unprivileged=bool(not p and w), elem=size)


def _a32_exclusive(insn: int, c: _Ctx) -> DataAccess | None:
    """LDREX/STREX and the B/H/D forms: always aligned to their size."""
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
    return DataAccess(c.reg(rn) & _M32, not load, size, rt, align=size, elem=size)


def _a32_swp(insn: int, c: _Ctx) -> DataAccess | None:
    """SWP/SWPB: load, then store, at [Rn]."""
    rn, rt, rt2 = (insn >> 16) & 0xF, (insn >> 12) & 0xF, insn & 0xF
    if PC in (rn, rt, rt2) or rn in (rt, rt2):
        return None                      # UNPREDICTABLE
    size = 1 if insn & (1 << 22) else 4
    return DataAccess(c.reg(rn) & _M32, True, size, rt, swap=True, align=size, elem=size)


def _block(base: int, n: int, inc: bool, before: bool) -> tuple[int, int]:
    """(lowest address, base after) of an n-word block transfer."""
    if inc:
        return (base + 4 if before else base) & _M32, (base + 4 * n) & _M32
    return (base - 4 * n if before else base - 4 * n + 4) & _M32, (base - 4 * n) & _M32


def _a32_block(insn: int, c: _Ctx) -> DataAccess | None:
    """LDM/STM in all four addressing modes, the user-bank (^) forms included."""
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
    low, after = _block(c.reg(rn) & _M32, n, bool(u), bool(p))
    # The user registers of `ldm ^`/`stm ^` are still moved with the current
    # mode's privilege: only the register bank changes.
    return DataAccess(low, not load, 4 * n, _lowest(reglist),
                      writeback=after if w else None, align=4, elem=4)


def _srs_rfe(c: _Ctx, rn_value: int | None, mode: int, load: bool, inc: bool, before: bool,
             w: bool) -> DataAccess | None:
    """SRS (store LR and SPSR to `mode`'s stack) or RFE (load PC and CPSR from [Rn])."""
    if rn_value is None:                 # SRS: SP of the target mode
        if c.mode is not None and mode == c.mode:
            rn_value = c.reg(13)
        elif c.banked_sp is not None:
            rn_value = c.banked_sp(mode)
        else:
            return None
    low, after = _block(rn_value & _M32, 2, inc, before)
    return DataAccess(low, not load, 8, 15 if load else 14,
                      writeback=after if w else None, align=4, elem=4)


def _a32_srs(insn: int, c: _Ctx) -> DataAccess | None:
    p, u, w = (insn >> 24) & 1, (insn >> 23) & 1, (insn >> 21) & 1
    return _srs_rfe(c, None, insn & 0x1F, False, bool(u), bool(p), bool(w))


def _a32_rfe(insn: int, c: _Ctx) -> DataAccess | None:
    p, u, w = (insn >> 24) & 1, (insn >> 23) & 1, (insn >> 21) & 1
    rn = (insn >> 16) & 0xF
    if rn == PC:
        return None
    return _srs_rfe(c, c.reg(rn), 0, True, bool(u), bool(p), bool(w))


def _vfp_transfer(insn: int, c: _Ctx, pc_value: int) -> DataAccess | None:
    """VLDR/VSTR/VLDM/VSTM/VPUSH/VPOP; same layout in A32 and T32; word aligned always.

    pc_value is what reading the PC yields in the current state.
    """
    p, u, d, w, load = ((insn >> s) & 1 for s in (24, 23, 22, 21, 20))
    rn = (insn >> 16) & 0xF
    vd = (insn >> 12) & 0xF
    double = bool(insn & (1 << 8))
    imm8 = insn & 0xFF
    rt = (d << 4) | vd if double else (vd << 1) | d
    base = (pc_value & ~3) & _M32 if rn == PC else c.reg(rn) & _M32
    if p and not w:                                        # VLDR / VSTR
        addr = (base + imm8 * 4 if u else base - imm8 * 4) & _M32
        return DataAccess(addr, not load, 8 if double else 4, rt, align=4, elem=4)
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
        return DataAccess(base, not load, size, rt, align=4, elem=4,
                          writeback=((base + span) & _M32) if w else None)
    low = (base - span) & _M32                             # decrement before
    return DataAccess(low, not load, size, rt, writeback=low, align=4, elem=4)


def _a32_vfp(insn: int, c: _Ctx) -> DataAccess | None:
    return _vfp_transfer(insn, c, c.pc + 8)


# VLDn/VSTn (multiple structures): type field -> (n, D registers transferred).
_NEON_MULTI = {
    0b0111: (1, 1), 0b1010: (1, 2), 0b0110: (1, 3), 0b0010: (1, 4),
    0b1000: (2, 2), 0b1001: (2, 2), 0b0011: (2, 4),
    0b0100: (3, 3), 0b0101: (3, 3),
    0b0000: (4, 4), 0b0001: (4, 4),
}


def _neon_multi(insn: int) -> tuple[int, int, int] | None:
    """(bytes, required alignment, element size) of VLDn/VSTn multiple structures."""
    spec = _NEON_MULTI.get((insn >> 8) & 0xF)
    if spec is None:
        return None
    n, dregs = spec
    size, align = (insn >> 6) & 3, (insn >> 4) & 3
    if n == 1 and ((dregs in (1, 3) and align & 2) or (dregs == 2 and align == 3)):
        return None                                        # UNDEFINED
    if n > 1 and size == 3:
        return None
    if (n == 2 and dregs == 2 and align == 3) or (n == 3 and align & 2):
        return None
    return 8 * dregs, (4 << align) if align else 1, 1 << size


def _neon_lane(insn: int, load: bool) -> tuple[int, int, int] | None:
    """(bytes, required alignment, element size) of VLDn/VSTn to one lane or all lanes."""
    n = ((insn >> 8) & 3) + 1
    size = (insn >> 10) & 3
    if size == 3:                                          # to all lanes: loads only
        if not load:
            return None
        sz, a = (insn >> 6) & 3, (insn >> 4) & 1
        if n == 4 and sz == 3:
            return (16, 16, 4) if a else None              # 4 x 32-bit, :128
        ebytes = 1 << sz
        if sz == 3 or (n == 1 and sz == 0 and a) or (n == 3 and a):
            return None
        align = {1: ebytes, 2: 2 * ebytes, 3: 1, 4: 8 if sz == 2 else 4 * ebytes}[n]
        return n * ebytes, align if a else 1, ebytes
    ebytes, ia = 1 << size, (insn >> 4) & 0xF
    if n == 1:
        if (size == 0 and ia & 1) or (size == 1 and ia & 2) or \
                (size == 2 and (ia & 4 or ia & 3 in (1, 2))):
            return None
        align = 1 if not ia & 1 else ebytes
    elif n == 2:
        if size == 2 and ia & 2:
            return None
        align = 2 * ebytes if ia & 1 else 1
    elif n == 3:
        if (size < 2 and ia & 1) or (size == 2 and ia & 3):
            return None
        align = 1
    else:
        if size == 2 and ia & 3 == 3:
            return None
        if size == 2:
            align = (4 << (ia & 3)) if ia & 3 else 1       # :64 or :128
        else:
            align = 4 * ebytes if ia & 1 else 1
    return n * ebytes, align, ebytes


def _neon(insn: int, c: _Ctx) -> DataAccess | None:
    """VLD1-4/VST1-4, all forms; the low 24 bits are the same in A32 and T32."""
    load = bool(insn & (1 << 21))
    rn, rm = (insn >> 16) & 0xF, insn & 0xF
    if rn == PC:
        return None                                        # UNPREDICTABLE
    shape = _neon_lane(insn, load) if insn & (1 << 23) else _neon_multi(insn)
    if shape is None:
        return None
    length, align, ebytes = shape
    base = c.reg(rn) & _M32
    if rm == PC:
        wb = None                                          # [Rn]
    elif rm == 13:
        wb = (base + length) & _M32                        # [Rn]!
    else:
        wb = (base + c.reg(rm)) & _M32                     # [Rn], Rm
    vd = (((insn >> 22) & 1) << 4) | ((insn >> 12) & 0xF)
    return DataAccess(base, not load, length, vd, writeback=wb, align=align, elem=ebytes)


# MCR p15, 0, Rt, c7, CRm, opc2: the cache maintenance operations by VA that
# translate their address (ICIMVAU, DCIMVAC, DCCMVAC, DCCMVAU, DCCIMVAC).
_CACHE_BY_VA = {(5, 1), (6, 1), (10, 1), (11, 1), (14, 1)}


def _cache_op(insn: int, c: _Ctx) -> DataAccess | None:
    rt, crm, opc2 = (insn >> 12) & 0xF, insn & 0xF, (insn >> 5) & 7
    if (crm, opc2) not in _CACHE_BY_VA or rt == PC:
        return None
    # A fault on a cache maintenance operation reports WnR = 1 (ARM ARM B4.1.52).
    return DataAccess(c.reg(rt) & _M32, True, 1, rt, cache_op=True)


_Handler = Callable[[int, _Ctx], "DataAccess | None"]

# Checked in order: the first (mask, value) the instruction matches decides.
_A32: list[tuple[int, int, _Handler | None]] = [
    (0xFE5FFFE0, 0xF84D0500, _a32_srs),          # SRS{DA,IA,DB,IB} sp{!}, #mode
    (0xFE50FFFF, 0xF8100A00, _a32_rfe),          # RFE{DA,IA,DB,IB} Rn{!}
    (0xFF100000, 0xF4000000, _neon),             # VLDn/VSTn
    (0xF0000000, 0xF0000000, None),              # rest of the unconditional space: PLD, PLI, ...
    (0x0FB00FF0, 0x01000090, _a32_swp),          # SWP/SWPB
    (0x0F8000F0, 0x01800090, _a32_exclusive),    # LDREX/STREX{B,H,D}
    (0x0E0000F0, 0x000000B0, _a32_extra),        # LDRH/STRH{T}
    (0x0E0000D0, 0x000000D0, _a32_extra),        # LDRSB/LDRSH{T}, LDRD/STRD
    (0x0C000000, 0x04000000, _a32_single),       # LDR/STR{B}{T}
    (0x0E000000, 0x08000000, _a32_block),        # LDM/STM, PUSH/POP
    (0x0E000E00, 0x0C000A00, _a32_vfp),          # VLDR/VSTR/VLDM/VSTM (cp10/11)
    (0x0FFF0F10, 0x0E070F10, _cache_op),         # MCR p15, 0, Rt, c7, ...
]


# --------------------------------------------------------------------------
# T32, 16-bit encodings
# --------------------------------------------------------------------------

def _t16_literal(hw: int, c: _Ctx) -> DataAccess | None:
    addr = (((c.pc + 4) & ~3) + (hw & 0xFF) * 4) & _M32
    return DataAccess(addr, False, 4, (hw >> 8) & 7, elem=4)


_T16_REG = [(4, True, False), (2, True, False), (1, True, False), (1, False, True),
            (4, False, False), (2, False, False), (1, False, False), (2, False, True)]


def _t16_reg(hw: int, c: _Ctx) -> DataAccess | None:
    size, write, signed = _T16_REG[(hw >> 9) & 7]
    rm, rn, rt = (hw >> 6) & 7, (hw >> 3) & 7, hw & 7
    return DataAccess((c.reg(rn) + c.reg(rm)) & _M32, write, size, rt, sign_extend=signed,
                      elem=size)


def _t16_imm(hw: int, c: _Ctx) -> DataAccess | None:
    byte, load = bool(hw & (1 << 12)), bool(hw & (1 << 11))
    imm5, rn, rt = (hw >> 6) & 0x1F, (hw >> 3) & 7, hw & 7
    size = 1 if byte else 4
    return DataAccess((c.reg(rn) + imm5 * size) & _M32, not load, size, rt, elem=size)


def _t16_half(hw: int, c: _Ctx) -> DataAccess | None:
    load = bool(hw & (1 << 11))
    imm5, rn, rt = (hw >> 6) & 0x1F, (hw >> 3) & 7, hw & 7
    return DataAccess((c.reg(rn) + imm5 * 2) & _M32, not load, 2, rt, elem=2)


def _t16_sp(hw: int, c: _Ctx) -> DataAccess | None:
    load = bool(hw & (1 << 11))
    return DataAccess((c.reg(13) + (hw & 0xFF) * 4) & _M32, not load, 4, (hw >> 8) & 7, elem=4)


def _t16_pushpop(hw: int, c: _Ctx) -> DataAccess | None:
    pop = bool(hw & (1 << 11))
    reglist = (hw & 0xFF) | ((hw >> 8) & 1) << (15 if pop else 14)
    if reglist == 0:
        return None
    n = _bitcount(reglist)
    sp = c.reg(13) & _M32
    low, after = _block(sp, n, pop, False if pop else True)
    return DataAccess(low, not pop, 4 * n, _lowest(reglist), writeback=after, align=4, elem=4)


def _t16_block(hw: int, c: _Ctx) -> DataAccess | None:
    load = bool(hw & (1 << 11))
    rn, reglist = (hw >> 8) & 7, hw & 0xFF
    if reglist == 0:
        return None
    n = _bitcount(reglist)
    base = c.reg(rn) & _M32
    # LDM writes back unless the base is in the list; STM always does.
    wb = None if load and reglist & (1 << rn) else (base + 4 * n) & _M32
    return DataAccess(base, not load, 4 * n, _lowest(reglist), writeback=wb, align=4, elem=4)


_T16: list[tuple[int, int, _Handler | None]] = [
    (0xF800, 0x4800, _t16_literal),              # LDR Rt, [PC, #imm]
    (0xF000, 0x5000, _t16_reg),                  # LDR*/STR* Rt, [Rn, Rm]
    (0xE000, 0x6000, _t16_imm),                  # LDR/STR{B} Rt, [Rn, #imm]
    (0xF000, 0x8000, _t16_half),                 # LDRH/STRH Rt, [Rn, #imm]
    (0xF000, 0x9000, _t16_sp),                   # LDR/STR Rt, [SP, #imm]
    (0xF600, 0xB400, _t16_pushpop),              # PUSH/POP
    (0xF000, 0xC000, _t16_block),                # LDMIA/STMIA
]


# --------------------------------------------------------------------------
# T32, 32-bit encodings (first halfword in bits [31:16])
# --------------------------------------------------------------------------

def _t32_single(insn: int, c: _Ctx) -> DataAccess | None:
    """LDR{B,H,SB,SH}/STR{B,H} with 32-bit encodings, the T forms included."""
    hw1, hw2 = insn >> 16, insn & 0xFFFF
    signed = bool(hw1 & (1 << 8))
    size_field = (hw1 >> 5) & 3
    load = bool(hw1 & (1 << 4))
    rn, rt = hw1 & 0xF, hw2 >> 12
    if size_field == 3 or (signed and (size_field == 2 or not load)):
        return None
    size = 1 << size_field
    if load and rt == PC and size < 4:
        return None                      # PLD/PLDW/PLI hints
    if rn == PC:                         # literal: loads only
        if not load:
            return None
        base = ((c.pc + 4) & ~3) & _M32
        off = hw2 & 0xFFF
        addr = (base + off if hw1 & (1 << 7) else base - off) & _M32
        return DataAccess(addr, False, size, rt, sign_extend=signed, elem=size)
    base = c.reg(rn) & _M32
    if hw1 & (1 << 7):                   # T2/T3: positive imm12
        return DataAccess((base + (hw2 & 0xFFF)) & _M32, not load, size, rt,
                          sign_extend=signed, elem=size)
    if (hw2 >> 6) & 0x3F == 0:           # register, LSL #imm2
        rm = hw2 & 0xF
        if rm in (13, 15):
            return None
        off = ((c.reg(rm) & _M32) << ((hw2 >> 4) & 3)) & _M32
        return DataAccess((base + off) & _M32, not load, size, rt, sign_extend=signed,
                          elem=size)
    if hw2 & (1 << 11):                  # imm8 with P/U/W; 1110 is the T form
        p, u, w = (hw2 >> 10) & 1, (hw2 >> 9) & 1, (hw2 >> 8) & 1
        if not p and not w:
            return None
        imm8 = hw2 & 0xFF
        offset_addr = (base + imm8 if u else base - imm8) & _M32
        addr = offset_addr if p else base
        return DataAccess(addr, not load, size, rt, sign_extend=signed,
                          writeback=offset_addr if w else None,
                          unprivileged=(hw2 >> 8) & 0xF == 0b1110, elem=size)
    return None


def _t32_dual_excl(insn: int, c: _Ctx) -> DataAccess | None:
    """LDRD/STRD, LDREX/STREX family."""
    hw1, hw2 = insn >> 16, insn & 0xFFFF
    p, u, w, load = (hw1 >> 8) & 1, (hw1 >> 7) & 1, (hw1 >> 5) & 1, (hw1 >> 4) & 1
    rn = hw1 & 0xF
    if p or w:                                             # LDRD / STRD immediate
        rt = hw2 >> 12
        off = (hw2 & 0xFF) * 4
        if rn == PC:
            if not load or w:
                return None
            base = ((c.pc + 4) & ~3) & _M32
        else:
            base = c.reg(rn) & _M32
        offset_addr = (base + off if u else base - off) & _M32
        addr = offset_addr if p else base
        return DataAccess(addr, not load, 8, rt, writeback=offset_addr if w else None,
                          align=4, elem=4)
    if rn == PC:
        return None
    base = c.reg(rn) & _M32
    if not u:                                              # STREX / LDREX (word)
        if load and (hw2 >> 8) & 0xF != 0xF:
            return None
        addr = (base + (hw2 & 0xFF) * 4) & _M32
        return DataAccess(addr, not load, 4, hw2 >> 12, align=4, elem=4)
    op3 = (hw2 >> 4) & 0xF
    size = {0b0100: 1, 0b0101: 2, 0b0111: 8}.get(op3)
    if size is None:
        return None                                        # TBB/TBH and others
    # Should-be-one fields: Rt2 slot for B/H forms, Rd slot for loads.
    if (size < 8 and (hw2 >> 8) & 0xF != 0xF) or (load and hw2 & 0xF != 0xF):
        return None
    return DataAccess(base, not load, size, hw2 >> 12, align=size, elem=size)


def _t32_block(insn: int, c: _Ctx) -> DataAccess | None:
    """LDM/STM (IA and DB), PUSH/POP wide forms."""
    hw1, reglist = insn >> 16, insn & 0xFFFF
    op = (hw1 >> 7) & 3
    w, load = (hw1 >> 5) & 1, (hw1 >> 4) & 1
    rn = hw1 & 0xF
    if op not in (0b01, 0b10) or rn == PC or reglist == 0:
        return None
    n = _bitcount(reglist)
    # T32 lists never hold SP, and cannot store the PC or load both LR and PC.
    # (A single register is the assembler's LDR/STR alias, but the LDM/STM
    # encoding still transfers it as a block.)
    if reglist & (1 << 13) or (not load and reglist & (1 << 15)) \
            or (load and reglist & 0xC000 == 0xC000) or (w and reglist & (1 << rn)):
        return None
    low, after = _block(c.reg(rn) & _M32, n, op == 0b01, op == 0b10)
    return DataAccess(low, not load, 4 * n, _lowest(reglist),
                      writeback=after if w else None, align=4, elem=4)


def _t32_srs(insn: int, c: _Ctx) -> DataAccess | None:
    inc = bool(insn & (1 << 23))                           # SRSIA, else SRSDB
    return _srs_rfe(c, None, insn & 0x1F, False, inc, not inc, bool(insn & (1 << 21)))


def _t32_rfe(insn: int, c: _Ctx) -> DataAccess | None:
    rn = (insn >> 16) & 0xF
    if rn == PC:
        return None
    inc = bool(insn & (1 << 23))                           # RFEIA, else RFEDB
    return _srs_rfe(c, c.reg(rn), 0, True, inc, not inc, bool(insn & (1 << 21)))


def _t32_vfp(insn: int, c: _Ctx) -> DataAccess | None:
    # Coprocessor space with cp10/11: the layout matches A32 with cond=AL.
    return _vfp_transfer(insn, c, c.pc + 4)


_T32: list[tuple[int, int, _Handler | None]] = [
    (0xFFDFFFE0, 0xE80DC000, _t32_srs),          # SRSDB sp{!}, #mode
    (0xFFDFFFE0, 0xE98DC000, _t32_srs),          # SRSIA sp{!}, #mode
    (0xFFD0FFFF, 0xE810C000, _t32_rfe),          # RFEDB Rn{!}
    (0xFFD0FFFF, 0xE990C000, _t32_rfe),          # RFEIA Rn{!}
    (0xFF100000, 0xF9000000, _neon),             # VLDn/VSTn
    (0xFE000000, 0xF8000000, _t32_single),       # LDR*/STR* (and the PLD/PLI hints)
    (0xFE400000, 0xE8400000, _t32_dual_excl),    # LDRD/STRD, LDREX/STREX*
    (0xFE400000, 0xE8000000, _t32_block),        # LDM/STM, PUSH/POP .w
    (0xFE000E00, 0xEC000A00, _t32_vfp),          # VLDR/VSTR/VLDM/VSTM (cp10/11)
    (0xFFFF0F10, 0xEE070F10, _cache_op),         # MCR p15, 0, Rt, c7, ...
]


def _lookup(table: list[tuple[int, int, _Handler | None]], insn: int,
            c: _Ctx) -> DataAccess | None:
    for mask, value, handler in table:
        if insn & mask == value:
            return handler(insn, c) if handler is not None else None
    return None


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def is_t32_wide(hw1: int) -> bool:
    """Whether a Thumb halfword is the first half of a 32-bit encoding."""
    return hw1 >> 11 in (0b11101, 0b11110, 0b11111)


def decode_data_abort(insn: int, thumb: bool, reg: RegRead, pc: int, *,
                      carry: bool | None = None, mode: int | None = None,
                      banked_sp: Callable[[int], int] | None = None) -> DataAccess | None:
    """Work out the data access made by the load/store `insn` at address `pc`.

    reg(n) reads r0-r14 of the faulting mode.  A 32-bit Thumb instruction is
    passed as (first_halfword << 16) | second_halfword.  carry is CPSR.C, needed
    only for an RRX-shifted register offset; mode (CPSR.M) and banked_sp(mode)
    only for an SRS that stores to another mode's stack.  Returns None for
    anything that is not a decodable load/store.
    """
    c = _Ctx(reg, pc & _M32, carry, mode, banked_sp)
    if not thumb:
        return _lookup(_A32, insn & _M32, c)
    hw1, hw2 = (insn >> 16) & 0xFFFF, insn & 0xFFFF
    if hw1 == 0:
        if is_t32_wide(hw2):
            return None                   # first half of a 32-bit encoding alone
        return _lookup(_T16, hw2, c)
    if not is_t32_wide(hw1):
        return None
    return _lookup(_T32, insn & _M32, c)
