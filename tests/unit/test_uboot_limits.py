"""The firmware and Xen's early boot against boot files a user got wrong: sizes that do not fit
the board, damaged script images, more Domain-0 vCPUs than Xen has, a dom0 module that is no
kernel. One line each, and no gigabytes of host memory spent on them."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xenpy.board.cubieboard2 import Cubieboard2
from xenpy.board.uboot import FirmwareError, make_script_image

ROOT = Path(__file__).resolve().parents[2]
SD = ROOT / "examples/cubieboard2/sd"
BOOT_CMD = ROOT / "bootscripts/cubieboard2/boot.cmd"


@pytest.fixture
def sd(tmp_path, monkeypatch) -> Path:
    card = tmp_path / "sd"
    shutil.copytree(SD, card)
    monkeypatch.chdir(card)
    return card


def line_of(text: str, prefix: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(prefix))


def boot_in_bounded_memory(card: Path, script: str, extra_mb: int = 600) -> str:
    """Boot `script` in a child whose address space may grow by only `extra_mb` beyond the
    board's RAM mapping: what used to build a 4 GB buffer fails there instead of swapping the
    machine. Returns the child's one-line outcome."""
    (card / "boot.cmd").write_text(script)
    code = textwrap.dedent(f"""
        import resource, sys
        from xenpy.board.cubieboard2 import Cubieboard2, RAM_SIZE
        from xenpy.board.uboot import FirmwareError
        size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) << 10
        limit = size + RAM_SIZE + ({extra_mb} << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            Cubieboard2().power_on({str(card)!r}, "boot.cmd")
            print("booted")
        except FirmwareError as e:
            print(e)
        except MemoryError:
            print("MemoryError")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=card, capture_output=True, text=True,
                       timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return (r.stdout.strip().splitlines() or [r.stderr.strip().splitlines()[-1]])[-1]


def test_fdt_addr_with_a_size_beyond_ram_is_refused_without_allocating_it(sd):
    text = BOOT_CMD.read_text().replace("fdt addr ${fdt_addr} 0x40000",
                                        "fdt addr ${fdt_addr} 0xffffffff")
    n = line_of(text, "fdt addr")
    assert boot_in_bounded_memory(sd, text) == (
        f"boot.cmd:{n}: fdt: libfdt fdt_open_into(): FDT_ERR_NOSPACE (a 0xffffffff-byte tree at "
        f"0x7ec00000 does not fit in RAM, which ends 0x1400000 bytes after it)")


def test_fdt_resize_by_gigabytes_is_refused_and_a_big_one_that_fits_costs_nothing(sd):
    text = BOOT_CMD.read_text().replace("fdt resize\n", "fdt resize 0x80000000\n")
    n = line_of(text, "fdt resize")
    assert boot_in_bounded_memory(sd, text).startswith(
        f"boot.cmd:{n}: fdt: libfdt fdt_shrink_to_minimum(): FDT_ERR_NOSPACE (a ")
    # 16 MB of room is within RAM: accepted, and the free space is not written (the child's
    # address space could not hold a 16 MB buffer on top of its limit otherwise).
    text = BOOT_CMD.read_text().replace("fdt resize\n", "fdt resize 0x1000000\n")
    assert boot_in_bounded_memory(sd, text, extra_mb=8) == "booted"


def test_a_boot_scr_with_a_bad_magic_is_refused_as_u_boot_does(sd):
    data = bytearray(make_script_image(BOOT_CMD.read_text()))
    data[0] ^= 0xFF                           # the magic number
    (sd / "boot.scr").write_bytes(bytes(data))
    with pytest.raises(FirmwareError) as e:
        Cubieboard2().power_on(sd)            # U-Boot's distro boot finds boot.scr
    assert str(e.value) == "boot.scr: not a usable script image: Bad Magic Number"


def test_a_boot_scr_with_a_bad_data_crc_is_refused_as_u_boot_does(sd):
    data = bytearray(make_script_image(BOOT_CMD.read_text()))
    data[-1] ^= 0x20
    (sd / "boot.scr").write_bytes(bytes(data))
    with pytest.raises(FirmwareError) as e:
        Cubieboard2().power_on(sd)
    assert str(e.value) == "boot.scr: not a usable script image: Bad Data CRC"


def test_dom0_max_vcpus_above_what_xen_supports_is_capped_as_xen_caps_it(sd):
    text = BOOT_CMD.read_text().replace("dom0_max_vcpus=1", "dom0_max_vcpus=1000000")
    (sd / "boot.cmd").write_text(text)
    result = Cubieboard2().power_on(sd, "boot.cmd")
    # Xen 4.4 on Arm: MAX_VIRT_CPUS is 8 (a GICv2 addresses 8 CPUs); more vCPUs than the
    # board's 2 pCPUs is allowed, as in Xen.
    assert result.config.dom0_max_vcpus == 8 and result.config.nr_pcpus == 2
    assert "dom0_max_vcpus=1000000 capped at MAX_VIRT_CPUS (8)" in result.config.boot_log


@pytest.mark.parametrize("content, reason", [
    (b"\xd0\x0d\xfe\xed" + bytes(60), "it is a device tree blob"),
    (b"#!/bin/sh\necho this is no kernel\n" * 4, "it is a text file"),
    (bytes(4096), "it is all zeros (nothing was loaded there?)"),
], ids=["dtb", "text", "zeros"])
def test_a_dom0_module_that_is_not_a_zimage_is_refused_with_the_reason(sd, content, reason):
    (sd / "zImage").write_bytes(content)
    (sd / "boot.cmd").write_text(BOOT_CMD.read_text())
    with pytest.raises(FirmwareError) as e:
        Cubieboard2().power_on(sd, "boot.cmd")
    assert str(e.value).startswith(f"boot.cmd:{line_of(BOOT_CMD.read_text(), 'bootz')}: bootz: "
                                   "Xen: dom0 kernel: /chosen/module@0 (0x7e000000): not a ")
    assert str(e.value).endswith(reason)


def test_an_arm64_dom0_kernel_is_refused_by_this_arm32_xen(sd):
    image = bytearray(64)
    image[56:60] = b"ARM\x64"                  # the arm64 Image header's magic
    (sd / "zImage").write_bytes(bytes(image) + bytes(4096))
    (sd / "boot.cmd").write_text(BOOT_CMD.read_text())
    with pytest.raises(FirmwareError) as e:
        Cubieboard2().power_on(sd, "boot.cmd")
    assert str(e.value).endswith("dom0 kernel: /chosen/module@0 (0x7e000000): an arm64 Image; "
                                 "this board's Xen is arm32 and boots an arm32 zImage (or uImage) "
                                 "as Domain-0")
