"""The vCPU's exit point: the block hook in C (tbhook.c) and its control block.

Any thread may ask a running vCPU to come back (`request_stop`); the hook, at the start of the
next translation block, stops emulation with the PC on an instruction nothing has run past.
Nothing else ever calls uc_emu_stop() while guest code runs: in Unicorn 2.1 that re-runs the
instruction whose memory access was in flight. An interrupt deliverable (the vGIC's line, or
`set_irq`) while CPSR.I is clear is entered by the hook itself, at a vector the hypervisor has
entered before (`entered_irq_vector`), else it stops for the hypervisor to enter it.
"""
from __future__ import annotations

import ctypes
import enum

from unicorn import UC_HOOK_BLOCK
from unicorn.arm_const import (UC_ARM_REG_CP_REG, UC_ARM_REG_CPSR, UC_ARM_REG_LR,
                               UC_ARM_REG_PC, UC_ARM_REG_SPSR)
from unicorn.unicorn_py3.unicorn import uclib

from xenpy.arch.arm.regs import CP15, CpReg

try:
    from xenpy.arch.arm import _tbhook
except ImportError as e:  # pragma: no cover - a source tree nobody built
    raise ImportError("xenpy's C block hook is not built: run `pip install -e .` in the "
                      "source tree (it needs a C compiler)") from e


class Reason(enum.IntEnum):
    NONE = 0
    REQUESTED = 1     # request_stop() from some thread
    IRQ = 2           # an interrupt is deliverable and CPSR.I is clear
    BUDGET = 3        # the deterministic quantum is used up
    TIMER = 4         # the running vCPU's timer deadline has passed


class _Ctl(ctypes.Structure):
    _fields_ = [("stop", ctypes.c_uint32), ("irq", ctypes.c_uint32),
                ("metered", ctypes.c_uint32), ("reason", ctypes.c_uint32),
                ("budget", ctypes.c_int64), ("executed", ctypes.c_uint64),
                ("blocks", ctypes.c_uint64), ("stop_pc", ctypes.c_uint64),
                ("last_pc", ctypes.c_uint64),
                ("emu_stop", ctypes.c_void_p), ("reg_read", ctypes.c_void_p),
                ("cpsr_regid", ctypes.c_int32), ("countdown", ctypes.c_int32),
                ("deadline_ns", ctypes.c_uint64),
                ("line", ctypes.c_void_p),
                ("reg_read_batch", ctypes.c_void_p), ("reg_write_batch", ctypes.c_void_p),
                ("reg_write", ctypes.c_void_p),
                ("cp_regid", ctypes.c_int32), ("entry_ids", ctypes.c_int32 * 4),
                ("sctlr", CpReg), ("vbar", CpReg),
                ("irq_vector", ctypes.c_uint64), ("entry_cost", ctypes.c_int64),
                ("irqs", ctypes.c_uint64)]


assert ctypes.sizeof(_Ctl) == _tbhook.CTL_SIZE, "tbhook.c and tbhook.py disagree on the layout"

_EMU_STOP = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
_REG_READ = ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p).value
_REG_READ_BATCH = ctypes.cast(uclib.uc_reg_read_batch, ctypes.c_void_p).value
_REG_WRITE_BATCH = ctypes.cast(uclib.uc_reg_write_batch, ctypes.c_void_p).value
_REG_WRITE = ctypes.cast(uclib.uc_reg_write, ctypes.c_void_p).value
_NEVER = (1 << 64) - 1
# ctypes releases the interpreter lock around a foreign call: the poll never holds it.
_idle_poll = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint32))(
    _tbhook.IDLE_POLL)


def idle_poll(until_ns: int, kick: ctypes.c_uint32) -> bool:
    """Poll CLOCK_MONOTONIC until `until_ns` (False) or until `kick` is set (True), without the
    interpreter lock: an idle pCPU's last stretch before a timer deadline."""
    return bool(_idle_poll(until_ns, ctypes.byref(kick)))


