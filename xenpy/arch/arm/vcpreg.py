"""The CP15 operations the hypervisor traps (Xen's arch/arm/vcpreg.c), found at translation time.

Unicorn has no hook for arm32's MCR/MRC/MRRC/MCRR. So when Unicorn translates a new block
(UC_HOOK_EDGE_GENERATED, translation time only), the block is scanned for the coprocessor
instructions a handler is registered for (the generic timer's writes, vtimer.py; cache
maintenance, p2m.py); each one found gets a code hook on exactly that address and the block is
translated again before it runs. Nothing is hooked per instruction elsewhere. A hook applies to
every block translated at its address from then on, whatever the code there is by then, so it
acts on the instruction it fetches when it runs (through the walk cache), not the one scanned.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_CODE, UC_HOOK_EDGE_GENERATED, UcError

if TYPE_CHECKING:
    from xenpy.arch.arm.vcpu import ArmVcpu

# (name, Rt, Rt2 or None, cond) of an instruction a decoder recognises.
Decoded = tuple[str, int, "int | None", int]
Decoder = Callable[[int, bool], "Decoded | None"]
# A handler gets the decoded instruction and its address, only if its condition passes.
Handler = Callable[[Decoded, int], None]


def insn_cond(insn: int, thumb: bool) -> int | None:
    """The condition of a coprocessor move: an A32 word's own (None for the unconditional
    space), or always for T32 (hw1 << 16 | hw2, which must be in the 0xE... coprocessor space)."""
    if thumb:
        return 0xE if insn >> 28 == 0xE else None
    return None if insn >> 28 == 0xF else insn >> 28


def decode_mcr(insn: int, thumb: bool, crn: int,
               regs: dict[tuple[int, int, int], str]) -> Decoded | None:
    """An MCR p15 to CRn `crn` whose (opc1, CRm, opc2) names one of `regs`. A32 words carry their
    condition; T32's MCR (hw1 << 16 | hw2) has the same fields and runs unconditionally."""
    cond = insn_cond(insn, thumb)
    if cond is None or insn & 0x0F100F10 != 0x0E000F10 or (insn >> 16) & 0xF != crn:
        return None
    name = regs.get(((insn >> 21) & 7, insn & 0xF, (insn >> 5) & 7))
    return (name, (insn >> 12) & 0xF, None, cond) if name else None


def cond_passed(cond: int, cpsr: int) -> bool:
    n, z, c, v = (cpsr >> 31) & 1, (cpsr >> 30) & 1, (cpsr >> 29) & 1, (cpsr >> 28) & 1
    base = cond >> 1
    r = (z, c, n, v, c and not z, n == v, n == v and not z, True)[base]
    return bool(r) != bool(cond & 1 and cond != 0xF)


class Cp15Traps:
    """One vCPU's trapped coprocessor instructions: the decoders, and the addresses hooked."""

    def __init__(self, arch: "ArmVcpu") -> None:
        self.arch = arch
        self._traps: list[tuple[Decoder, Handler]] = []
        # address -> (instruction, Thumb, decoded, handler) as last seen there
        self._hooked: dict[int, tuple[int, bool, Decoded | None, Handler | None]] = {}
        self._entries: set[int] = set()      # block starts scanned by scan_entry
        self._hooks = [arch.uc.hook_add(UC_HOOK_EDGE_GENERATED, self._on_new_block)]
        arch.on_entry = self.scan_entry

    def add(self, decoder: Decoder, handler: Handler) -> None:
        """Trap what `decoder` recognises from now on (blocks translated before are not
        rescanned: register before the vCPU first runs)."""
        self._traps.append((decoder, handler))

    def scan_entry(self, pc: int) -> None:
        """Before emu_start: the first block runs without an edge into it, so Unicorn reports
        no new edge for it; have it translated and scan it once."""
        if pc in self._entries or not self._traps:
            return
        if self.arch.read_virt(pc & ~1, 2) is None:
            return          # nothing to translate there: the fetch faults when it runs
        try:
            start, _icount, size = self.arch.uc.ctl_request_cache(pc)
        except UcError:
            return
        self._entries.add(pc)
        self._scan(self.arch.uc, start & ~1, size)

    def _on_new_block(self, uc, cur_tb, _prev_tb, _ud) -> None:
        self._scan(uc, cur_tb.pc, cur_tb.size)

    def _scan(self, uc, pc: int, size: int) -> None:
        if not size or not self._traps:
            return
        thumb = bool(self.arch.cpsr & (1 << 5))
        code = self.arch.read_virt(pc, size + (2 if thumb else 0))
        if code is None:
            return
        found = []
        if thumb:
            hws = struct.unpack(f"<{len(code) // 2}H", code[: len(code) // 2 * 2])
            for i in range(len(hws) - 1):
                if hws[i] >> 8 in (0xEE, 0xEC):
                    insn = hws[i] << 16 | hws[i + 1]
                    found += [(pc + 2 * i, insn, t) for t in self._traps if t[0](insn, True)]
        else:
            for i, word in enumerate(struct.unpack(f"<{size // 4}I", code[: size // 4 * 4])):
                found += [(pc + 4 * i, word, t) for t in self._traps if t[0](word, False)]
        new = [(a, insn, t) for a, insn, t in found if a not in self._hooked]
        if not new:
            return
        for addr, insn, (decoder, handler) in new:
            self._hooked[addr] = (insn, thumb, decoder(insn, thumb), handler)
            self._hooks.append(uc.hook_add(UC_HOOK_CODE, self._on_insn, begin=addr, end=addr))
        # The block was translated without the hooks: drop it and stop before it runs (the
        # block's entry check sees the stop), so it is translated again with them.
        uc.ctl_remove_cache(pc, pc + size)
        self.arch.retranslate()

    def _on_insn(self, uc, addr: int, _size: int, _data: object) -> None:
        """The hook stays on its address for every block translated there later, whatever code
        is there by then (the page rewritten, remapped, another process's): act on the
        instruction fetched now, trapped or not, never on the one scanned."""
        cpsr = self.arch.cpsr
        thumb = bool(cpsr & (1 << 5))
        insn = self.arch.fetch_insn(addr, thumb)
        seen = self._hooked[addr]
        if (insn, thumb) != seen[:2]:
            if insn is None:
                return                  # the fetch faults: Unicorn takes the abort
            match = [(dec, h) for d, h in self._traps if (dec := d(insn, thumb))]
            seen = self._hooked[addr] = (insn, thumb, *(match[0] if match else (None, None)))
        _insn, _thumb, dec, handler = seen
        if dec is None:
            return                      # no longer a trapped instruction: it runs as it is
        cond = dec[3]
        if cond != 0xE and not cond_passed(cond, cpsr):
            return
        handler(dec, addr)
