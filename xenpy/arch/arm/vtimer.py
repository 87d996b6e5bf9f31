"""The guest's generic timers (Xen's arch/arm/vtimer.c), driven from the hypervisor's clock.

Unicorn 2.1 reads the timer registers but silently drops guest writes to them (its gt_ctl_write,
gt_cval_write and gt_tval_write are compiled out), and arm32 has no MCR hook. So xenpy traps the
writes itself: when Unicorn translates a new block (UC_HOOK_EDGE_GENERATED, translation time only),
the block is scanned for MCR/MCRR to CNTV_* / CNTP_*; each one found gets a code hook on exactly that
address and the block is translated again before it runs. The hook performs the write the guest
asked for. Nothing is hooked per instruction elsewhere.

The hypervisor then knows every deadline: it sets the PPI's level in the vGIC when the vCPU is out
of emu_start (every exit, at the deadline, and when the guest acknowledges or EOIs at its GIC) and
tells the exit control (tbhook) when the next deadline is: a running vCPU stops there by itself
and samples its timers on its own thread; an idle pCPU waits for the deadlines of the vCPUs it
last ran (schedule.py), so a blocked vCPU is woken on time.

Time: QEMU's counter is the host's CLOCK_MONOTONIC at 62.5 MHz (16 ns a tick), so the
hypervisor's clock and the guest's CNTPCT are the same clock. Each domain gets a CNTVOFF equal to
the count at its creation, so its CNTVCT starts near zero, as a domain's virtual time does on Xen.
CNTV_CTL.ISTATUS as the guest reads it is refreshed whenever the hypervisor samples the timer.
On a deterministic board (clock.InstructionClock) the counter reads are trapped the same way
(MRRC of CNTPCT/CNTVCT, MRC of the TVALs) and answered from the instruction clock.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_CODE, UC_HOOK_EDGE_GENERATED, UcError

from xenpy.arch.arm.clock import CNTFRQ as CNTFRQ_HZ, NS_PER_TICK, HostClock
from xenpy.arch.arm.regs import RegBatch
from xenpy.public.arch_arm import GUEST_TIMER_PHYS_NS_PPI, GUEST_TIMER_VIRT_PPI

if TYPE_CHECKING:
    from xenpy.arch.arm.vcpu import ArmVcpu

CTL_ENABLE, CTL_IMASK, CTL_ISTATUS = 1, 2, 4

# Which timer register an MCR (CRn=c14, opc1=0) names, by (CRm, opc2); MCRR (CRm=c14) by opc1.
_MCR_REGS = {(3, 1): "CNTV_CTL", (3, 0): "CNTV_TVAL", (2, 1): "CNTP_CTL", (2, 0): "CNTP_TVAL"}
_MCRR_REGS = {3: "CNTV_CVAL", 2: "CNTP_CVAL"}
_STATE = ("CNTV_CTL", "CNTV_CVAL", "CNTP_CTL", "CNTP_CVAL")


def _cond(insn: int, thumb: bool) -> int | None:
    """The condition of a coprocessor move: an A32 word's own (None for the unconditional
    space), or always for T32 (hw1 << 16 | hw2, which must be in the 0xE... coprocessor space)."""
    if thumb:
        return 0xE if insn >> 28 == 0xE else None
    return None if insn >> 28 == 0xF else insn >> 28


def decode_counter_read(insn: int, thumb: bool) -> tuple[str, int, int | None, int] | None:
    """(register, Rt, Rt2, cond) if `insn` reads the counter or a TVAL (MRRC/MRC), else None."""
    cond = _cond(insn, thumb)
    if cond is None:
        return None
    word = insn
    if word & 0x0FF00F0F == 0x0C500F0E:                          # MRRC p15, opc1, Rt, Rt2, c14
        name = {0: "CNTPCT", 1: "CNTVCT"}.get((word >> 4) & 0xF)
        return (name, (word >> 12) & 0xF, (word >> 16) & 0xF, cond) if name else None
    if word & 0x0FF00F10 == 0x0E100F10 and (word >> 16) & 0xF == 14 and not (word >> 21) & 7:
        name = {(3, 0): "CNTV_TVAL", (2, 0): "CNTP_TVAL"}.get((word & 0xF, (word >> 5) & 7))
        return (name, (word >> 12) & 0xF, None, cond) if name else None
    return None


def decode_timer_write(insn: int, thumb: bool) -> tuple[str, int, int | None, int] | None:
    """(register, Rt, Rt2, cond) if `insn` writes a generic-timer register, else None.

    A32 words carry their condition; T32 MCR/MCRR (hw1 << 16 | hw2) have the same low fields and
    run unconditionally (an IT block around a timer write is not modelled).
    """
    cond = _cond(insn, thumb)
    if cond is None:
        return None
    word = insn
    if word & 0x0FF00F10 == 0x0E000F10 and (word >> 16) & 0xF == 14 and not (word >> 20) & 1:
        if (word >> 21) & 7:                      # opc1 must be 0
            return None
        name = _MCR_REGS.get((word & 0xF, (word >> 5) & 7))
        return (name, (word >> 12) & 0xF, None, cond) if name else None
    if word & 0x0FF00F0F == 0x0C400F0E:
        name = _MCRR_REGS.get((word >> 4) & 0xF)
        return (name, (word >> 12) & 0xF, (word >> 16) & 0xF, cond) if name else None
    return None


def cond_passed(cond: int, cpsr: int) -> bool:
    n, z, c, v = (cpsr >> 31) & 1, (cpsr >> 30) & 1, (cpsr >> 29) & 1, (cpsr >> 28) & 1
    base = cond >> 1
    r = (z, c, n, v, c and not z, n == v, n == v and not z, True)[base]
    return bool(r) != bool(cond & 1 and cond != 0xF)


class VTimer:
    """Both EL1 timers of one vCPU: their programmed state and their interrupt lines."""

    def __init__(self, arch: "ArmVcpu", cntvoff: int,
                 on_write: Callable[[], None] = lambda: None, clock=None) -> None:
        self.arch = arch
        self.clock = clock or HostClock()
        self._decoders = ((decode_timer_write, self._on_timer_insn),) + (
            ((decode_counter_read, self._on_counter_read),) if self.clock.deterministic else ())
        arch.set_cp15("CNTVOFF", cntvoff)
        self.cntvoff = cntvoff
        self.on_write = on_write
        self.writes = 0
        # The programmed state, kept here: every write reaches the registers through write()
        # (Unicorn drops the guest's own), so sampling reads no CP15 register.
        self._state = dict(zip(_STATE, RegBatch(arch.uc._uch, list(_STATE)).read()))
        self._hooked: set[int] = set()
        self._entries: set[int] = set()      # block starts scanned by scan_entry
        self._hooks = [arch.uc.hook_add(UC_HOOK_EDGE_GENERATED, self._on_new_block)]

    # -- trapping the guest's writes ------------------------------------------------------------

    def scan_entry(self, pc: int) -> None:
        """Before emu_start: the first block runs without an edge into it, so Unicorn reports
        no new edge for it; have it translated and scan it once."""
        if pc in self._entries:
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
        if not size:
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
                    found += [(pc + 2 * i, insn, cb) for dec, cb in self._decoders
                              if dec(insn, True)]
        else:
            for i, word in enumerate(struct.unpack(f"<{size // 4}I", code[: size // 4 * 4])):
                found += [(pc + 4 * i, word, cb) for dec, cb in self._decoders if dec(word, False)]
        new = [(a, insn, cb) for a, insn, cb in found if a not in self._hooked]
        if not new:
            return
        for addr, insn, cb in new:
            self._hooked.add(addr)
            self._hooks.append(uc.hook_add(UC_HOOK_CODE, cb, (insn, thumb), begin=addr, end=addr))
        # The block was translated without the hooks: drop it and stop before it runs (the
        # block's entry check sees the stop), so it is translated again with them.
        uc.ctl_remove_cache(pc, pc + size)
        self.arch.retranslate()

    def _executes(self, uc, decoder, data: tuple[int, bool]) -> tuple[str, int, int | None] | None:
        """(register, Rt, Rt2) of a hooked instruction that will execute (its condition holds)."""
        insn, thumb = data
        dec = decoder(insn, thumb)
        if dec is None:
            return None
        name, rt, rt2, cond = dec
        if not thumb and cond != 0xE and not cond_passed(cond, self.arch.cpsr):
            return None
        return name, rt, rt2

    def _on_timer_insn(self, uc, addr: int, _size: int, data: tuple[int, bool]) -> None:
        dec = self._executes(uc, decode_timer_write, data)
        if dec is None:
            return
        name, rt, rt2 = dec
        val = self.arch.reg(rt)
        if rt2 is not None:
            val |= self.arch.reg(rt2) << 32
        self.write(name, val)

    def _on_counter_read(self, uc, addr: int, _size: int, data: tuple[int, bool]) -> None:
        """A trapped counter read (deterministic board): answer it and skip the instruction."""
        dec = self._executes(uc, decode_counter_read, data)
        if dec is None:
            return
        name, rt, rt2 = dec
        now = self.clock.count()
        if name == "CNTPCT":
            value = now
        elif name == "CNTVCT":
            value = now - self.cntvoff
        else:
            virt = name == "CNTV_TVAL"
            cval = self._state["CNTV_CVAL" if virt else "CNTP_CVAL"]
            value = (cval - (now - (self.cntvoff if virt else 0))) & 0xFFFFFFFF
        self.arch.set_reg(rt, value & 0xFFFFFFFF)
        if rt2 is not None:
            self.arch.set_reg(rt2, (value >> 32) & 0xFFFFFFFF)
        self.arch.set_reg(15, addr + 4)       # A32 and T32 MRC/MRRC are 4 bytes

    def write(self, name: str, value: int) -> None:
        """A guest write to a timer register, with the architecture's semantics."""
        self.writes += 1
        virt = name.startswith("CNTV")
        offset = self.cntvoff if virt else 0
        prefix = "CNTV" if virt else "CNTP"
        if name.endswith("_TVAL"):
            tval = value & 0xFFFFFFFF
            tval -= (tval & 0x80000000) << 1                      # signed 32-bit
            self._set(f"{prefix}_CVAL", (self.clock.count() - offset + tval) & (1 << 64) - 1)
        elif name.endswith("_CVAL"):
            self._set(name, value & (1 << 64) - 1)
        else:
            self._set(name, value & (CTL_ENABLE | CTL_IMASK))
        self.on_write()

    def _set(self, name: str, value: int) -> None:
        self._state[name] = value
        self.arch.set_cp15(name, value)     # what the guest reads back

    def sample(self) -> tuple[dict[int, bool], int | None]:
        """Lines (ppi -> level) and the earliest future deadline in host ns (None: none armed)."""
        st = self._state
        vctl, vcval, pctl, pcval = st["CNTV_CTL"], st["CNTV_CVAL"], st["CNTP_CTL"], st["CNTP_CVAL"]
        now = self.clock.count()
        lines: dict[int, bool] = {}
        deadline: int | None = None
        for ppi, ctl, cval, offset in ((GUEST_TIMER_VIRT_PPI, vctl, vcval, self.cntvoff),
                                       (GUEST_TIMER_PHYS_NS_PPI, pctl, pcval, 0)):
            armed = ctl & CTL_ENABLE and not ctl & CTL_IMASK
            fire_at = cval + offset          # in physical counts
            expired = bool(ctl & CTL_ENABLE) and now >= fire_at
            if bool(ctl & CTL_ISTATUS) != expired:       # what the guest reads back
                self._set("CNTV_CTL" if ppi == GUEST_TIMER_VIRT_PPI else "CNTP_CTL",
                          (ctl & ~CTL_ISTATUS) | (CTL_ISTATUS if expired else 0))
            lines[ppi] = bool(armed and expired)
            if armed and not expired:
                ns = fire_at * NS_PER_TICK
                deadline = ns if deadline is None else min(deadline, ns)
        if not self.clock.deterministic:     # (a deterministic board runs quanta up to it)
            self.arch.exitctl.set_deadline(deadline)
        return lines, deadline
