"""The board's clock: Xen's arch/arm/time.c (the generic counter behind NOW()).

One clock per board, two kinds:
- HostClock: the host's CLOCK_MONOTONIC, which is also what Unicorn's CNTPCT/CNTVCT count (62.5 MHz,
  16 ns a tick), so the hypervisor and the guests agree without trapping counter reads.
- InstructionClock (deterministic mode): time advances only with guest code executed, one
  nanosecond per 4 bytes of code run (about one instruction), and jumps over idle time to the next
  timer deadline. Guests read it through trapped counter reads (vtimer.py); host time never
  reaches them, so the same inputs give the same run.
"""
from __future__ import annotations

import time
from typing import Callable

NS_PER_TICK = 16              # CNTFRQ = 62.5 MHz, as Unicorn's own counter
CNTFRQ = 1_000_000_000 // NS_PER_TICK
BYTES_PER_NS = 4              # the instruction clock's rate: ~1 instruction per ns


class HostClock:
    deterministic = False

    @staticmethod
    def now_ns() -> int:
        return time.monotonic_ns()

    def count(self) -> int:
        return self.now_ns() // NS_PER_TICK


class InstructionClock:
    """Virtual time: `base_ns` at the start of the running quantum plus the code run in it."""
    deterministic = True

    def __init__(self) -> None:
        self.base_ns = 0
        # While a vCPU runs a quantum: how many code bytes it has run in it (its exit control).
        self._running: Callable[[], int] | None = None

    def now_ns(self) -> int:
        running = self._running
        return self.base_ns + (running() // BYTES_PER_NS if running is not None else 0)

    def count(self) -> int:
        return self.now_ns() // NS_PER_TICK

    def enter(self, executed_in_quantum: Callable[[], int]) -> None:
        self._running = executed_in_quantum

    def leave(self) -> None:
        self._running = None

    def advance_to(self, ns: int) -> None:
        self.base_ns = max(self.base_ns, ns)
