"""The Allwinner A20 PIO (GPIO) controller at 0x01c20800, and the two host pages around it.

Register layout (A20 user manual, "Port Controller"; the same layout Linux's sunxi pinctrl driver
programs): nine banks A..I, 0x24 bytes apart, each with

    0x00-0x0c  CFG0-3   4 bits per pin, 8 pins per register: function select (bits 2:0)
                        0 input, 1 output, 2-6 peripheral functions, 7 reserved
    0x10       DAT      one bit per pin: the level driven (output) or seen (input)
    0x14-0x18  DRV0-1   2 bits per pin, 16 pins per register: drive strength level 0-3
    0x1c-0x20  PULL0-1  2 bits per pin: 0 none, 1 pull-up, 2 pull-down, 3 reserved

Bits of pins a bank does not have, and bit 3 of each CFG field, are reserved: they read as zero.
Everything else in the two pages of `iomem = ["1c20,2"]` (0x01c20000-0x01c21fff: the clock
controller, the PIO interrupt registers, timers, ...) is not modelled: it reads as zero and ignores
writes, and the first access to each such register is logged so a guest author sees what their
code touched.

Pins are observable from the host: `level("PD12")`, `function("PD12")`; an input can be driven
from outside with `drive("PB3", 1)` (None leaves it floating: the pull decides).
"""
from __future__ import annotations

import re
import threading
from typing import Callable

PIO_BASE = 0x01C20800
PIO_SIZE = 0x400
PAGES_BASE = 0x01C20000         # the two pages a domU gets with iomem = ["1c20,2"]
PAGES_SIZE = 0x2000

BANK_SIZE = 0x24
BANKS = "ABCDEFGHI"
PINS = dict(zip(BANKS, (18, 24, 25, 28, 12, 6, 12, 28, 22)))   # pins per bank on the A20

CFG0, DAT, DRV0, PULL0 = 0x00, 0x10, 0x14, 0x1C
FUNCTIONS = {0: "gpio_in", 1: "gpio_out", 7: "reserved"}
PULLS = {0: "none", 1: "pull-up", 2: "pull-down", 3: "reserved"}

_PIN = re.compile(r"P([A-I])(\d{1,2})", re.I)


def parse_pin(pin: str) -> tuple[int, int]:
    """"PD12" -> (bank 3, pin 12); ValueError naming the bank's range for a pin it lacks."""
    m = _PIN.fullmatch(pin.strip())
    if not m:
        raise ValueError(f"{pin!r} is not an A20 pin name (PA0 ... PI21)")
    bank, n = m.group(1).upper(), int(m.group(2))
    if n >= PINS[bank]:
        raise ValueError(f"the A20 has no pin P{bank}{n} (bank {bank} has "
                         f"P{bank}0-P{bank}{PINS[bank] - 1})")
    return BANKS.index(bank), n


