"""Fast register access for trap handlers.

Unicorn's Python binding costs several microseconds per register (argument classification, a
ctypes struct per call). A trap needs a dozen registers, so handlers read them with one
uc_reg_read_batch call into preallocated buffers, CP15 registers included.

The register calls keep the interpreter lock (the library loaded again as a PyDLL): each takes a
few hundred nanoseconds, and letting the lock go around it cost as much again (0.86 against
0.48 us a call), and with another thread waiting for the lock, a hand-off at every register.
None of them calls back into Python. Every pointer is passed as a plain address (c_void_p):
ctypes checks an array against a POINTER argtype at each call, which was a third of a batch
read (2.9 against 2.1 us for the MMU registers); and a batch's values come out of its one
buffer with a single struct unpack.
"""
from __future__ import annotations

import ctypes
import struct

from unicorn.arm_const import UC_ARM_REG_CP_REG
from unicorn.unicorn_py3.unicorn import uclib as _binding


class _HoldingLock:
    """libunicorn's register calls, made with the interpreter lock held, pointers as addresses."""

    def __init__(self) -> None:
        lib = ctypes.PyDLL(_binding._name)
        ptr, num = ctypes.c_void_p, ctypes.c_int
        for name, args in (("uc_reg_read", (ptr, num, ptr)), ("uc_reg_write", (ptr, num, ptr)),
                           ("uc_reg_read_batch", (ptr, ptr, ptr, num)),
                           ("uc_reg_write_batch", (ptr, ptr, ptr, num))):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, ctypes.c_int
            setattr(self, name, fn)


uclib = _HoldingLock()

# (coproc, is64, sec, crn, crm, opc1, opc2) of the CP15 registers the hypervisor reads.
CP15 = {
    "SCTLR": (15, 0, 0, 1, 0, 0, 0), "TTBR0": (15, 1, 0, 0, 2, 0, 0),
    "TTBR1": (15, 1, 0, 0, 2, 1, 0), "TTBCR": (15, 0, 0, 2, 0, 0, 2),
    "DACR": (15, 0, 0, 3, 0, 0, 0), "DFSR": (15, 0, 0, 5, 0, 0, 0),
    "IFSR": (15, 0, 0, 5, 0, 0, 1), "DFAR": (15, 0, 0, 6, 0, 0, 0),
    "IFAR": (15, 0, 0, 6, 0, 0, 2), "VBAR": (15, 0, 0, 12, 0, 0, 0),
    "CNTV_CTL": (15, 0, 0, 14, 3, 0, 1), "CNTV_CVAL": (15, 1, 0, 0, 14, 3, 0),
    "CNTVCT": (15, 1, 0, 0, 14, 1, 0), "CNTVOFF": (15, 1, 0, 0, 14, 4, 0),
    "CNTFRQ": (15, 0, 0, 14, 0, 0, 0), "CNTP_CTL": (15, 0, 0, 14, 2, 0, 1),
    "CNTP_CVAL": (15, 1, 0, 0, 14, 2, 0), "CNTPCT": (15, 1, 0, 0, 14, 0, 0),
    "VMPIDR": (15, 0, 0, 0, 0, 4, 5),     # what the guest reads as MPIDR
}


class CpReg(ctypes.Structure):
    """Unicorn's uc_arm_cp_reg."""
    _fields_ = [("cp", ctypes.c_uint32), ("is64", ctypes.c_uint32), ("sec", ctypes.c_uint32),
                ("crn", ctypes.c_uint32), ("crm", ctypes.c_uint32), ("opc1", ctypes.c_uint32),
                ("opc2", ctypes.c_uint32), ("val", ctypes.c_uint64)]


