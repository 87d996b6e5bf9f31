"""The Cubietech Cubieboard2: an Allwinner A20 (two Cortex-A7 cores) with 1 GiB of RAM at
0x40000000, booted by U-Boot from an SD card.

What the board has that a domain can be given (`iomem = [...]` in a domU's cfg):
- the PIO (GPIO) controller at 0x01c20800, within the two pages 0x01c20000-0x01c21fff
  (`a20_pio.py`: pin levels readable from the host);
- UART0 at 0x01c28000 (a 16550-compatible DesignWare UART: what a guest writes to it is logged
  as `(uart0) ...`), unless Xen keeps it as its console (`dtuart=` on Xen's command line).
Its device tree is `bootscripts/cubieboard2/cubieboard2.dts`, built into cubieboard2.dtb with

    python -m xenpy.board.cubieboard2 bootscripts/cubieboard2/cubieboard2.dts \\
        bootscripts/cubieboard2/cubieboard2.dtb

Powering on runs the firmware (uboot.py) with the SD card directory and a boot script; when the
script boots Xen, Xen's early boot (common/bootfdt.py) reads the device tree the script prepared
and the result is the hypervisor's configuration: pCPUs from /cpus, RAM from /memory, Domain-0
from the command line (dom0_mem, dom0_max_vcpus, dom0_vcpus_pin) and the /chosen kernel module.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xenpy.board.a20_pio import PAGES_BASE, PAGES_SIZE, A20Pio, PioPages
from xenpy.board.uboot import CommandError, FirmwareError, UBoot
from xenpy.arch.arm.vtimer import CNTFRQ_HZ
from xenpy.common.bootfdt import BootError, XenBoot, start_xen
from xenpy.common.hypervisor import HypervisorConfig, MmioDevice
from xenpy.loader.fdt import Fdt, FdtError, compile_dts

NAME = "cubieboard2"
MODEL = "Cubietech Cubieboard2"
CORES = 2
RAM_BASE = 0x40000000
RAM_SIZE = 1 << 30
UART0_BASE = 0x01C28000
UART_PAGE = 0x1000                    # UART0-3 share the page; UART0 is its first 0x400 bytes
DTB_NAME = "sun7i-a20-cubieboard2.dtb"   # U-Boot's $fdtfile for this board


class DwUart:
    """UART0: the registers a polling driver uses (reg-shift 2, DesignWare APB 16550).

    Transmit is immediate (LSR always says THR empty); nothing is ever received. Lines written
    are passed to `log`. Other UARTs of the page, and registers not listed, read as zero.
    """

    THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR, USR = 0, 4, 8, 0xC, 0x10, 0x14, 0x18, 0x1C, 0x7C
    LSR_THRE_TEMT = 0x60
    USR_TFNF_TFE = 0x06

    def __init__(self, name: str = "uart0", log: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.log = log or (lambda _line: None)
        self.regs = {self.IER: 0, self.LCR: 0, self.MCR: 0, self.SCR: 0}
        self.dll = self.dlh = 0
        self._line: dict[int, bytearray] = {}
        self._lock = threading.Lock()

    def read(self, domid: int, off: int, size: int) -> int:
        dlab = self.regs[self.LCR] & 0x80
        if off == self.THR:
            return self.dll if dlab else 0
        if off == self.IER:
            return self.dlh if dlab else self.regs[self.IER]
        if off == self.IIR_FCR:
            return 0xC1               # FIFOs enabled, no interrupt pending
        if off == self.LSR:
            return self.LSR_THRE_TEMT
        if off == self.USR:
            return self.USR_TFNF_TFE
        return self.regs.get(off, 0)

    def write(self, domid: int, off: int, size: int, value: int) -> None:
        value &= 0xFF
        dlab = self.regs[self.LCR] & 0x80
        if off == self.THR and dlab:
            self.dll = value
        elif off == self.IER and dlab:
            self.dlh = value
        elif off == self.THR:
            with self._lock:
                line = self._line.setdefault(domid, bytearray())
                if value == 0x0A:
                    text = line.decode("latin-1").rstrip("\r")
                    line.clear()
                else:
                    line.append(value)
                    return
            self.log(f"({self.name}) d{domid}: {text}")
        elif off in self.regs:
            self.regs[off] = value


@dataclass
class PowerOn:
    """A successful boot: the hypervisor's configuration and what the serial console showed."""
    config: HypervisorConfig
    xen: XenBoot
    console: list[str] = field(default_factory=list)