class ExitControl:
    """One vCPU's control block, shared with its block hook."""

    def __init__(self, uch: ctypes.c_void_p, entry_cost: int = 0) -> None:
        """entry_cost: what the hook's exception entry costs a metered quantum (code bytes)."""
        self.ctl = ctl = _Ctl()
        ctl.emu_stop, ctl.reg_read, ctl.cpsr_regid = _EMU_STOP, _REG_READ, UC_ARM_REG_CPSR
        ctl.line = ctypes.addressof(ctl) + _Ctl.irq.offset
        ctl.reg_read_batch, ctl.reg_write_batch = _REG_READ_BATCH, _REG_WRITE_BATCH
        ctl.reg_write = _REG_WRITE
        ctl.cp_regid = UC_ARM_REG_CP_REG
        ctl.entry_ids[:] = [UC_ARM_REG_CPSR, UC_ARM_REG_SPSR, UC_ARM_REG_LR, UC_ARM_REG_PC]
        ctl.sctlr, ctl.vbar = CpReg(*CP15["SCTLR"], 0), CpReg(*CP15["VBAR"], 0)
        ctl.entry_cost = entry_cost
        self._line_owner: object = None
        self._uch = uch
        self._handle = ctypes.c_size_t()
        err = uclib.uc_hook_add(uch, ctypes.byref(self._handle), UC_HOOK_BLOCK,
                                ctypes.c_void_p(_tbhook.BLOCK_HOOK),
                                ctypes.cast(ctypes.pointer(ctl), ctypes.c_void_p),
                                ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise RuntimeError(f"uc_hook_add(UC_HOOK_BLOCK) failed: {err}")

    def close(self) -> None:
        if self._handle.value:
            uclib.uc_hook_del(self._uch, self._handle)
            self._handle.value = 0

    def request_stop(self) -> None:
        self.ctl.stop = 1

    def set_irq(self, level: bool) -> None:
        """The interrupt line, when no vGIC drives it (wire_line)."""
        self.ctl.irq = 1 if level else 0

    def wire_line(self, cell: ctypes.c_uint32) -> None:
        """Read the interrupt line from `cell` (the vGIC's level for this vCPU), which must
        stay alive as long as this control block."""
        self._line_owner = cell
        self.ctl.line = ctypes.addressof(cell)

    def entered_irq_vector(self, address: int) -> None:
        """The hypervisor entered the IRQ exception at `address`: from now on the hook may
        enter it there by itself."""
        self.ctl.irq_vector = address & ~1

    @property
    def irqs_entered(self) -> int:
        """IRQ exceptions the hook entered by itself."""
        return self.ctl.irqs

    def set_deadline(self, ns: int | None) -> None:
        """The next armed timer deadline of this vCPU (CLOCK_MONOTONIC ns; None: none): the hook
        stops a running guest once it has passed."""
        ctl = self.ctl
        ctl.deadline_ns = min(ns or 0, _NEVER)      # a CVAL near 2^64 is past any host time
        ctl.countdown = 1

    def take(self) -> Reason:
        """After emu_start: why the hook stopped it (NONE: something else did), and re-arm."""
        ctl = self.ctl
        why = Reason(ctl.reason)
        ctl.reason = 0
        if why is Reason.REQUESTED:
            ctl.stop = 0
        return why

    @property
    def stop_requested(self) -> bool:
        return bool(self.ctl.stop)

    @property
    def last_block(self) -> int:
        return self.ctl.last_pc

    @property
    def executed(self) -> int:
        """Guest code bytes executed (the deterministic clock's source)."""
        return self.ctl.executed

    def charge(self, nbytes: int) -> None:
        """Deterministic mode: a trap costs virtual time as if it ran `nbytes` of code (a
        hypercall is not free on real hardware, and a guest that traps without end must still
        end its quantum)."""
        ctl = self.ctl
        if ctl.metered:                 # the next block start ends a quantum used up
            ctl.executed += nbytes
            ctl.budget -= nbytes

    def meter(self, budget: int | None) -> None:
        """Deterministic mode: stop after `budget` more code bytes (None: unmetered)."""
        self.ctl.metered = 0 if budget is None else 1
        self.ctl.budget = budget or 0

    @property
    def budget(self) -> int:
        return self.ctl.budget
