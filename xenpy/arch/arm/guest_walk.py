"""Software walk of an ARMv7 guest's stage-1 translation tables (Xen's guest_walk.c).

Every pointer a guest hands to a hypercall is a guest virtual address.  With the
guest's MMU on, the hypervisor translates it through the guest's own tables -- the
short-descriptor format (ARM ARM B3.5) or, when TTBCR.EAE=1, the LPAE
long-descriptor format (B3.6) -- into an IPA, which the caller then checks against
the domain's memory.  The tables live in guest memory and are untrusted: any bit
pattern must end in an IPA or a GuestFault, never a host exception.

Unlike Xen, which only answers yes/no, the walk also checks permissions for the
access and reports faults with the FSR value the guest's own MMU would have
produced, so the arch layer can inject the same abort a real CPU would take.
data_abort() and prefetch_abort() do that for an abort Unicorn raised without
saying where or why: the access decoded from the instruction, walked with its
own privilege.  (TEX remap, SCTLR.TRE, changes memory types only: no fault
depends on it, so the walk ignores TEX, C and B.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from xenpy.arch.arm import decode

ReadPhys = Callable[[int, int], "bytes | None"]

# SCTLR bits.
SCTLR_M = 1 << 0
SCTLR_A = 1 << 1          # alignment checking for every data access
SCTLR_AFE = 1 << 29       # access flag enable: AP[0] becomes the Access flag
SCTLR_WXN = 1 << 19       # writable implies execute-never
SCTLR_UWXN = 1 << 20      # PL0-writable implies PL1 execute-never
SCTLR_EE = 1 << 25        # big-endian translation table walks

# TTBCR bits.
TTBCR_N_MASK = 0x7
TTBCR_PD0 = 1 << 4
TTBCR_PD1 = 1 << 5
TTBCR_EPD0 = 1 << 7
TTBCR_EPD1 = 1 << 23
TTBCR_EAE = 1 << 31

# Short-descriptor fault status codes, FS[4:0], by lookup level (1 = section, 2 = page).
_FS_TRANSLATION = {1: 0b00101, 2: 0b00111}
_FS_ACCESS = {1: 0b00011, 2: 0b00110}
_FS_DOMAIN = {1: 0b01001, 2: 0b01011}
_FS_PERMISSION = {1: 0b01101, 2: 0b01111}
_FS_EXT_WALK = {1: 0b01100, 2: 0b01110}

# Long-descriptor STATUS[5:2]; STATUS[1:0] is the lookup level.
_LD_STATUS = {
    "translation": 0b0001,
    "access": 0b0010,
    "permission": 0b0011,
    "external": 0b0101,
}

# Alignment and debug-event status: short FS[4:0] and long STATUS[5:0].
FS_ALIGNMENT, LD_ALIGNMENT = 0b00001, 0b100001
FS_DEBUG, LD_DEBUG = 0b00010, 0b100010

FSR_LPAE = 1 << 9
FSR_WNR = 1 << 11
FSR_CM = 1 << 13          # the fault came from a cache maintenance operation

PSR_MODE_MASK, PSR_MODE_USR = 0x1F, 0x10

# ARMv7 LPAE output addresses are 40 bits; descriptor bits [47:40] are
# should-be-zero and ignored, as the CPU model our guests run on ignores them.
_PA_MASK_40 = (1 << 40) - 1


class Stage1Regs(NamedTuple):
    """The guest's stage-1 controls, as its vCPU has them loaded (a tuple: built at every
    trap, and a key of the walks remembered)."""

    sctlr: int
    ttbcr: int
    ttbr0: int    # 64-bit: LPAE format (BADDR[39:x], ASID[55:48]) when TTBCR.EAE=1
    ttbr1: int
    dacr: int


class GuestFault(Exception):
    """A stage-1 fault, described as the guest's MMU would report it.

    fsr is ready for the guest's DFSR (data access: WnR set for writes) or IFSR
    (exec_=True: no WnR, no domain field): short-descriptor encoding when
    TTBCR.EAE=0, long-descriptor (LPAE bit set) when EAE=1.
    """

    def __init__(self, kind: str, level: int, va: int, write: bool, fsr: int,
                 exec_: bool = False) -> None:
        self.kind = kind
        self.level = level
        self.va = va
        self.write = write
        self.exec_ = exec_
        self.fsr = fsr
        super().__init__(f"{kind} fault (level {level}) at VA {va:#010x}"
                         f" {'exec' if exec_ else 'write' if write else 'read'},"
                         f" FSR {fsr:#x}")


@dataclass(frozen=True)
class _Access:
    va: int
    write: bool
    exec_: bool
    privileged: bool
    maint: bool = False       # cache maintenance by VA: translated, never permission-checked


@dataclass(frozen=True)
class _Leaf:
    """What a successful walk found before permissions are applied."""

    ipa: int
    size: int                 # bytes mapped by the leaf (4K .. 1G)
    pl1_r: bool
    pl1_w: bool
    pl0_r: bool
    pl0_w: bool
    xn: bool
    pxn: bool


def _short_fault(acc: _Access, kind: str, level: int, domain: int = 0) -> GuestFault:
    table = {"translation": _FS_TRANSLATION, "access": _FS_ACCESS,
             "domain": _FS_DOMAIN, "permission": _FS_PERMISSION,
             "external": _FS_EXT_WALK}[kind]
    fs = table[level]
    fsr = (fs & 0xF) | ((fs >> 4) << 10)
    if acc.exec_:
        write = False          # IFSR has neither WnR nor a Domain field
    else:
        write = acc.write
        fsr |= (domain & 0xF) << 4
        if write:
            fsr |= FSR_WNR
    return GuestFault(kind, level, acc.va, write, fsr, acc.exec_)


def _long_fault(acc: _Access, kind: str, level: int) -> GuestFault:
    fsr = FSR_LPAE | (_LD_STATUS[kind] << 2) | (level & 3)
    write = acc.write and not acc.exec_
    if write:
        fsr |= FSR_WNR
    return GuestFault(kind, level, acc.va, write, fsr, acc.exec_)


def _read_desc(read_phys: ReadPhys, pa: int, size: int, big_endian: bool) -> int | None:
    data = read_phys(pa, size)
    if data is None or len(data) != size:
        return None
    return int.from_bytes(data, "big" if big_endian else "little")


# AP[2:0] decode for the full (AFE=0) model: (PL1 read, PL1 write, PL0 read, PL0 write).
# 0b100 is reserved; treating it as no access keeps an odd guest from gaining rights.
_AP_FULL = {
    0b000: (False, False, False, False),
    0b001: (True, True, False, False),
    0b010: (True, True, True, False),
    0b011: (True, True, True, True),
    0b100: (False, False, False, False),
    0b101: (True, False, False, False),
    0b110: (True, False, True, False),
    0b111: (True, False, True, False),
}

# AP[2:1] decode of the simplified model (SCTLR.AFE=1 and all LPAE descriptors).
_AP_SIMPLE = {
    0b00: (True, True, False, False),
    0b01: (True, True, True, True),
    0b10: (True, False, False, False),
    0b11: (True, False, True, False),
}


def _check_permissions(regs: Stage1Regs, leaf: _Leaf, acc: _Access) -> bool:
    """True when the leaf allows the access."""
    if acc.maint:
        return True
    if acc.privileged:
        can_r, can_w = leaf.pl1_r, leaf.pl1_w
    else:
        can_r, can_w = leaf.pl0_r, leaf.pl0_w
    if acc.exec_:
        xn = leaf.xn or (acc.privileged and leaf.pxn)
        if regs.sctlr & SCTLR_WXN and can_w:
            xn = True
        if acc.privileged and regs.sctlr & SCTLR_UWXN and leaf.pl0_w:
            xn = True
        # An instruction fetch also needs read permission at its PL.
        return can_r and not xn
    return can_w if acc.write else can_r


# --------------------------------------------------------------------------
# Short-descriptor format
# --------------------------------------------------------------------------

def _walk_short(regs: Stage1Regs, acc: _Access, read_phys: ReadPhys) -> _Leaf:
    va = acc.va
    be = bool(regs.sctlr & SCTLR_EE)
    n = regs.ttbcr & TTBCR_N_MASK
    if n == 0 or (va >> (32 - n)) == 0:
        if regs.ttbcr & TTBCR_PD0:
            raise _short_fault(acc, "translation", 1)
        # TTBR0's table shrinks with N: base is TTBR0[31:14-N], index VA[31-N:20].
        base = regs.ttbr0 & (0xFFFFFFFF << (14 - n)) & 0xFFFFFFFF
        index = (va & (0xFFFFFFFF >> n)) >> 20
    else:
        if regs.ttbcr & TTBCR_PD1:
            raise _short_fault(acc, "translation", 1)
        # TTBR1 always covers a full 16KB table indexed by VA[31:20].
        base = regs.ttbr1 & 0xFFFFC000
        index = va >> 20

    l1 = _read_desc(read_phys, base | (index << 2), 4, be)
    if l1 is None:
        raise _short_fault(acc, "external", 1)
    kind = l1 & 3
    if kind == 0:
        raise _short_fault(acc, "translation", 1)

    afe = bool(regs.sctlr & SCTLR_AFE)
    if kind == 1:
        # Page table: the domain comes from L1, but (unlike a section) it is
        # only checked once a valid L2 descriptor has been fetched.
        domain = (l1 >> 5) & 0xF
        pxn = bool(l1 & (1 << 2))
        l2_addr = (l1 & 0xFFFFFC00) | (((va >> 12) & 0xFF) << 2)
        l2 = _read_desc(read_phys, l2_addr, 4, be)
        if l2 is None:
            raise _short_fault(acc, "external", 2, domain)
        if l2 & 3 == 0:
            raise _short_fault(acc, "translation", 2, domain)
        if l2 & 2:          # small page, 4KB; bit 0 is XN
            ipa = (l2 & 0xFFFFF000) | (va & 0xFFF)
            size = 1 << 12
            xn = bool(l2 & 1)
        else:               # large page, 64KB; bit 15 is XN
            ipa = (l2 & 0xFFFF0000) | (va & 0xFFFF)
            size = 1 << 16
            xn = bool(l2 & (1 << 15))
        ap = ((l2 >> 4) & 3) | (((l2 >> 9) & 1) << 2)
        level = 2
    else:
        # Section (bit 18 clear) or supersection; descriptor type 0b11 carries PXN.
        pxn = kind == 3
        xn = bool(l1 & (1 << 4))
        ap = ((l1 >> 10) & 3) | (((l1 >> 15) & 1) << 2)
        level = 1
        if l1 & (1 << 18):
            # Supersection: 16MB, always domain 0.  PA[35:32] sit in bits [23:20]
            # and PA[39:36] in bits [8:5], giving a 40-bit output address.
            domain = 0
            ipa = ((l1 & 0xFF000000) | (va & 0x00FFFFFF)
                   | (((l1 >> 20) & 0xF) << 32) | (((l1 >> 5) & 0xF) << 36))
            size = 1 << 24
        else:
            domain = (l1 >> 5) & 0xF
            ipa = (l1 & 0xFFF00000) | (va & 0x000FFFFF)
            size = 1 << 20

    # With AFE, AP[0] is the Access flag.  It is checked as part of the walk,
    # so its fault outranks domain and permission faults, Manager domains
    # included.  (QEMU, hence Unicorn, checks the domain first; we follow the
    # architecture's order, as ARM's own gem5 model does.)
    if afe and not ap & 1:
        raise _short_fault(acc, "access", level, domain)

    dom = (regs.dacr >> (2 * domain)) & 3
    if dom in (0b00, 0b10):          # no access; 0b10 is reserved: treat it the same
        raise _short_fault(acc, "domain", level, domain)
    if dom == 0b11:
        # Manager: neither AP nor XN/PXN is checked.
        return _Leaf(ipa, size, True, True, True, True, False, False)

    if afe:
        perms = _AP_SIMPLE[ap >> 1]
    else:
        perms = _AP_FULL[ap]
    leaf = _Leaf(ipa, size, *perms, xn=xn, pxn=pxn)
    if not _check_permissions(regs, leaf, acc):
        raise _short_fault(acc, "permission", level, domain)
    return leaf


# --------------------------------------------------------------------------
# Long-descriptor (LPAE) format
# --------------------------------------------------------------------------

_LEVEL_SHIFT = {1: 30, 2: 21, 3: 12}


def _walk_long(regs: Stage1Regs, acc: _Access, read_phys: ReadPhys) -> _Leaf:
    va = acc.va
    be = bool(regs.sctlr & SCTLR_EE)
    t0sz = regs.ttbcr & 7
    t1sz = (regs.ttbcr >> 16) & 7

    # TTBR0 covers VA[31:32-T0SZ] == 0 and TTBR1 VA[31:32-T1SZ] all ones; a zero
    # size field means "everything the other region does not cover"; a VA in
    # neither region faults at level 1.
    in0 = t0sz == 0 or va < (1 << (32 - t0sz))
    in1 = t1sz != 0 and va >= (1 << 32) - (1 << (32 - t1sz))
    if t0sz == 0 and t1sz != 0:
        in0 = not in1
    if t1sz == 0 and t0sz != 0:
        in1 = not in0
    if in0:
        tsz, ttbr, disabled = t0sz, regs.ttbr0, regs.ttbcr & TTBCR_EPD0
    elif in1:
        tsz, ttbr, disabled = t1sz, regs.ttbr1, regs.ttbcr & TTBCR_EPD1
    else:
        raise _long_fault(acc, "translation", 1)
    if disabled:
        raise _long_fault(acc, "translation", 1)

    input_bits = 32 - tsz
    level = 1 if tsz <= 1 else 2
    # The first table holds just enough entries for the region: it is indexed
    # by VA[input_bits-1:shift] and aligned to its own size (BADDR[39:x]).
    first_bits = input_bits - _LEVEL_SHIFT[level]
    table = ttbr & _PA_MASK_40 & ~((1 << (first_bits + 3)) - 1)
    va_in = va & ((1 << input_bits) - 1)
    index_bits = first_bits

    # Hierarchical controls from table descriptors: they only ever take rights away.
    ap_table_no_pl0 = False
    ap_table_ro = False
    xn_table = False
    pxn_table = False

    while True:
        shift = _LEVEL_SHIFT[level]
        index = (va_in >> shift) & ((1 << index_bits) - 1)
        desc = _read_desc(read_phys, table + index * 8, 8, be)
        if desc is None:
            raise _long_fault(acc, "external", level)
        if not desc & 1:
            raise _long_fault(acc, "translation", level)
        is_table_or_page = bool(desc & 2)
        if level == 3 and not is_table_or_page:
            # 0b01 at level 3 is reserved and behaves as invalid.
            raise _long_fault(acc, "translation", level)
        if level < 3 and is_table_or_page:
            ap_table_no_pl0 |= bool(desc & (1 << 61))
            ap_table_ro |= bool(desc & (1 << 62))
            pxn_table |= bool(desc & (1 << 59))
            xn_table |= bool(desc & (1 << 60))
            table = desc & _PA_MASK_40 & ~0xFFF
            level += 1
            index_bits = 9
            continue
        break

    size = 1 << shift
    ipa = (desc & _PA_MASK_40 & ~(size - 1)) | (va & (size - 1))
    if not desc & (1 << 10):
        raise _long_fault(acc, "access", level)

    pl1_r, pl1_w, pl0_r, pl0_w = _AP_SIMPLE[(desc >> 6) & 3]
    if ap_table_ro:
        pl1_w = pl0_w = False
    if ap_table_no_pl0:
        pl0_r = pl0_w = False
    leaf = _Leaf(ipa, size, pl1_r, pl1_w, pl0_r, pl0_w,
                 xn=bool(desc & (1 << 54)) or xn_table,
                 pxn=bool(desc & (1 << 53)) or pxn_table)
    if not _check_permissions(regs, leaf, acc):
        raise _long_fault(acc, "permission", level)
    return leaf


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def _walk(regs: Stage1Regs, acc: _Access, read_phys: ReadPhys) -> _Leaf:
    if not 0 <= acc.va <= 0xFFFFFFFF:
        raise ValueError(f"not a 32-bit guest virtual address: {acc.va:#x}")
    if not regs.sctlr & SCTLR_M:
        # MMU off: flat mapping; the caller's domain-memory check still applies.
        return _Leaf(acc.va, 1 << 32, True, True, True, True, False, False)
    if regs.ttbcr & TTBCR_EAE:
        return _walk_long(regs, acc, read_phys)
    return _walk_short(regs, acc, read_phys)


def gva_to_ipa(regs: Stage1Regs, va: int, *, write: bool, exec_: bool = False,
               privileged: bool = True, read_phys: ReadPhys) -> int:
    """Translate guest VA `va` for one access, as the guest's stage-1 MMU would.

    read_phys(ipa, size) reads the guest's own memory (the tables) and returns
    None when the address is not backed; that becomes a synchronous external
    abort on the walk.  Returns the IPA or raises GuestFault.
    """
    return _walk(regs, _Access(va, write, exec_, privileged), read_phys).ipa


class WalkCache:
    """One vCPU's recent walks, each remembered with the descriptors it read (the hypercall
    buffers and trap sites a guest uses again and again).

    A hit reads those descriptors again and must find every one unchanged, so it answers
    exactly what a fresh walk would: the guest may rewrite its tables at any time, and its TLB
    maintenance is not trapped. Re-reading two words costs a fraction of the walk. Faults are
    not remembered.
    """

    MAX = 256

    def __init__(self) -> None:
        self._walks: dict[tuple[object, ...], tuple[int, int, tuple[tuple[int, bytes], ...]]] = {}

    def translate(self, regs: Stage1Regs, va: int, *, write: bool, exec_: bool = False,
                  privileged: bool = True, read_phys: ReadPhys) -> tuple[int, int]:
        """(ipa, size of the mapping) for one access at `va`, as gva_to_ipa walks it."""
        key = (va >> 12, write, exec_, privileged, regs)
        hit = self._walks.get(key)
        if hit is not None:
            base, size, reads = hit
            for pa, data in reads:
                if read_phys(pa, len(data)) != data:
                    break
            else:
                return base | (va & (size - 1)), size
        seen: list[tuple[int, bytes]] = []

        def reading(pa: int, n: int) -> bytes | None:
            data = read_phys(pa, n)
            if data is not None:
                seen.append((pa, bytes(data)))
            return data

        leaf = _walk(regs, _Access(va, write, exec_, privileged), reading)
        if regs.sctlr & SCTLR_M:            # (MMU off: nothing to remember)
            if len(self._walks) >= self.MAX:
                self._walks.clear()
            self._walks[key] = (leaf.ipa & ~(leaf.size - 1), leaf.size, tuple(seen))
        return leaf.ipa, leaf.size


def translate_range(regs: Stage1Regs, va: int, length: int, *, write: bool,
                    read_phys: ReadPhys, privileged: bool = True,
                    cache: WalkCache | None = None) -> list[tuple[int, int]]:
    """Translate a guest buffer into (ipa, length) chunks.

    The buffer is walked one mapping at a time (a 4K page, a 1M section, ...);
    neighbouring chunks that happen to be contiguous in IPA space are merged.
    Like the guest's own address arithmetic, the buffer wraps at 4GB.
    """
    if length < 0:
        raise ValueError("negative length")
    chunks: list[tuple[int, int]] = []
    remaining = length
    cur = va
    while remaining:
        if cache is not None:
            ipa, size = cache.translate(regs, cur, write=write, privileged=privileged,
                                        read_phys=read_phys)
        else:
            leaf = _walk(regs, _Access(cur, write, False, privileged), read_phys)
            ipa, size = leaf.ipa, leaf.size
        step = min(remaining, size - (cur & (size - 1)))
        if chunks and chunks[-1][0] + chunks[-1][1] == ipa:
            chunks[-1] = (chunks[-1][0], chunks[-1][1] + step)
        else:
            chunks.append((ipa, step))
        remaining -= step
        cur = (cur + step) & 0xFFFFFFFF
    return chunks


# --------------------------------------------------------------------------
# Fault reporting: what the guest's MMU put in DFAR/DFSR or IFAR/IFSR
# --------------------------------------------------------------------------

def _status(regs: Stage1Regs, short: int, long: int) -> int:
    """A status without a walk level (alignment, debug) in the guest's FSR format."""
    if regs.ttbcr & TTBCR_EAE:
        return FSR_LPAE | long
    return (short & 0xF) | ((short >> 4) << 10)


