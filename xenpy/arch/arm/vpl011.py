"""The virtual SBSA UART (Xen's arch/arm/vpl011.c) with its backend in a domain.

`vuart = "sbsa_uart"` gives a domU a PL011 subset at GUEST_PL011_BASE whose interrupt is
GUEST_VPL011_SPI. The bytes do not go to a serial line: they travel through a console ring page
(struct xencons_interface, the magic page at VUART_PFN_OFFSET) to xenconsoled in dom0, which shows
them with `xl console -t vuart`. XEN_DOMCTL_vuart_op (INIT) maps the page and allocates a
Xen-attached event channel whose remote end is the console domain: a write to DR puts the byte in
the `out` ring and notifies xenconsoled; xenconsoled's notifications (it consumed output or
produced input) run `notification()`, which recomputes the flags and interrupt status from the ring
indexes. Register semantics are vpl011.c's: DR, RSR, FR, RIS, MIS, IMSC and ICR, 8/16/32-bit
accesses; other offsets read as zero and ignore writes. The interrupt line is the level of
RIS & IMSC (the new vGIC's behaviour; the DT node says level-high).
"""
from __future__ import annotations

import struct
import threading
from typing import TYPE_CHECKING, Callable

from xenpy.public.arch_arm import GUEST_PL011_BASE, GUEST_PL011_SIZE, GUEST_VPL011_SPI
from xenpy.public.io import console as C

if TYPE_CHECKING:
    from xenpy.common.domain import Domain

# pl011-uart.h
DR, RSR, FR, IMSC, RIS, MIS, ICR = 0x00, 0x04, 0x18, 0x38, 0x3C, 0x40, 0x44
BUSY, RXFE, TXFF, RXFF, TXFE = 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
RXI, TXI, RTI = 1 << 4, 1 << 5, 1 << 6
SBSA_UART_FIFO_SIZE = 32
SBSA_UART_FIFO_LEVEL = SBSA_UART_FIFO_SIZE // 2


def _queued(prod: int, cons: int, size: int) -> int:
    """xencons_queued(): how many bytes a ring holds (indexes from the page, masked)."""
    q = (prod - cons) & 0xFFFFFFFF
    return size if q > size else q


