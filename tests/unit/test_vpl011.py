"""The vPL011 register model (xenpy.arch.arm.vpl011) against its console ring page, as
xen/arch/arm/vpl011.c behaves with the backend in a domain."""
from __future__ import annotations

import struct

from xenpy.arch.arm.vpl011 import (BUSY, DR, FR, ICR, IMSC, MIS, RIS, RSR, RTI, RXFE, RXFF,
                                   RXI, TXFE, TXFF, TXI, VPL011)
from xenpy.public.io import console as C


def uart():
    page = memoryview(bytearray(4096))
    levels, notes, logs = [], [], []
    u = VPL011(page, set_level=levels.append, notify=lambda: notes.append(1), log=logs.append)
    return u, page, levels, notes, logs


def idx(page, off):
    return struct.unpack_from("<I", page, off)[0]


def test_transmit_goes_to_the_out_ring_and_notifies_the_backend():
    u, page, levels, notes, _ = uart()
    assert u.mmio_read(FR, 4) == TXFE | RXFE               # reset state
    for ch in b"hi":
        u.mmio_write(DR, 4, ch)
    assert bytes(page[C.OUT_OFFSET:C.OUT_OFFSET + 2]) == b"hi" and idx(page, C.OUT_PROD) == 2
    assert len(notes) == 2 and not u.mmio_read(FR, 4) & TXFE
    assert u.mmio_read(RIS, 4) & TXI                       # room for half a FIFO and more
    assert levels == []                                    # TXI masked (IMSC = 0)
    u.mmio_write(IMSC, 4, TXI)
    assert levels == [True] and u.mmio_read(MIS, 4) == TXI
    # The backend took it all: FR.TXFE again.
    struct.pack_into("<I", page, C.OUT_CONS, 2)
    u.notification()
    assert u.mmio_read(FR, 4) & TXFE


def test_full_out_ring_sets_txff_and_busy_and_drops_further_bytes():
    u, page, _, notes, logs = uart()
    for i in range(C.OUT_SIZE):
        u.mmio_write(DR, 1, i & 0xFF)
    assert u.mmio_read(FR, 4) & (TXFF | BUSY) == TXFF | BUSY
    assert not u.mmio_read(RIS, 4) & TXI
    u.mmio_write(DR, 1, 0x55)                              # the guest ignored TXFF
    assert idx(page, C.OUT_PROD) == C.OUT_SIZE and logs == ["vpl011: Unexpected OUT ring buffer full"]
    struct.pack_into("<I", page, C.OUT_CONS, 100)          # xenconsoled took 100 bytes
    u.notification()
    assert not u.mmio_read(FR, 4) & (TXFF | BUSY)


def test_receive_from_the_in_ring_raises_and_clears_the_rx_interrupts():
    u, page, levels, notes, _ = uart()
    u.mmio_write(IMSC, 2, RXI | RTI)
    page[C.IN_OFFSET:C.IN_OFFSET + 3] = b"abc"
    struct.pack_into("<I", page, C.IN_PROD, 3)
    u.notification()                                       # xenconsoled produced input
    assert not u.mmio_read(FR, 4) & RXFE
    assert u.mmio_read(RIS, 4) & RTI and not u.mmio_read(RIS, 4) & RXI   # 3 < half a FIFO
    assert levels == [True]
    assert bytes(u.mmio_read(DR, 4) for _ in range(3)) == b"abc"
    assert idx(page, C.IN_CONS) == 3 and u.mmio_read(FR, 4) & RXFE
    assert levels == [True, False] and len(notes) == 3      # each read tells the backend
    assert u.mmio_read(RSR, 4) == 0


def test_in_ring_nearly_full_sets_rxi_and_rxff_and_icr_clears():
    u, page, levels, _, _ = uart()
    struct.pack_into("<I", page, C.IN_PROD, C.IN_SIZE)
    u.notification()
    assert u.mmio_read(FR, 4) & RXFF and u.mmio_read(RIS, 4) & (RXI | RTI) == RXI | RTI
    u.mmio_write(IMSC, 4, RXI)
    u.mmio_write(ICR, 4, RXI)
    assert not u.mmio_read(RIS, 4) & RXI and levels == [True, False]
    u.mmio_read(DR, 1)
    assert not u.mmio_read(FR, 4) & RXFF


def test_byte_accesses_and_unknown_offsets():
    u, _, _, _, logs = uart()
    u.mmio_write(IMSC + 1, 1, 0x01)                        # bit 8 through the second byte
    assert u.mmio_read(IMSC, 4) == 0x100 and u.mmio_read(IMSC + 1, 1) == 0x01
    assert u.mmio_read(0x24, 4) == 0 and u.mmio_read(ICR, 4) == 0      # IBRD: RAZ; ICR: WO
    u.mmio_write(FR, 4, 0)                                 # read-only: ignored
    assert u.mmio_read(FR, 4) == TXFE | RXFE
    assert logs == ["vpl011: unhandled read offset 0x000024"]