def debug_fsr(regs: Stage1Regs) -> int:
    """The debug-event status Xen injects for an abort it raises itself."""
    return _status(regs, FS_DEBUG, LD_DEBUG)


def privileged(cpsr: int) -> bool:
    """Whether code running with this CPSR makes PL1 accesses (arm32 has no PAN)."""
    return cpsr & PSR_MODE_MASK != PSR_MODE_USR


def _first_fault(regs: Stage1Regs, va: int, length: int, acc: _Access,
                 read_phys: ReadPhys) -> GuestFault | None:
    """The fault of the lowest address of [va, va + length) the walk refuses, if any.

    Each mapping is walked once (its first byte in the range); the fault is
    reported at that byte, which is where the first faulting element (or the
    part of an element on the faulting page) starts.
    """
    cur, remaining = va & 0xFFFFFFFF, length
    while remaining > 0:
        try:
            leaf = _walk(regs, _Access(cur, acc.write, acc.exec_, acc.privileged, acc.maint),
                         read_phys)
        except GuestFault as f:
            return f
        step = min(remaining, leaf.size - (cur & (leaf.size - 1)))
        remaining -= step
        cur = (cur + step) & 0xFFFFFFFF
    return None


def access_fault(regs: Stage1Regs, acc: decode.DataAccess, cpsr: int,
                 read_phys: ReadPhys) -> tuple[int, int, bool] | None:
    """(DFAR, DFSR, WnR) the guest's MMU reports for the decoded access, None if it allows it.

    In priority order (ARM ARM B3.12): an alignment fault, then, for each
    access in architectural order, the first translation-table fault.  The
    privilege is the one of the faulting access: PL0 in User mode and for the
    T forms, PL1 otherwise; a cache maintenance operation is translated with
    WnR = 1 and CM = 1 but never permission-checked (with the LPAE extension,
    which the Cortex-A7 has, ICIMVAU reports its fault this way too, not with
    the old short-descriptor "instruction cache maintenance" status 0b00100).
    """
    va = acc.va & 0xFFFFFFFF
    need = max(acc.align, acc.elem) if regs.sctlr & SCTLR_A else acc.align
    pl1 = privileged(cpsr) and not acc.unprivileged
    cm = FSR_CM if acc.cache_op else 0
    if not acc.cache_op and va & (need - 1):
        write = acc.write and not acc.swap          # SWP's read is its first access
        fsr = _status(regs, FS_ALIGNMENT, LD_ALIGNMENT) | (FSR_WNR if write else 0)
        return va, fsr, write
    passes = [False, True] if acc.swap else [acc.write]
    for write in passes:
        f = _first_fault(regs, va, acc.size, _Access(va, write, False, pl1, acc.cache_op),
                         read_phys)
        if f is not None:
            return f.va, f.fsr | cm, f.write
    return None


