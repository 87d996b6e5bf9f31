"""Debug hooks on an ArmVcpu: breakpoints, watchpoints, registers and memory for a debugger.

The counterpart of Xen's arch-specific gdbstub support (and of the debug half of domctl): the
board's gdb stub (xenpy/board/gdbstub.py) drives it. Nothing here costs anything while no
debugger asks for it: a breakpoint is a Unicorn code hook on exactly its address, a watchpoint a
memory hook on exactly the watched range, and a hook that hits stops the vCPU from inside itself
(ArmVcpu.stop), so the guest's hot path carries no per-instruction check.

What Unicorn 2.1 does on those stops (measured): a stop from a code hook leaves PC on the hooked
instruction, not executed (a breakpoint); a stop from a memory hook on RAM leaves PC on the
load/store, its access already made and to be made again on resume (the watched store repeats
the same value; gdb steps over it with watchpoints removed, as ARM watchpoints trigger before the
instruction completes).

Memory goes through the guest's own stage-1 translation (guest_walk), so a debugger sees what the
guest sees; permissions are not checked (a debugger may write a read-only code page), but only
RAM and frames mapped over it are reachable: never a device.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_WRITE
from unicorn.arm_const import UC_ARM_REG_CPSR, UC_ARM_REG_D0, UC_ARM_REG_FPSCR

from xenpy.arch.arm import guest_walk
from xenpy.arch.arm.regs import CP15

if TYPE_CHECKING:
    from xenpy.arch.arm.vcpu import ArmVcpu

# gdb's register numbering in our target description: r0-r15, cpsr, d0-d31, fpscr.
NR_CORE, REG_CPSR, REG_D0, REG_FPSCR = 16, 16, 17, 49
NR_REGS = 50

BREAK, WRITE_WATCH, READ_WATCH, ACCESS_WATCH = 1, 2, 3, 4   # gdb's Z1-Z4 (Z0 is treated as Z1)

TARGET_XML = """<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
  <architecture>arm</architecture>
  <feature name="org.gnu.gdb.arm.core">
""" + "".join(f'    <reg name="r{n}" bitsize="32" type="uint32" regnum="{n}"/>\n' for n in range(13)) + """\
    <reg name="sp" bitsize="32" type="data_ptr" regnum="13"/>
    <reg name="lr" bitsize="32" regnum="14"/>
    <reg name="pc" bitsize="32" type="code_ptr" regnum="15"/>
    <reg name="cpsr" bitsize="32" regnum="16"/>
  </feature>
  <feature name="org.gnu.gdb.arm.vfp">
""" + "".join(f'    <reg name="d{n}" bitsize="64" type="ieee_double" regnum="{REG_D0 + n}"/>\n'
              for n in range(32)) + """\
    <reg name="fpscr" bitsize="32" type="int" group="float" regnum="49"/>
  </feature>
