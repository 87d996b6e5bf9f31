"""Hand-assembled A32 test programs and a way to boot them as a domU on an in-process hypervisor.

A program is a list of instruction words placed at RAM + 0x8000; a vector table at RAM + 0x1000
records which exception was taken (r8 = vector offset) and shuts the domain down with the crash
code, so a test reads the outcome from the registers and the domain's state.
"""
from __future__ import annotations

import struct
import time

from xenpy.arch.arm.vcpu import CpuContext
from xenpy.common.hypervisor import Hypervisor

BASE = 0x80000000
CODE = BASE + 0x8000
VEC = BASE + 0x1000
DATA = BASE + 0x9000

HVC = 0xE140EA71
B_SELF = 0xEAFFFFFE


def mov(rd: int, imm8: int) -> int:
    return 0xE3A00000 | rd << 12 | imm8


def movw(rd: int, imm16: int) -> int:
    return 0xE3000000 | (imm16 >> 12) << 16 | rd << 12 | (imm16 & 0xFFF)


def movt(rd: int, imm16: int) -> int:
    return 0xE3400000 | (imm16 >> 12) << 16 | rd << 12 | (imm16 & 0xFFF)


def load32(rd: int, value: int) -> list[int]:
    return [movw(rd, value & 0xFFFF), movt(rd, value >> 16)]


def shutdown(reason_addr: int) -> list[int]:
    """SCHEDOP_shutdown with the reason word stored at reason_addr."""
    return [mov(0, 2), *load32(1, reason_addr), mov(12, 29), HVC, B_SELF]


MCR_VBAR_R0 = 0xEE0C0F10   # mcr p15, 0, r0, c12, c0, 0


def vector_table() -> tuple[list[int], list[int]]:
    """Each slot records its offset in r8 and then shuts down with SHUTDOWN_crash (3)."""
    handler = lambda off: [mov(8, off), *shutdown(DATA + 0x10)]   # noqa: E731
    size = len(handler(0)) * 4
    words = []
    for n, off in enumerate(range(0, 0x20, 4)):
        target = 0x100 + n * size                   # handlers start at VEC + 0x100
        words.append(0xEA000000 | ((target - off - 8) // 4 & 0xFFFFFF))   # b handler
    handlers = [w for off in range(0, 0x20, 4) for w in handler(off)]
    return words, handlers


def boot(hv: Hypervisor, program: list[int], *, vcpus: int = 1, mem_mb: int = 16,
         data: dict[int, bytes] | None = None, before_start=None):
    """Create, load and unpause a domain; `data` is written to guest RAM before it starts, and
    `before_start(d)` may return more such data (it runs once the domain exists)."""
    domid = hv.domain_create(0, vcpus, None, "4.4")
    d = hv.domains[domid]
    assert hv.domain_populate(d, mem_mb << 8) == 0
    table, handlers = vector_table()
    d.ram_write(VEC, struct.pack(f"<{len(table)}I", *table))
    d.ram_write(VEC + 0x100, struct.pack(f"<{len(handlers)}I", *handlers))
    d.ram_write(DATA + 0x10, struct.pack("<I", 3))      # SHUTDOWN_crash
    d.ram_write(DATA + 0x14, struct.pack("<I", 0))      # SHUTDOWN_poweroff
    prologue = [*load32(0, VEC), MCR_VBAR_R0]
    words = prologue + program
    d.ram_write(CODE, struct.pack(f"<{len(words)}I", *words))
    data = dict(data or {})
    if before_start is not None:
        data.update(before_start(d) or {})
    for addr, blob in data.items():
        d.ram_write(addr, blob)
    d.set_vcpu_context(0, CpuContext(pc=CODE))
    hv.domain_unpause(d)
    return d


def wait_shutdown(d, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not d.is_shutdown and time.monotonic() < deadline:
        time.sleep(0.01)
    assert d.is_shutdown, "guest did not shut down"
    d.hv.scheduler.deschedule(d.vcpus)


def reg(d, n: int) -> int:
    return d.vcpus[0].arch.reg(n)




def zimage(program: list[int], data: bytes = b"") -> bytes:
    """An arm32 zImage linked at RAM + 0x8000: a branch over the header, the program, then `data`
    (at zimage_data_addr(program))."""
    head = struct.pack("<I", 0xEA00000A) + b"\0" * 0x20          # b 0x30: over the header
    body = struct.pack(f"<{len(program)}I", *program) + data
    end = CODE + 0x30 + len(body)
    return head + struct.pack("<III", 0x016F2818, CODE, end) + body


def zimage_data_addr(program: list[int]) -> int:
    return CODE + 0x30 + 4 * len(program)