def data_abort(regs: Stage1Regs, insn: int | None, thumb: bool, reg_read: decode.RegRead,
               pc: int, cpsr: int, read_phys: ReadPhys, *,
               banked_sp: Callable[[int], int] | None = None) -> tuple[int, int, bool] | None:
    """(DFAR, DFSR, WnR) for a data abort taken by the instruction `insn` at `pc`.

    None when the instruction is not a load/store we decode.  When the walk
    finds nothing wrong (the abort was not a stage-1 fault) the access address
    is reported with the debug-event status Xen uses for its own aborts.
    """
    if insn is None:
        return None
    acc = decode.decode_data_abort(insn, thumb, reg_read, pc, carry=bool(cpsr & 1 << 29),
                                   mode=cpsr & PSR_MODE_MASK, banked_sp=banked_sp)
    if acc is None:
        return None
    found = access_fault(regs, acc, cpsr, read_phys)
    if found is not None:
        return found
    wnr = acc.write and not acc.swap
    return acc.va, debug_fsr(regs) | (FSR_WNR if wnr else 0), wnr


def _fetch_half(regs: Stage1Regs, va: int, pl1: bool, read_phys: ReadPhys,
                size: int) -> tuple[GuestFault | None, int | None]:
    """Fetch `size` bytes at va as the CPU does: (fault, value)."""
    try:
        leaf = _walk(regs, _Access(va, False, True, pl1), read_phys)
    except GuestFault as f:
        return f, None
    raw = read_phys(leaf.ipa, size)
    if raw is None or len(raw) != size:
        return None, None
    return None, int.from_bytes(raw, "little")