class A20Pio:
    """The PIO register file. Offsets are from PIO_BASE; accesses are 32-bit registers seen
    through any access size (a byte store changes only its byte lane)."""

    def __init__(self, log: Callable[[str], None] | None = None) -> None:
        self.log = log or (lambda _line: None)
        self._lock = threading.Lock()
        self.cfg = [[0] * 4 for _ in BANKS]
        self.dat = [0] * len(BANKS)          # the output latch
        self.drv = [[0] * 2 for _ in BANKS]
        self.pull = [[0] * 2 for _ in BANKS]
        self.inputs: dict[tuple[int, int], int] = {}   # levels driven from outside
        self._dat_cache: dict[int, int] = {}                # bank -> DAT as read (levels)
        self._unmodelled: set[int] = set()

    # -- register masks: only pins the bank has -------------------------------------------------

    @staticmethod
    def _pin_mask(bank: int, first: int, count: int, bits: int, used: int) -> int:
        mask = 0
        for i in range(count):
            if first + i < PINS[BANKS[bank]]:
                mask |= ((1 << used) - 1) << (i * bits)
        return mask

    def _mask(self, bank: int, reg: int) -> int:
        if reg < DAT:
            return self._pin_mask(bank, reg // 4 * 8, 8, 4, 3)
        if reg == DAT:
            return self._pin_mask(bank, 0, 32, 1, 1)
        first = (reg - DRV0) // 4 * 16 if reg < PULL0 else (reg - PULL0) // 4 * 16
        return self._pin_mask(bank, first, 16, 2, 2)

    # -- pin state --------------------------------------------------------------------------------

    def _func(self, bank: int, n: int) -> int:
        return self.cfg[bank][n // 8] >> (n % 8 * 4) & 7

    def _pull(self, bank: int, n: int) -> int:
        return self.pull[bank][n // 16] >> (n % 16 * 2) & 3

    def _level(self, bank: int, n: int) -> int:
        func = self._func(bank, n)
        if func == 1:
            return self.dat[bank] >> n & 1
        if func == 0:
            ext = self.inputs.get((bank, n))
            if ext is not None:
                return ext
            return 1 if self._pull(bank, n) == 1 else 0     # floating: the pull decides
        return 0       # a peripheral drives it: not modelled, reads as low

    def _levels(self, bank: int) -> int:
        """DAT as read: every pin's level (cached until the bank or an input changes)."""
        levels = self._dat_cache.get(bank)
        if levels is None:
            levels = sum(self._level(bank, n) << n for n in range(PINS[BANKS[bank]]))
            self._dat_cache[bank] = levels
        return levels

    def level(self, pin: str) -> int:
        """The electrical level of a pin: what it drives as an output, what it sees as an input."""
        bank, n = parse_pin(pin)
        with self._lock:
            return self._level(bank, n)

    def function(self, pin: str) -> str:
        bank, n = parse_pin(pin)
        with self._lock:
            f = self._func(bank, n)
        return FUNCTIONS.get(f, f"func{f}")

    def pull_of(self, pin: str) -> str:
        bank, n = parse_pin(pin)
        with self._lock:
            return PULLS[self._pull(bank, n)]

    def drive(self, pin: str, level: int | None) -> None:
        """Drive an input pin from outside the board (a button, a jumper); None: let it float."""
        bank, n = parse_pin(pin)
        with self._lock:
            self._dat_cache.pop(bank, None)
            if level is None:
                self.inputs.pop((bank, n), None)
            else:
                self.inputs[(bank, n)] = 1 if level else 0

    # -- registers ------------------------------------------------------------------------------

    def read32(self, off: int) -> int:
        """One aligned register; offsets past bank I read as zero."""
        bank, reg = divmod(off, BANK_SIZE)
        if bank >= len(BANKS):
            return 0
        with self._lock:
            if reg < DAT:
                return self.cfg[bank][reg // 4]
            if reg == DAT:
                return self._levels(bank)
            if reg < PULL0:
                return self.drv[bank][(reg - DRV0) // 4]
            return self.pull[bank][(reg - PULL0) // 4]

    def write32(self, off: int, value: int, lanes: int = 0xFFFFFFFF, who: str = "") -> None:
        bank, reg = divmod(off, BANK_SIZE)
        if bank >= len(BANKS):
            return
        with self._lock:
            mask = self._mask(bank, reg) & lanes
            if reg < DAT:
                row, i, first, bits = self.cfg[bank], reg // 4, reg // 4 * 8, 4
            elif reg == DAT:
                row, i, first, bits = self.dat, bank, 0, 1
            elif reg < PULL0:
                row, i, first, bits = self.drv[bank], (reg - DRV0) // 4, 0, 0   # no level
            else:
                row, i, first, bits = self.pull[bank], (reg - PULL0) // 4, (reg - PULL0) // 4 * 16, 2
            new = (row[i] & ~mask) | (value & mask)
            changed = row[i] ^ new
            # Only the pins whose field changed can change function or level.
            pins = [first + k for k in range(32 // bits) if changed >> (k * bits) & ((1 << bits) - 1)] \
                if bits else []
            before = {n: (self._func(bank, n), self._level(bank, n)) for n in pins}
            row[i] = new
            if changed:
                self._dat_cache.pop(bank, None)
            changes = []
            for n, (func, lvl) in before.items():
                func2, lvl2 = self._func(bank, n), self._level(bank, n)
                if func2 != func:
                    changes.append(f"P{BANKS[bank]}{n} is now {FUNCTIONS.get(func2, f'func{func2}')}")
                if func2 == 1 and (lvl2 != lvl or func2 != func):
                    changes.append(f"P{BANKS[bank]}{n} -> {'high' if lvl2 else 'low'}")
        for change in changes:
            self.log(f"a20-pio: {change}{f' ({who})' if who else ''}")

    @staticmethod
    def is_modelled(off: int) -> bool:
        return off < len(BANKS) * BANK_SIZE


class PioPages:
    """The two host pages 0x01c20000-0x01c21fff as the board has them: the PIO at +0x800, the
    rest reads as zero and ignores writes (logged once per register)."""

    base = PAGES_BASE
    size = PAGES_SIZE

    def __init__(self, pio: A20Pio) -> None:
        self.pio = pio
        self._logged: set[int] = set()
        self._lock = threading.Lock()

    def _unmodelled(self, reg: int, what: str, who: str) -> None:
        with self._lock:
            if reg in self._logged:
                return
            self._logged.add(reg)
        self.pio.log(f"a20-pio: {what} of unmodelled register 0x{self.base + reg:08x} "
                     f"(reads as zero, writes ignored; logged once){f' ({who})' if who else ''}")

    def _reg_read(self, reg: int, who: str) -> int:
        off = reg - (PIO_BASE - PAGES_BASE)
        if 0 <= off < PIO_SIZE and A20Pio.is_modelled(off):
            return self.pio.read32(off)
        self._unmodelled(reg, "read", who)
        return 0

    def read(self, offset: int, size: int, who: str = "") -> int:
        regs: dict[int, int] = {}
        value = 0
        for i in range(size):
            reg, lane = (offset + i) & ~3, (offset + i) & 3
            if reg not in regs:
                regs[reg] = self._reg_read(reg, who)
            value |= (regs[reg] >> (8 * lane) & 0xFF) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int, who: str = "") -> None:
        by_reg: dict[int, tuple[int, int]] = {}
        for i in range(size):
            reg, lane = (offset + i) & ~3, (offset + i) & 3
            v, lanes = by_reg.get(reg, (0, 0))
            by_reg[reg] = (v | ((value >> (8 * i)) & 0xFF) << (8 * lane), lanes | 0xFF << (8 * lane))
        for reg, (v, lanes) in by_reg.items():
            off = reg - (PIO_BASE - PAGES_BASE)
            if 0 <= off < PIO_SIZE and A20Pio.is_modelled(off):
                self.pio.write32(off, v, lanes, who)
            else:
                self._unmodelled(reg, "write", who)