class RegBatch:
    """A fixed list of registers read in one call: core register ids first, then CP15 names."""

    def __init__(self, handle: ctypes.c_void_p, regs: list[int | str]) -> None:
        self._h = handle.value
        core = [r for r in regs if not isinstance(r, str)]
        cp15 = [r for r in regs if isinstance(r, str)]
        if regs != core + cp15:
            raise ValueError("RegBatch: core registers come before CP15 ones")
        n = self._n = len(regs)
        self._id_cells = (ctypes.c_int * n)(*core, *[UC_ARM_REG_CP_REG] * len(cp15))
        # One buffer: the core registers as 32-bit cells Unicorn fills whole, then the CP15
        # registers' uc_arm_cp_reg structs, whose values one unpack reads with the cores'.
        cp_at = -(-4 * len(core) // 8) * 8
        self._buf = (ctypes.c_uint8 * (cp_at + ctypes.sizeof(CpReg) * len(cp15)))()
        base = ctypes.addressof(self._buf)
        for i, name in enumerate(cp15):
            CpReg.from_buffer(self._buf, cp_at + i * ctypes.sizeof(CpReg)).__init__(*CP15[name], 0)
        self._ptr_cells = (ctypes.c_void_p * n)(
            *[base + 4 * i for i in range(len(core))],
            *[base + cp_at + i * ctypes.sizeof(CpReg) for i in range(len(cp15))])
        self._ids, self._ptrs = ctypes.addressof(self._id_cells), ctypes.addressof(self._ptr_cells)
        val = CpReg.val.offset
        self._values = struct.Struct(
            f"<{len(core)}I{cp_at - 4 * len(core)}x"
            + f"{val}xQ{ctypes.sizeof(CpReg) - val - 8}x" * len(cp15)).unpack_from

    def read(self) -> tuple[int, ...]:
        uclib.uc_reg_read_batch(self._h, self._ids, self._ptrs, self._n)
        return self._values(self._buf)


class RegReader:
    """uc_reg_read of one 32-bit core register without the binding's per-call overhead."""

    def __init__(self, handle: ctypes.c_void_p) -> None:
        self._h = handle.value
        self._val = ctypes.c_uint64(0)
        self._ref = ctypes.addressof(self._val)

    def __call__(self, reg: int) -> int:
        uclib.uc_reg_read(self._h, reg, self._ref)
        return self._val.value & 0xFFFFFFFF


class Cp15Access:
    """One CP15 register read or written by name, without the binding's per-call overhead (a
    timer write and its interrupt touch several: the binding's path cost ~10 us a tick)."""

    def __init__(self, handle: ctypes.c_void_p) -> None:
        self._h = handle.value
        self._reads: dict[str, tuple[CpReg, int]] = {}

    def read(self, name: str) -> int:
        cell = self._reads.get(name)
        if cell is None:
            reg = CpReg(*CP15[name], 0)
            cell = self._reads[name] = (reg, ctypes.addressof(reg))
        uclib.uc_reg_read(self._h, UC_ARM_REG_CP_REG, cell[1])
        return cell[0].val

    def write(self, name: str, value: int) -> None:
        # A cell per write: a write from another thread must not change this one's value.
        reg = CpReg(*CP15[name], value & 0xFFFFFFFFFFFFFFFF)
        uclib.uc_reg_write(self._h, UC_ARM_REG_CP_REG, ctypes.addressof(reg))


class RegWriter:
    """uc_reg_write(_batch) for n 32-bit core registers without the binding's per-call overhead."""

    def __init__(self, handle: ctypes.c_void_p, n: int = 1) -> None:
        self._h = handle.value
        self._n = n
        self._vals = (ctypes.c_uint32 * n)()
        self._ids = (ctypes.c_int * n)()
        base = ctypes.addressof(self._vals)
        self._ptr_cells = (ctypes.c_void_p * n)(*[base + 4 * i for i in range(n)])
        self._ref, self._ids_at = base, ctypes.addressof(self._ids)
        self._ptrs = ctypes.addressof(self._ptr_cells)

    def __call__(self, *pairs: int) -> None:
        """(reg, value) pairs, flattened: w(PC, pc) or w(PC, pc, R0, ret)."""
        if self._n == 1:
            self._vals[0] = pairs[1] & 0xFFFFFFFF
            uclib.uc_reg_write(self._h, pairs[0], self._ref)
            return
        for i in range(self._n):
            self._ids[i] = pairs[2 * i]
            self._vals[i] = pairs[2 * i + 1] & 0xFFFFFFFF
        uclib.uc_reg_write_batch(self._h, self._ids_at, self._ptrs, self._n)