def fetch_insn(regs: Stage1Regs, pc: int, thumb: bool, cpsr: int,
               read_phys: ReadPhys) -> int | None:
    """The instruction at pc, fetched with the guest's own privilege (None if it cannot be).

    A 32-bit Thumb instruction is returned as (first halfword << 16) | second.
    """
    pl1 = privileged(cpsr)
    if not thumb:
        return _fetch_half(regs, pc & ~3, pl1, read_phys, 4)[1]
    hw1 = _fetch_half(regs, pc & ~1, pl1, read_phys, 2)[1]
    if hw1 is None or not decode.is_t32_wide(hw1):
        return hw1
    hw2 = _fetch_half(regs, (pc + 2) & 0xFFFFFFFE, pl1, read_phys, 2)[1]
    return None if hw2 is None else (hw1 << 16) | hw2


def prefetch_abort(regs: Stage1Regs, pc: int, thumb: bool, cpsr: int,
                   read_phys: ReadPhys) -> tuple[int, int]:
    """(IFAR, IFSR) for a prefetch abort on the instruction at pc.

    The fetch is walked with execute permission at the current privilege.  A
    32-bit Thumb instruction whose second halfword starts the next page faults
    there when its first halfword could be fetched: IFAR is then pc + 2.
    """
    pl1 = privileged(cpsr)
    pc &= 0xFFFFFFFE if thumb else 0xFFFFFFFC
    f, hw1 = _fetch_half(regs, pc, pl1, read_phys, 2 if thumb else 4)
    if f is not None:
        return pc, f.fsr
    if thumb and pc & 0xFFF == 0xFFE and hw1 is not None and decode.is_t32_wide(hw1):
        f, _ = _fetch_half(regs, pc + 2, pl1, read_phys, 2)
        if f is not None:
            return (pc + 2) & 0xFFFFFFFF, f.fsr
    return pc, debug_fsr(regs)