class Cubieboard2:
    def __init__(self) -> None:
        self.pio = A20Pio()
        self.pio_pages = PioPages(self.pio)
        self.uart0 = DwUart()

    # -- the devices a domain can be given ----------------------------------------------------

    def devices(self, xen_uart: bool = False) -> tuple[MmioDevice, ...]:
        pages = self.pio_pages
        return (
            MmioDevice("pio", PAGES_BASE, PAGES_SIZE,
                       lambda domid, off, size: pages.read(off, size, f"d{domid}"),
                       lambda domid, off, size, value: pages.write(off, size, value, f"d{domid}"),
                       model=self.pio),
            MmioDevice("uart0", UART0_BASE, UART_PAGE,
                       lambda domid, off, size: self.uart0.read(domid, off, size)
                       if off < 0x400 else 0,
                       lambda domid, off, size, value: self.uart0.write(domid, off, size, value)
                       if off < 0x400 else None,
                       xen_owned=xen_uart, model=self.uart0),
        )

    def attach(self, log: Callable[[str], None]) -> None:
        """Device messages go to the hypervisor's console (xl dmesg) from now on."""
        self.pio.log = log
        self.uart0.log = log

    # -- power on -------------------------------------------------------------------------------

    def power_on(self, sd: str | Path, script: str | Path | None = None, *,
                 layout: str = "4.4",
                 console: Callable[[str], None] | None = None) -> PowerOn:
        """Run the firmware and Xen's early boot. FirmwareError (one line) if it cannot boot."""
        sd = Path(sd)
        if not sd.is_dir():
            raise FirmwareError(f"{sd}: no such SD card directory")
        fw = UBoot(sd, ram_base=RAM_BASE, ram_size=RAM_SIZE, console=console,
                   board_env={"fdtfile": DTB_NAME, "board_name": NAME})
        try:
            fw.print("U-Boot (xenpy firmware model)")
            fw.print(f"CPU:   Allwinner A20 (SUN7I), {CORES} x Cortex-A7")
            fw.print(f"Model: {MODEL}")
            fw.print(f"DRAM:  {RAM_SIZE >> 20} MiB")
            fw.print(f"MMC:   SD card {sd}")
            if script is None:
                handoff = fw.run_file(self._distro_boot_script(fw, sd), "boot.scr")
            else:
                handoff = fw.run_file(script, str(script))

            def read_phys(addr: int, size: int) -> bytes:
                try:
                    return fw.ram.read(addr, size)
                except CommandError as e:
                    raise BootError(str(e)) from None

            try:
                xen = start_xen(read_phys, handoff.entry, handoff.fdt_addr, cores=CORES,
                                board_ram=(RAM_BASE, RAM_SIZE))
            except BootError as e:
                raise FirmwareError(f"{handoff.script}:{handoff.line}: {handoff.command}: "
                                    f"Xen: {e}") from None
        finally:
            fw.ram.close()
        xen_uart = xen.console_uart is not None and \
            _reg_base(xen.info.fdt, xen.console_uart) == UART0_BASE
        config = HypervisorConfig(
            nr_pcpus=xen.nr_pcpus, total_mem_mb=xen.total_mem >> 20,
            dom0_mem_mb=(xen.dom0_mem + (1 << 20) - 1) >> 20,
            dom0_max_vcpus=xen.dom0_max_vcpus, dom0_vcpus_pin=xen.dom0_vcpus_pin,
            layout=layout, cmdline=xen.info.xen_cmdline, devices=self.devices(xen_uart),
            boot_log=tuple(xen.log),
            # The host DT gives the timer a clock-frequency, so Xen passes one on to guests:
            # the rate of the counter they really see, this model's CNTFRQ.
            timer_clock_frequency=CNTFRQ_HZ if xen.info.timer_clock_frequency else 0)
        return PowerOn(config, xen, fw.out)

    @staticmethod
    def _distro_boot_script(fw: UBoot, sd: Path) -> Path:
        """No script given: what distro boot does, boot.scr.uimg or boot.scr in / or /boot/."""
        for prefix in ("", "boot/"):
            for name in ("boot.scr.uimg", "boot.scr"):
                if (sd / prefix / name).is_file():
                    fw.print(f"Found U-Boot script /{prefix}{name}")
                    return sd / prefix / name
        raise FirmwareError(f"{sd}: no boot script given, and the SD card has no boot.scr "
                            f"(looked for /boot.scr.uimg, /boot.scr, /boot/boot.scr)")


def _reg_base(fdt: Fdt, path: str) -> int | None:
    """The first address of a node's reg, in its parent's #address-cells."""
    node = fdt.find(path)
    parent = fdt.parent_of(node) if node is not None else None
    if node is None or parent is None or "reg" not in node.props:
        return None
    cells = parent.u32("#address-cells", 2) or 2
    raw = node.props["reg"]
    if len(raw) < 4 * cells:
        return None
    return int.from_bytes(raw[:4 * cells], "big")


def build_dtb(dts: Path) -> bytes:
    return compile_dts(dts.read_text(), dts.name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m xenpy.board.cubieboard2 BOARD.dts OUT.dtb", file=sys.stderr)
        return 2
    try:
        blob = build_dtb(Path(argv[0]))
    except (OSError, FdtError) as e:
        print(f"cubieboard2: {e}", file=sys.stderr)
        return 1
    Path(argv[1]).write_bytes(blob)
    print(f"{argv[1]}: {len(blob)} bytes")
    return 0


def pio_of(devices: tuple[MmioDevice, ...]) -> A20Pio | None:
    """The PIO model of a board's device list (for dom0 services in the board process)."""
    return next((d.model for d in devices if isinstance(d.model, A20Pio)), None)


__all__ = ["Cubieboard2", "DwUart", "PowerOn", "build_dtb", "pio_of", "CORES", "RAM_BASE",
           "RAM_SIZE", "UART0_BASE", "DTB_NAME"]

if __name__ == "__main__":
    sys.exit(main())