class VPL011:
    def __init__(self, page: memoryview, *, set_level: Callable[[bool], None],
                 notify: Callable[[], None], log: Callable[[str], None]) -> None:
        self.page = page                      # the ring page, guest memory
        self.base, self.size, self.virq = GUEST_PL011_BASE, GUEST_PL011_SIZE, GUEST_VPL011_SPI
        self._set_level, self._notify, self._log = set_level, notify, log
        self.uartfr = TXFE | RXFE
        self.uartris = 0
        self.uartimsc = 0
        self._line = False
        self._lock = threading.Lock()

    # -- the ring page ----------------------------------------------------------------------
    def _idx(self, off: int) -> int:
        return struct.unpack_from("<I", self.page, off)[0]

    def _put_idx(self, off: int, value: int) -> None:
        struct.pack_into("<I", self.page, off, value & 0xFFFFFFFF)

    def _update_interrupt(self) -> None:
        line = bool(self.uartris & self.uartimsc)
        if line != self._line:
            self._line = line
            self._set_level(line)

    def _tx_fifo_status(self, fifo_level: int) -> None:
        # TXI while there is room for half a FIFO.
        if fifo_level <= C.OUT_SIZE - SBSA_UART_FIFO_LEVEL:
            self.uartris |= TXI
        else:
            self.uartris &= ~TXI

    # -- data -------------------------------------------------------------------------------
    def _write_data(self, data: int) -> None:
        with self._lock:
            cons, prod = self._idx(C.OUT_CONS), self._idx(C.OUT_PROD)
            if _queued(prod, cons, C.OUT_SIZE) != C.OUT_SIZE:
                self.page[C.OUT_OFFSET + C.mask_out(prod)] = data
                prod = (prod + 1) & 0xFFFFFFFF
                self._put_idx(C.OUT_PROD, prod)
                level = _queued(prod, cons, C.OUT_SIZE)
                if level == C.OUT_SIZE:
                    self.uartfr |= TXFF | BUSY
                self._tx_fifo_status(level)
                self._update_interrupt()
            else:
                self._log("vpl011: Unexpected OUT ring buffer full")   # the guest ignored TXFF
            self.uartfr &= ~TXFE
        self._notify()

    def _read_data(self) -> int:
        data = 0
        with self._lock:
            cons, prod = self._idx(C.IN_CONS), self._idx(C.IN_PROD)
            if _queued(prod, cons, C.IN_SIZE) > 0:
                data = self.page[C.IN_OFFSET + C.mask_in(cons)]
                cons = (cons + 1) & 0xFFFFFFFF
                self._put_idx(C.IN_CONS, cons)
                level = _queued(prod, cons, C.IN_SIZE)
                if level == 0:
                    self.uartfr |= RXFE
                    self.uartris &= ~RTI
                if level < C.IN_SIZE - SBSA_UART_FIFO_LEVEL:
                    self.uartris &= ~RXI
                self._update_interrupt()
            else:
                self._log("vpl011: Unexpected IN ring buffer empty")
            self.uartfr &= ~RXFF
        self._notify()
        return data

    def notification(self, _port: int = 0) -> None:
        """vpl011_notification(): the backend moved data; recompute from the ring indexes."""
        with self._lock:
            in_level = _queued(self._idx(C.IN_PROD), self._idx(C.IN_CONS), C.IN_SIZE)
            out_level = _queued(self._idx(C.OUT_PROD), self._idx(C.OUT_CONS), C.OUT_SIZE)
            if in_level > 0:
                self.uartfr &= ~RXFE
                self.uartris |= RTI             # no timing emulated: at once
            if in_level == C.IN_SIZE:
                self.uartfr |= RXFF
            if in_level >= C.IN_SIZE - SBSA_UART_FIFO_LEVEL:
                self.uartris |= RXI
            if out_level != C.OUT_SIZE:
                self.uartfr &= ~(TXFF | BUSY)
                self._tx_fifo_status(out_level)
            self._update_interrupt()
            if out_level == 0:
                self.uartfr |= TXFE

    # -- MMIO -------------------------------------------------------------------------------
    def mmio_read(self, off: int, size: int) -> int:
        reg, shift = off & ~3, (off & 3) * 8
        if reg == DR:
            value = self._read_data()
        elif reg == RSR:
            value = 0                           # no physical errors
        elif reg == FR:
            value = self.uartfr
        elif reg == RIS:
            value = self.uartris
        elif reg == MIS:
            value = self.uartris & self.uartimsc
        elif reg == IMSC:
            value = self.uartimsc
        else:                                   # ICR is write-only; the rest reads as zero
            if reg != ICR:
                self._log(f"vpl011: unhandled read offset {off:#08x}")
            value = 0
        return (value >> shift) & ((1 << (8 * size)) - 1)

    def mmio_write(self, off: int, size: int, value: int) -> None:
        reg, shift = off & ~3, (off & 3) * 8
        mask = ((1 << (8 * size)) - 1) << shift
        value = (value << shift) & mask
        if reg == DR:
            self._write_data(value & 0xFF)
        elif reg == IMSC:
            with self._lock:
                self.uartimsc = (self.uartimsc & ~mask) | value
                self._update_interrupt()
        elif reg == ICR:
            with self._lock:
                self.uartris &= ~value
                self._update_interrupt()
        elif reg not in (RSR, FR, RIS, MIS):
            self._log(f"vpl011: unhandled write offset {off:#08x}")


def domain_vpl011_init(d: "Domain", gfn: int, console_domid: int) -> int:
    """XEN_DOMCTL_vuart_op INIT: map the ring page, allocate the backend's event channel, put
    the UART in every vCPU's address map. Returns the event channel or -errno."""
    from xenpy.common import event_channel
    from xenpy.public import errno

    if getattr(d, "vpl011", None) is not None or d.vgic is None:
        return -errno.EINVAL
    page = d.frame(gfn)
    if page is None:
        return -errno.EINVAL
    vgic = d.vgic
    holder: dict[str, int] = {}
    uart = VPL011(page, set_level=lambda level: vgic.set_level(0, GUEST_VPL011_SPI, level),
                  notify=lambda: event_channel.notify_via_xen_event_channel(d, holder["port"]),
                  log=lambda m: d.hv.log(f"d{d.domid}: {m}"))
    port = event_channel.alloc_unbound_xen(d, console_domid, uart.notification)
    if port < 0:
        return port
    holder["port"] = port
    uart.evtchn = port
    d.vpl011 = uart
    for v in d.vcpus:
        assert v.arch is not None
        v.arch.map_mmio(uart.base, uart.size, uart.mmio_read, uart.mmio_write)
    return port
