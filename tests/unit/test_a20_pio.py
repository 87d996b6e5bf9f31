"""The A20 PIO register model (xenpy.board.a20_pio): the layout a GPIO driver programs, pin
levels seen from the host, and the rest of the two passthrough pages."""
from __future__ import annotations

import pytest

from xenpy.board.a20_pio import PIO_BASE, PAGES_BASE, A20Pio, PioPages, parse_pin

PD = 3 * 0x24                     # bank D's registers, from the PIO base
CFG1, DAT, DRV0, DRV1, PULL0, PULL1 = 0x04, 0x10, 0x14, 0x18, 0x1C, 0x20


@pytest.fixture
def board():
    lines: list[str] = []
    pio = A20Pio(log=lines.append)
    return pio, PioPages(pio), lines


def at(reg: int) -> int:
    """Offset of a PIO register within the two pages the board exposes."""
    return PIO_BASE - PAGES_BASE + reg


def test_pd12_as_output_follows_the_data_register(board):
    pio, pages, lines = board
    assert pio.function("PD12") == "gpio_in" and pio.level("PD12") == 0
    pages.write(at(PD + CFG1), 4, 1 << 16, "d1")          # PD12 -> function 1, output
    assert pio.function("PD12") == "gpio_out"
    pages.write(at(PD + DAT), 4, 1 << 12, "d1")
    assert pio.level("PD12") == 1
    assert pages.read(at(PD + DAT), 4) == 1 << 12
    pages.write(at(PD + DAT), 4, 0, "d1")
    assert pio.level("PD12") == 0
    assert lines == ["a20-pio: PD12 is now gpio_out (d1)", "a20-pio: PD12 -> low (d1)",
                     "a20-pio: PD12 -> high (d1)", "a20-pio: PD12 -> low (d1)"]


def test_cfg_registers_hold_8_pins_of_4_bits_with_bit_3_reserved(board):
    pio, pages, _ = board
    pages.write(at(PD), 4, 0xFFFFFFFF)                      # PD0-PD7 all function 7
    assert pages.read(at(PD), 4) == 0x77777777
    assert pio.function("PD0") == "reserved" and pio.function("PD7") == "reserved"
    pages.write(at(PD + 0x0C), 4, 0x12345)                  # CFG3: PD24-PD27 exist, PD28+ not
    assert pages.read(at(PD + 0x0C), 4) == 0x2345
    assert pio.function("PD24") == "func5" and pio.function("PD27") == "func2"


def test_pins_a_bank_lacks_read_as_zero(board):
    _pio, pages, _ = board
    pages.write(at(5 * 0x24 + DAT), 4, 0xFFFFFFFF)         # bank F has 6 pins
    pages.write(at(5 * 0x24), 4, 0x11111111)
    assert pages.read(at(5 * 0x24), 4) == 0x00111111
    assert pages.read(at(5 * 0x24 + DAT), 4) == 0x3F


def test_drive_and_pull_are_2_bits_per_pin(board):
    pio, pages, _ = board
    pages.write(at(PD + DRV0), 4, 0xFFFFFFFF)
    pages.write(at(PD + DRV1), 4, 0xFFFFFFFF)               # PD16-PD27: 12 pins
    assert pages.read(at(PD + DRV0), 4) == 0xFFFFFFFF
    assert pages.read(at(PD + DRV1), 4) == 0x00FFFFFF
    pages.write(at(PD + PULL0), 4, 1 << (3 * 2))            # PD3 pull-up
    pages.write(at(PD + PULL1), 4, 2 << (4 * 2))            # PD20 pull-down
    assert pio.pull_of("PD3") == "pull-up" and pio.pull_of("PD20") == "pull-down"


def test_an_input_reads_its_pull_or_what_drives_it(board):
    pio, pages, _ = board
    pages.write(at(0x24 + PULL0), 4, 1 << (3 * 2))          # PB3: input with pull-up
    assert pio.level("PB3") == 1 and pages.read(at(0x24 + DAT), 4) == 1 << 3
    pio.drive("PB3", 0)                                     # a button pulls it low
    assert pages.read(at(0x24 + DAT), 4) == 0
    pio.drive("PB3", None)
    assert pio.level("PB3") == 1
    # The output latch is kept while the pin is an input and drives it once it is an output.
    pages.write(at(0x24 + DAT), 4, 1 << 4)
    assert pio.level("PB4") == 0
    pages.write(at(0x24), 4, 1 << 16)                       # PB4 output
    assert pio.level("PB4") == 1


