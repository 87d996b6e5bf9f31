"""The guest's generic timers (Xen's arch/arm/vtimer.c), driven from the hypervisor's clock.

Unicorn 2.1 reads the timer registers but silently drops guest writes to them (its gt_ctl_write,
gt_cval_write and gt_tval_write are compiled out). So xenpy traps the writes itself (vcpreg.py:
the MCR/MCRR to CNTV_* / CNTP_* found when a block is translated get a code hook on exactly that
address) and performs the write the guest asked for.

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

from typing import TYPE_CHECKING, Callable

from xenpy.arch.arm.clock import CNTFRQ as CNTFRQ_HZ, NS_PER_TICK, HostClock
from xenpy.arch.arm.regs import RegBatch
from xenpy.arch.arm.vcpreg import Cp15Traps, Decoded, decode_mcr, insn_cond
from xenpy.public.arch_arm import GUEST_TIMER_PHYS_NS_PPI, GUEST_TIMER_VIRT_PPI

if TYPE_CHECKING:
    from xenpy.arch.arm.vcpu import ArmVcpu

CTL_ENABLE, CTL_IMASK, CTL_ISTATUS = 1, 2, 4

# Which timer register an MCR (CRn=c14) names, by (opc1, CRm, opc2); MCRR (CRm=c14) by opc1.
_MCR_REGS = {(0, 3, 1): "CNTV_CTL", (0, 3, 0): "CNTV_TVAL", (0, 2, 1): "CNTP_CTL",
             (0, 2, 0): "CNTP_TVAL"}
_MCRR_REGS = {3: "CNTV_CVAL", 2: "CNTP_CVAL"}
_STATE = ("CNTV_CTL", "CNTV_CVAL", "CNTP_CTL", "CNTP_CVAL")


def decode_counter_read(insn: int, thumb: bool) -> tuple[str, int, int | None, int] | None:
    """(register, Rt, Rt2, cond) if `insn` reads the counter or a TVAL (MRRC/MRC), else None."""
    cond = insn_cond(insn, thumb)
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


def decode_timer_write(insn: int, thumb: bool) -> Decoded | None:
    """(register, Rt, Rt2, cond) if `insn` writes a generic-timer register (MCR or MCRR), else
    None. T32's run unconditionally (an IT block around a timer write is not modelled)."""
    found = decode_mcr(insn, thumb, 14, _MCR_REGS)
    cond = insn_cond(insn, thumb)
    if found is None and cond is not None and insn & 0x0FF00F0F == 0x0C400F0E:
        name = _MCRR_REGS.get((insn >> 4) & 0xF)
        return (name, (insn >> 12) & 0xF, (insn >> 16) & 0xF, cond) if name else None
    return found


class VTimer:
    """Both EL1 timers of one vCPU: their programmed state and their interrupt lines."""

    def __init__(self, arch: "ArmVcpu", traps: Cp15Traps, cntvoff: int,
                 on_write: Callable[[], None] = lambda: None, clock=None) -> None:
        self.arch = arch
        self.clock = clock or HostClock()
        traps.add(decode_timer_write, self._on_timer_insn)
        if self.clock.deterministic:
            traps.add(decode_counter_read, self._on_counter_read)
        arch.set_cp15("CNTVOFF", cntvoff)
        self.cntvoff = cntvoff
        self.on_write = on_write
        self.writes = 0
        # The programmed state, kept here: every write reaches the registers through write()
        # (Unicorn drops the guest's own), so sampling reads no CP15 register.
        self._state = dict(zip(_STATE, RegBatch(arch.uc._uch, list(_STATE)).read()))

    # -- the trapped instructions (vcpreg.py) -----------------------------------------------------

    def _on_timer_insn(self, dec: Decoded, _addr: int) -> None:
        name, rt, rt2, _cond = dec
        val = self.arch.reg(rt)
        if rt2 is not None:
            val |= self.arch.reg(rt2) << 32
        self.write(name, val)

    def _on_counter_read(self, dec: Decoded, addr: int) -> None:
        """A trapped counter read (deterministic board): answer it and skip the instruction."""
        name, rt, rt2, _cond = dec
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