</target>
"""

# Hit = (kind, address): what stopped the vCPU.
OnHit = Callable[["ArmVcpu", int, int], None]


def reg_size(n: int) -> int:
    return 8 if REG_D0 <= n < REG_D0 + 32 else 4


class VcpuDebug:
    """The debug state of one vCPU: its hooks and how a hit is reported."""

    def __init__(self, arch: "ArmVcpu", on_hit: OnHit) -> None:
        self.arch = arch
        self.on_hit = on_hit
        self._points: dict[tuple[int, int, int], int] = {}   # (kind, addr, len) -> hook

    # -- registers (only while the vCPU is off its pCPU) ------------------------------------------

    def read_reg(self, n: int) -> int:
        uc = self.arch.uc
        if n < NR_CORE:
            return self.arch.reg(n)
        if n == REG_CPSR:
            return uc.reg_read(UC_ARM_REG_CPSR)
        if n < REG_FPSCR:
            return uc.reg_read(UC_ARM_REG_D0 + n - REG_D0)
        if n == REG_FPSCR:
            return uc.reg_read(UC_ARM_REG_FPSCR)
        raise IndexError(n)

    def write_reg(self, n: int, value: int) -> None:
        uc = self.arch.uc
        if n < NR_CORE:
            self.arch.set_reg(n, value)
        elif n == REG_CPSR:
            uc.reg_write(UC_ARM_REG_CPSR, value & 0xFFFFFFFF)
        elif n < REG_FPSCR:
            uc.reg_write(UC_ARM_REG_D0 + n - REG_D0, value & (1 << 64) - 1)
        elif n == REG_FPSCR:
            uc.reg_write(UC_ARM_REG_FPSCR, value & 0xFFFFFFFF)
        else:
            raise IndexError(n)

    def read_regs(self) -> bytes:
        return b"".join(self.read_reg(n).to_bytes(reg_size(n), "little") for n in range(NR_REGS))

    def write_regs(self, data: bytes) -> None:
        pos = 0
        for n in range(NR_REGS):
            size = reg_size(n)
            if pos + size > len(data):
                break
            self.write_reg(n, int.from_bytes(data[pos:pos + size], "little"))
            pos += size

    # -- memory, as the guest sees it -------------------------------------------------------------

    def _chunks(self, va: int, length: int) -> list[tuple[int, int]]:
        """(ipa, n) pieces of [va, va+length) up to the first page that does not translate."""
        out, pos = [], 0
        regs = self.arch.stage1()
        while pos < length:
            a = (va + pos) & 0xFFFFFFFF
            n = min(length - pos, 0x1000 - (a & 0xFFF))
            try:
                ipa = guest_walk.gva_to_ipa(regs, a, write=False, read_phys=self.arch.read_phys)
            except guest_walk.GuestFault:
                break
            out.append((ipa, n))
            pos += n
        return out

    def ipa_chunks(self, va: int, length: int) -> list[tuple[int, int]]:
        """Where [va, va+length) is in guest-physical memory now (the translatable part)."""
        return self._chunks(va, length)

    def read_mem(self, va: int, length: int) -> bytes:
        """As many bytes from va as are readable (RAM or mapped frames), maybe none."""
        parts = []
        for ipa, n in self._chunks(va, length):
            data = self.arch.read_phys(ipa, n)
            if data is None:
                break
            parts.append(data)
        return b"".join(parts)

    def write_mem(self, va: int, data: bytes) -> bool:
        chunks = self._chunks(va, len(data))
        if sum(n for _, n in chunks) < len(data):
            return False
        pos = 0
        for ipa, n in chunks:
            if not self.arch.write_phys(ipa, data[pos:pos + n]):
                return False
            pos += n
        return True

    # -- breakpoints and watchpoints --------------------------------------------------------------

    def insert(self, kind: int, addr: int, length: int) -> None:
        key = (kind, addr, length)
        if key in self._points:
            return
        uc = self.arch.uc
        if kind == BREAK:
            h = uc.hook_add(UC_HOOK_CODE, self._on_code, begin=addr, end=addr)
            uc.ctl_remove_cache(addr, addr + 4)   # blocks translated before carry no hook call
        else:
            types = {WRITE_WATCH: UC_HOOK_MEM_WRITE, READ_WATCH: UC_HOOK_MEM_READ,
                     ACCESS_WATCH: UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}[kind]
            h = uc.hook_add(types, self._on_mem, kind, begin=addr, end=addr + max(length, 1) - 1)
        self._points[key] = h

    def remove(self, kind: int, addr: int, length: int) -> bool:
        h = self._points.pop((kind, addr, length), None)
        if h is None:
            return False
        self.arch.uc.hook_del(h)
        if kind == BREAK:
            self.arch.uc.ctl_remove_cache(addr, addr + 4)
        return True

    def clear(self) -> None:
        for kind, addr, length in list(self._points):
            self.remove(kind, addr, length)

    def invalidate(self, va: int, length: int) -> None:
        """Code the debugger wrote must be translated again."""
        self.arch.uc.ctl_remove_cache(va, va + max(length, 1))

    def _on_code(self, uc, addr: int, _size: int, _data: object) -> None:
        self.arch.stop()
        # A code hook runs before its instruction and outside any access, so stopping here
        # is exact: PC stays on the breakpoint, not executed.
        uc.emu_stop()
        self.on_hit(self.arch, BREAK, addr)

    def _on_mem(self, uc, access: int, addr: int, _size: int, _value: int, kind: int) -> None:
        self.arch.stop()
        # Inside the access: Unicorn leaves with PC on the accessing instruction, which runs
        # again on resume (gdb steps over a watchpoint hit, as on ARM hardware).
        uc.emu_stop()
        if kind == ACCESS_WATCH:
            self.on_hit(self.arch, ACCESS_WATCH, addr)
        else:
            self.on_hit(self.arch, WRITE_WATCH if access == UC_MEM_WRITE else READ_WATCH, addr)


def cp15_state(arch: "ArmVcpu") -> dict[str, int]:
    """The CP15 registers the hypervisor knows by name (a vcpu dump)."""
    return {name: arch.cp15(name) for name in CP15}



_MODES = {"usr": 0x10, "fiq": 0x11, "irq": 0x12, "svc": 0x13, "abt": 0x17, "und": 0x1B,
          "sys": 0x1F}


def vcpu_context(arch: "ArmVcpu") -> dict[str, int]:
    """struct vcpu_guest_context's user_regs (arm32 names: every mode's banked SP, LR and SPSR,
    the FIQ bank of r8-r12) plus sctlr, ttbcr, ttbr0, ttbr1. Only while the vCPU is off its pCPU:
    the banks are read by switching CPSR's mode and back."""
    from unicorn.arm_const import (UC_ARM_REG_LR, UC_ARM_REG_PC, UC_ARM_REG_R0, UC_ARM_REG_SP,
                                   UC_ARM_REG_SPSR)
    uc = arch.uc
    cpsr = uc.reg_read(UC_ARM_REG_CPSR)
    ctx: dict[str, int] = {}
    try:
        uc.reg_write(UC_ARM_REG_CPSR, (cpsr & ~0x1F) | _MODES["sys"])   # user's registers
        for n in range(13):
            ctx[f"r{n}_usr"] = uc.reg_read(UC_ARM_REG_R0 + n)
        ctx["sp_usr"], ctx["lr_usr"] = uc.reg_read(UC_ARM_REG_SP), uc.reg_read(UC_ARM_REG_LR)
        for mode in ("irq", "svc", "abt", "und", "fiq"):
            uc.reg_write(UC_ARM_REG_CPSR, (cpsr & ~0x1F) | _MODES[mode])
            ctx[f"lr_{mode}"], ctx[f"sp_{mode}"] = (uc.reg_read(UC_ARM_REG_LR),
                                                    uc.reg_read(UC_ARM_REG_SP))
            ctx[f"spsr_{mode}"] = uc.reg_read(UC_ARM_REG_SPSR)
            if mode == "fiq":
                for n in range(8, 13):
                    ctx[f"r{n}_fiq"] = uc.reg_read(UC_ARM_REG_R0 + n)
    finally:
        uc.reg_write(UC_ARM_REG_CPSR, cpsr)
    ctx["pc32"] = uc.reg_read(UC_ARM_REG_PC)
    ctx["cpsr"] = cpsr
    for name in ("SCTLR", "TTBCR", "TTBR0", "TTBR1"):
        ctx[name.lower()] = arch.cp15(name)
    return ctx


def mode_name(cpsr: int) -> str:
    return next((m for m, v in _MODES.items() if v == cpsr & 0x1F), f"{cpsr & 0x1F:#x}")