def test_byte_and_halfword_accesses_touch_only_their_lanes(board):
    pio, pages, _ = board
    pages.write(at(PD + CFG1), 4, 0x11111111)               # PD8-PD15 outputs
    pages.write(at(PD + DAT + 1), 1, 0x10)                  # byte 1, bit 4 -> PD12
    assert pio.level("PD12") == 1 and pages.read(at(PD + DAT), 4) == 1 << 12
    pages.write(at(PD + DAT + 2), 2, 0x0001)                # high halfword: PD16's latch
    assert pio.level("PD12") == 1
    assert pages.read(at(PD + DAT + 1), 1) == 0x10
    assert pages.read(at(PD + CFG1 + 2), 2) == 0x1111


def test_the_rest_of_the_two_pages_reads_zero_and_is_logged_once_per_register(board):
    _pio, pages, lines = board
    assert pages.read(0x0000, 4, "d1") == 0                 # the clock controller
    pages.write(0x0000, 4, 0xDEADBEEF, "d1")
    assert pages.read(0x0000, 4) == 0
    assert pages.read(0x1FFC, 4, "d1") == 0                 # last word of the second page
    assert pages.read(at(0x200), 4) == 0                    # PIO interrupt config: not modelled
    assert lines == [
        "a20-pio: read of unmodelled register 0x01c20000 (reads as zero, writes ignored; "
        "logged once) (d1)",
        "a20-pio: read of unmodelled register 0x01c21ffc (reads as zero, writes ignored; "
        "logged once) (d1)",
        "a20-pio: read of unmodelled register 0x01c20a00 (reads as zero, writes ignored; "
        "logged once)"]


@pytest.mark.parametrize("name, expect", [("PD12", (3, 12)), ("pa0", (0, 0)), ("PI21", (8, 21))])
def test_pin_names(name, expect):
    assert parse_pin(name) == expect


@pytest.mark.parametrize("name, message", [
    ("PD28", "the A20 has no pin PD28 (bank D has PD0-PD27)"),
    ("PJ1", "'PJ1' is not an A20 pin name (PA0 ... PI21)"),
    ("GPIO12", "'GPIO12' is not an A20 pin name (PA0 ... PI21)")])
def test_bad_pin_names_say_why(name, message):
    with pytest.raises(ValueError) as e:
        A20Pio().level(name)
    assert str(e.value) == message


def test_uart0_prints_lines_a_guest_writes():
    from xenpy.board.cubieboard2 import DwUart
    lines: list[str] = []
    uart = DwUart(log=lines.append)
    assert uart.read(1, DwUart.LSR, 4) & 0x60 == 0x60      # transmitter empty: a poller writes
    uart.write(1, DwUart.LCR, 4, 0x83)                     # DLAB: the divisor latch, not THR
    uart.write(1, DwUart.THR, 4, 13)
    uart.write(1, DwUart.LCR, 4, 0x03)
    for ch in b"hi\r\n":
        uart.write(1, DwUart.THR, 4, ch)
    assert lines == ["(uart0) d1: hi"] and uart.dll == 13


def test_dom0_reads_the_pio_through_devmem_but_not_xens_uart():
    """privcmd's "devmem": dom0's /dev/mem view of the board's devices (what `xenpy proc read
    erika-xen/pin_state` uses), refused for the UART Xen keeps and where there is no device."""
    from toolstack.erika_xen import read_pin
    from toolstack.xc import LocalTransport
    from xenpy.board.cubieboard2 import Cubieboard2
    from xenpy.board.privcmd import Privcmd
    from xenpy.common.hypervisor import Hypervisor, HypervisorConfig
    from xenpy.public import errno

    cb = Cubieboard2()
    hv = Hypervisor(HypervisorConfig(devices=cb.devices(xen_uart=True)))
    call = Privcmd(hv).call
    cb.pio_pages.write(at(PD + CFG1), 4, 1 << 16)           # PD12 an output, driven high
    cb.pio_pages.write(at(PD + DAT), 4, 1 << 12)
    assert read_pin(12, LocalTransport(Privcmd(hv))) == 1
    assert read_pin(11, LocalTransport(Privcmd(hv))) == 0
    assert call({"op": "devmem", "addr": PIO_BASE + PD + DAT})[0] == \
        {"ret": 0, "out": {"value": 1 << 12}}
    assert call({"op": "devmem", "addr": PIO_BASE + PD + DAT + 1, "size": 1})[0]["out"] == \
        {"value": 1 << 4}
    assert call({"op": "devmem", "addr": 0x01C28000})[0]["ret"] == -errno.EPERM   # Xen's UART
    assert call({"op": "devmem", "addr": 0x10000000})[0]["ret"] == -errno.ENXIO
    assert call({"op": "devmem", "addr": PIO_BASE + 2})[0]["ret"] == -errno.EINVAL
