"""The Cubieboard2's firmware (xenpy.board.uboot), Xen's early boot from the device tree it
prepares (xenpy.common.bootfdt), and the boot files shipped for the board."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.board.cubieboard2 import RAM_BASE, RAM_SIZE, Cubieboard2
from xenpy.board.uboot import (IH_TYPE_KERNEL, FirmwareError, UBoot, make_legacy_image,
                               make_script_image, script_from_image)
from xenpy.common.bootfdt import boot_fdt_info, parse_cmdline, parse_size_and_unit
from xenpy.loader.fdt import Fdt, FdtError, Node, compile_dts

ROOT = Path(__file__).resolve().parents[2]
SD = ROOT / "examples/cubieboard2/sd"
BOOT_CMD = ROOT / "bootscripts/cubieboard2/boot.cmd"
DTS = ROOT / "bootscripts/cubieboard2/cubieboard2.dts"
DTB = ROOT / "bootscripts/cubieboard2/cubieboard2.dtb"


def line_of(prefix: str) -> int:
    return next(n for n, line in enumerate(BOOT_CMD.read_text().splitlines(), 1)
                if line.startswith(prefix))


BOOTZ = line_of("bootz")


@pytest.fixture
def sd(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped SD card that a test may change (and the current directory, so a
    script on it is named as a user in that directory would name it)."""
    card = tmp_path / "sd"
    shutil.copytree(SD, card)
    monkeypatch.chdir(card)
    return card


def firmware(card: Path) -> UBoot:
    return UBoot(card, ram_base=RAM_BASE, ram_size=RAM_SIZE)


def run(fw: UBoot, text: str) -> list[str]:
    """Run a script that does not boot; return what it printed."""
    with pytest.raises(FirmwareError, match="the script ended without booting"):
        fw.run_script(text)
    return fw.out[1:]


def error(fw: UBoot, text: str) -> str:
    with pytest.raises(FirmwareError) as e:
        fw.run_script(text)
    return str(e.value)


def script(replace: dict[str, str]) -> str:
    """The shipped boot.cmd with the first line starting with each key replaced (line numbers
    stay: "" blanks the line)."""
    lines = BOOT_CMD.read_text().splitlines()
    for old, new in replace.items():
        hits = [i for i, line in enumerate(lines) if line.startswith(old)]
        assert hits, old
        lines[hits[0]] = new
    return "\n".join(lines) + "\n"


def boot(card: Path, text: str | None = None, name: str = "boot.cmd"):
    if text is not None:
        (card / name).write_text(text)
    return Cubieboard2().power_on(card, name if text is not None else None)


# -- the hush subset -----------------------------------------------------------------------------

def test_quoting_expansion_and_comments(sd):
    fw = firmware(sd)
    out = run(fw, "setenv a 1 2   # a comment\n"
                  'setenv b "${a} x"; echo $b\n'
                  "echo '${a}' \"q\\\"uote\" \\#not-a-comment\n"
                  "empty=; echo [${empty}] [\"${empty}\"] ${undefined}\n"
                  "setenv b\n"
                  "echo b=${b}\n")
    assert out == ["1 2 x", '${a} q"uote #not-a-comment', "[] []", "b="]
    assert "b" not in fw.env and fw.env["a"] == "1 2"


def test_an_unquoted_expansion_splits_into_arguments(sd):
    fw = firmware(sd)
    fw.env["cells"] = "<0x10 0x20>"
    run(fw, "fatload mmc 0 0x50000000 /sun7i-a20-cubieboard2.dtb\n"
            "fdt addr 0x50000000 0x2000\nfdt mknode / extra\nfdt set /extra reg ${cells}\n")
    fdt = Fdt.parse(fw.ram.read(0x50000000, 0x2000))
    assert fdt.find("/extra").props["reg"] == struct.pack(">II", 0x10, 0x20)


def test_unknown_and_unsupported_commands_name_the_line(sd):
    assert error(firmware(sd), "setenv a b\n\nfrobnicate 1\n") == \
        "boot.cmd:3: frobnicate: Unknown command 'frobnicate' - try 'help'"
    assert error(firmware(sd), "if true; then echo x; fi\n").startswith(
        "boot.cmd:1: if: not supported by this firmware model")
    assert error(firmware(sd), "echo a && echo b\n") == \
        "boot.cmd:1: &&: command lists are not supported by this firmware model"
    assert error(firmware(sd), 'echo "open\n') == 'boot.cmd:1: unterminated " quote'


# -- loading from the SD card ---------------------------------------------------------------------

def test_fatload_puts_the_file_in_ram_and_sets_filesize(sd):
    fw = firmware(sd)
    out = run(fw, "ext4load mmc 0:1 0x48000000 zImage\nload mmc 0 0x48100000 /xen 0x10 0x24\n")
    z = (sd / "zImage").read_bytes()
    assert fw.ram.read(0x48000000, len(z)) == z
    assert fw.ram.read(0x48100000, 0x10) == (sd / "xen").read_bytes()[0x24:0x34]
    assert fw.env["filesize"] == "10" and out[0] == f"{len(z)} bytes read in 0 ms"


@pytest.mark.parametrize("cmd, message", [
    ("fatload mmc 0 0x48000000 /nope",
     "boot.cmd:1: fatload: ** File not found /nope ** (not on the SD card {sd})"),
    ("fatload mmc 0 0x48000000 ../sd/xen",
     "boot.cmd:1: fatload: ** File not found ../sd/xen ** (not on the SD card {sd})"),
    ("fatload usb 0 0x48000000 /xen",
     "boot.cmd:1: fatload: ** Bad device specification usb 0 ** (this board has one storage "
     "device: the SD card, mmc 0)"),
    ("fatload mmc 0:2 0x48000000 /xen",
     "boot.cmd:1: fatload: ** No partition 2 on mmc 0 ** (the SD card directory is partition 1)"),
    ("fatload mmc 0 0x20000000 /xen",
     "boot.cmd:1: fatload: 0x20000000+0x98 is outside RAM (0x40000000-0x7fffffff)"),
    ("fatload mmc 0 xyz /xen", "boot.cmd:1: fatload: bad load address 'xyz' (a hex number)"),
])
def test_load_errors(sd, cmd, message):
    assert error(firmware(sd), cmd + "\n") == message.format(sd=sd)


# -- fdt ------------------------------------------------------------------------------------------

def test_fdt_addr_checks_the_header(sd):
    assert error(firmware(sd), "fatload mmc 0 0x48000000 /xen\nfdt addr 0x48000000\n") == (
        "boot.cmd:2: fdt: libfdt fdt_check_header(): FDT_ERR_BADMAGIC (not a device tree "
        "(magic 0x0000a0e1, expected 0xd00dfeed))")
    assert error(firmware(sd), "fdt set /chosen x <1>\n").startswith(
        "boot.cmd:1: fdt: No FDT memory address configured.")


def test_a_tree_with_no_room_refuses_new_nodes_until_resized(sd):
    fw = firmware(sd)
    load = "fatload mmc 0 0x49000000 /sun7i-a20-cubieboard2.dtb\nfdt addr 0x49000000\n"
    assert error(fw, load + "fdt mknod /chosen module@0\n") == (
        "boot.cmd:3: fdt: libfdt fdt_add_subnode(): FDT_ERR_NOSPACE (device tree needs 1607 "
        "bytes, only 1587 available; use 'fdt resize' or a bigger size in 'fdt addr')")
    fw = firmware(sd)
    run(fw, load + "fdt resize\nfdt mknod /chosen module@0\n")
    header = Fdt.header_size(fw.ram.read(0x49000000, 8))
    assert header == 0x1000            # ends on a page boundary
    assert Fdt.parse(fw.ram.read(0x49000000, header)).find("/chosen/module@0") is not None


def test_fdt_set_parses_values_as_uboot_does(sd):
    fw = firmware(sd)
    fw.env["kernel_addr_r"] = "0x7e000000"
    out = run(fw, "fatload mmc 0 0x49000000 /sun7i-a20-cubieboard2.dtb\nfdt addr 0x49000000 0x4000\n"
                  "setenv bootargs console=dtuart dom0_mem=64M\nfdt chosen\n"
                  "fdt set /chosen \\#address-cells <1>\n"
                  "fdt set /chosen cells <${kernel_addr_r} 0x${filesize} 010 12>\n"
                  "fdt set /chosen keep <7 ?>\n"
                  'fdt set /chosen compatible "xen,linux-zimage" "xen,multiboot-module"\n'
                  "fdt set /chosen bytes [01 ab]\nfdt set /chosen empty\n"
                  "fdt print /chosen\nfdt print /chosen cells\n"
                  "fdt get value v /chosen compatible\n")
    fdt = Fdt.parse(fw.ram.read(0x49000000, 0x4000))
    chosen = fdt.find("/chosen")
    assert chosen.props["cells"] == struct.pack(">4I", 0x7e000000, 0x633, 8, 12)
    assert chosen.props["bootargs"] == b"console=dtuart dom0_mem=64M\0"
    assert out[-11:] == [
        "chosen {",
        '\tstdout-path = "serial0:115200n8";',
        '\tbootargs = "console=dtuart dom0_mem=64M";',
        "\t#address-cells = <0x00000001>;",
        "\tcells = <0x7e000000 0x00000633 0x00000008 0x0000000c>;",
        "\tkeep = <0x00000007 0x00000000>;",
        '\tcompatible = "xen,linux-zimage", "xen,multiboot-module";',
        "\tbytes = [01 ab];",
        "\tempty;",
        "};",
        "cells = <0x7e000000 0x00000633 0x00000008 0x0000000c>"]
    assert fw.env["v"] == "xen,linux-zimage"


def test_fdt_set_reports_a_cell_it_cannot_convert(sd):
    # ${kernel_addr_r} without 0x: U-Boot reads "7" and stops at the "e".
    assert error(firmware(sd), "fatload mmc 0 0x49000000 /sun7i-a20-cubieboard2.dtb\n"
                               "fdt addr 0x49000000 0x4000\nsetenv k 7e000000\n"
                               "fdt set /chosen reg <${k} 0x10>\n") == \
        'boot.cmd:4: fdt: Sorry, I could not convert "e000000"'
    assert error(firmware(sd), "fatload mmc 0 0x49000000 /sun7i-a20-cubieboard2.dtb\n"
                               "fdt addr 0x49000000 0x4000\nfdt set /nonode x <1>\n") == (
        "boot.cmd:3: fdt: libfdt fdt_path_offset() returned FDT_ERR_NOTFOUND (no node /nonode)")


# -- booting --------------------------------------------------------------------------------------

def test_bootz_hands_over_with_the_device_tree_in_place(sd):
    fw = firmware(sd)
    h = fw.run_script(BOOT_CMD.read_text())
    assert (h.entry, h.fdt_addr, h.command, h.line) == (0x7EA00000, 0x7EC00000, "bootz", BOOTZ)
    assert "   Using Device Tree in place at 7ec00000, end 7ec03fff" in fw.out
    fdt = Fdt.parse(fw.ram.read(0x7EC00000, 0x4000))
    module = fdt.find("/chosen/module@0")
    assert module.strings("compatible") == ["xen,linux-zimage", "xen,multiboot-module"]
    assert module.props["reg"] == struct.pack(">II", 0x7E000000, 0x90)


def test_bootz_relocates_the_tree_unless_fdt_high_says_not(sd):
    fw = firmware(sd)
    h = fw.run_script(script({"setenv fdt_high": ""}))
    assert h.fdt_addr == 0x49FFC000            # below bootm_low + bootm_size (0x4a000000)
    assert "   Loading Device Tree to 49ffc000, end 49ffffff ... OK" in fw.out


def test_bootz_refuses_what_is_not_a_zimage(sd):
    text = script({"bootz": "bootz ${fdt_addr} - ${fdt_addr}"})
    assert error(firmware(sd), text) == \
        f"boot.cmd:{BOOTZ}: bootz: zimage: Bad magic! (no ARM zImage at 0x7ec00000)"


def test_bootm_loads_a_kernel_uimage(sd):
    xen = (sd / "xen").read_bytes()
    (sd / "xen.uimg").write_bytes(make_legacy_image(xen, image_type=IH_TYPE_KERNEL, load=0x7F000000,
                                                    entry=0x7F000000, name="Xen"))
    fw = firmware(sd)
    h = fw.run_script(script({"fatload mmc 0 ${xen_addr_r}": "fatload mmc 0 ${xen_addr_r} /xen.uimg",
                              "bootz": "bootm ${xen_addr_r} - ${fdt_addr}"}))
    assert (h.entry, h.command) == (0x7F000000, "bootm")
    assert fw.ram.read(0x7F000000, len(xen)) == xen
    assert "   Image Name:   Xen" in fw.out and "   Loading Kernel Image ... OK" in fw.out


def test_bootm_checks_the_image(sd):
    good = make_legacy_image(b"x" * 64, image_type=IH_TYPE_KERNEL, load=0x7F000000)
    (sd / "crc.uimg").write_bytes(good[:-1] + b"y")
    (sd / "scr.uimg").write_bytes(make_script_image("echo hi\n"))
    base = BOOT_CMD.read_text().replace("bootz ${xen_addr_r}", "bootm ${xen_addr_r}")
    assert error(firmware(sd), base.replace("/xen\n", "/crc.uimg\n")) == \
        f"boot.cmd:{BOOTZ}: bootm: Bad Data CRC"
    assert error(firmware(sd), base.replace("/xen\n", "/scr.uimg\n")) == (
        f"boot.cmd:{BOOTZ}: bootm: Wrong Image Type for bootm command (6: Script); ERROR: can't get "
        "kernel image!")
    assert error(firmware(sd), base) == \
        f"boot.cmd:{BOOTZ}: bootm: Wrong Image Format for bootm command; ERROR: can't get kernel image!"


# -- the board: firmware, then Xen ---------------------------------------------------------------

def test_the_guide_boots_xen_with_dom0_as_its_command_line_says(sd):
    result = boot(sd, BOOT_CMD.read_text())
    c = result.config
    assert (c.nr_pcpus, c.total_mem_mb, c.dom0_mem_mb, c.dom0_max_vcpus, c.dom0_vcpus_pin) == \
        (2, 1024, 128, 1, True)
    assert c.cmdline == ("console=dtuart dtuart=/soc@01c00000/serial@01c28000 dom0_mem=128M "
                         "dom0_max_vcpus=1 dom0_vcpus_pin")
    assert {d.name: d.xen_owned for d in c.devices} == {"pio": False, "uart0": True}
    assert result.xen.info.dom0_cmdline == \
        "console=hvc0 ro root=/dev/mmcblk0p2 rootwait clk_ignore_unused"
    assert "MODULE[1]: 000000007e000000 - 000000007e000090 Kernel" in c.boot_log
    assert result.console[-2] == "Starting kernel ..."


def test_boot_scr_and_distro_boot(sd):
    (sd / "boot.scr").write_bytes(make_script_image(script({"setenv bootargs": (
        'setenv bootargs "console=dtuart dom0_mem=262144 no-dom0_vcpus_pin"')})))
    result = boot(sd)                           # no script given: the card's boot.scr
    c = result.config
    assert "Found U-Boot script /boot.scr" in result.console
    assert (c.dom0_mem_mb, c.dom0_max_vcpus, c.dom0_vcpus_pin) == (256, None, False)
    # No dtuart=: Xen takes /chosen/stdout-path's UART, serial0, for its console.
    assert result.xen.console_uart == "serial0"
    assert {d.name: d.xen_owned for d in c.devices} == {"pio": False, "uart0": True}


MODULE = "fdt set /chosen/module@0 "


@pytest.mark.parametrize("replace, message", [
    ({MODULE + "reg": ""},
     f"boot.cmd:{BOOTZ}: bootz: Xen: /chosen/module@0: node module@0 missing `reg' property"),
    ({MODULE + "reg": MODULE + "reg <${kernel_addr_r}>"},
     f"boot.cmd:{BOOTZ}: bootz: Xen: /chosen/module@0: `reg' property length is too short for "
     "#address-cells = 1, #size-cells = 1"),
    ({"fdt mknod": "fdt mknod /chosen other@0", MODULE + "compatible": "", MODULE + "reg": "",
      MODULE + "bootargs": ""},
     f'boot.cmd:{BOOTZ}: bootz: Xen: no dom0 kernel: /chosen has no module with compatible '
     '"xen,linux-zimage" (or "multiboot,kernel") and "xen,multiboot-module"'),
    ({MODULE + "reg": MODULE + "reg <0x7fff0000 0x20000>"},
     f"boot.cmd:{BOOTZ}: bootz: Xen: /chosen/module@0: reg 0x7fff0000+0x20000 is outside RAM"),
    ({"setenv bootargs": 'setenv bootargs "dom0_mem=2G"'},
     f"boot.cmd:{BOOTZ}: bootz: Xen: dom0_mem=2048M leaves no memory for Xen (the board has 1024 MB)"),
    ({"fatload mmc 0 ${xen_addr_r}": "fatload mmc 0 ${xen_addr_r} /zImage"},
     f"boot.cmd:{BOOTZ}: bootz: Xen: the image at 0x7ea00000 is not a Xen hypervisor image (no xenpy "
     "Xen record after its zImage header); this board runs Xen only"),
])
def test_a_malformed_chosen_stops_the_boot_with_one_line(sd, replace, message):
    with pytest.raises(FirmwareError) as e:
        boot(sd, script(replace))
    assert str(e.value) == message


def test_a_dom0_kernel_that_is_not_one(sd):
    (sd / "zImage").write_bytes(b"\x7fELF" + bytes(60))
    with pytest.raises(FirmwareError) as e:
        boot(sd, BOOT_CMD.read_text())
    assert str(e.value) == (f"boot.cmd:{BOOTZ}: bootz: Xen: dom0 kernel: /chosen/module@0 (0x7e000000): "
                            "not a zImage / Image / uImage (bad magic 0x00000000): it is an ELF "
                            "file (a vmlinux?): Xen boots the zImage the kernel build makes "
                            "beside it")


def test_a_load_over_the_device_tree_corrupts_it_as_on_the_board(sd):
    text = BOOT_CMD.read_text().replace("setenv kernel_addr_r 0x7e000000",
                                        "setenv kernel_addr_r 0x7ec00000")
    with pytest.raises(FirmwareError) as e:
        boot(sd, text)
    assert str(e.value).startswith(f"boot.cmd:{line_of('fdt mknod')}: fdt: libfdt "
                                   f"fdt_check_header(): FDT_ERR_BADMAGIC")


def test_missing_script_and_card(tmp_path, sd):
    with pytest.raises(FirmwareError, match=r"^nope.cmd: no such boot script$"):
        Cubieboard2().power_on(sd, "nope.cmd")
    (sd / "boot.scr").unlink()
    with pytest.raises(FirmwareError, match="no boot script given, and the SD card has no boot.scr"):
        Cubieboard2().power_on(sd)
    with pytest.raises(FirmwareError, match="no such SD card directory"):
        Cubieboard2().power_on(tmp_path / "nocard", BOOT_CMD)


def test_a_boot_scr_made_by_the_real_mkimage_boots(sd, tmp_path):
    if shutil.which("mkimage") is None:
        pytest.skip("mkimage not on PATH (Debian package u-boot-tools)")
    scr = tmp_path / "boot.scr"
    subprocess.run(["mkimage", "-C", "none", "-A", "arm", "-T", "script", "-d", str(BOOT_CMD),
                    str(scr)], check=True, capture_output=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "0"})
    assert scr.read_bytes() == make_script_image(BOOT_CMD.read_bytes())
    result = Cubieboard2().power_on(sd, scr)
    assert (result.config.dom0_mem_mb, result.config.dom0_vcpus_pin) == (128, True)


def test_a_damaged_script_image_is_refused(sd):
    data = bytearray(make_script_image(BOOT_CMD.read_text()))
    data[100] ^= 1
    (sd / "bad.scr").write_bytes(bytes(data))
    with pytest.raises(FirmwareError) as e:
        Cubieboard2().power_on(sd, "bad.scr")
    assert str(e.value) == "bad.scr: not a usable script image: Bad Data CRC"


# -- Xen's command line and /chosen --------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("128M", (128 << 20, "")), ("134217728b", (128 << 20, "")),
                                         ("0x800B", (0x800B << 10, "")),
                                         ("1g", (1 << 30, "")), ("4096", (4096 << 10, "")),
                                         ("12Q", (12 << 10, "Q"))])
def test_parse_size_and_unit(text, value):
    assert parse_size_and_unit(text) == value


def test_command_line_options_and_what_xen_says_about_bad_ones():
    o = parse_cmdline("console=dtuart dom0_mem=12Q dom0_max_vcpus=x dom0_vcpus_pin=maybe frob=1")
    assert (o.dom0_mem, o.dom0_max_vcpus, o.dom0_vcpus_pin, o.console) == (None, 0, False, "dtuart")
    assert o.messages == ['parameter "dom0_mem" has invalid value "12Q", rc=-22!',
                          'parameter "dom0_max_vcpus" has invalid value "x", rc=-22!',
                          'parameter "dom0_vcpus_pin" has invalid value "maybe", rc=-22!',
                          'parameter "frob" unknown!']
    assert parse_cmdline("dom0_vcpus_pin").dom0_vcpus_pin
    assert not parse_cmdline("dom0_vcpus_pin no-dom0_vcpus_pin").dom0_vcpus_pin


def chosen_tree(**props: str) -> bytes:
    root = Node("/", {"#address-cells": struct.pack(">I", 1), "#size-cells": struct.pack(">I", 1)})
    chosen = root.add_child("chosen")
    chosen.props.update({k.replace("_", ",", 1).replace("_", "-"): v.encode() + b"\0"
                         for k, v in props.items() if k != "module"})
    mod = chosen.add_child("module@0")
    mod.props["compatible"] = b"multiboot,kernel\0multiboot,module\0"
    mod.props["reg"] = struct.pack(">II", 0x1000, 0x10)
    if "module" in props:
        mod.props["bootargs"] = props["module"].encode() + b"\0"
    return Fdt(root).to_blob()


@pytest.mark.parametrize("props, xen, dom0", [
    ({"bootargs": "B"}, "", "B"),                               # no xen,* property: dom0's
    ({"bootargs": "B", "module": "M"}, "B", "M"),               # the module has its own
    ({"xen_xen-bootargs": "X", "bootargs": "B"}, "X", "B"),
    ({"xen_dom0-bootargs": "D", "bootargs": "B"}, "B", "D"),
    ({"xen_xen-bootargs": "X", "xen_dom0-bootargs": "D", "bootargs": "B"}, "X", "D"),
])
def test_which_property_is_whose_command_line(props, xen, dom0):
    blob = chosen_tree(**props)
    info = boot_fdt_info(lambda a, n: blob[a:a + n], 0)
    assert (info.xen_cmdline, info.dom0_cmdline) == (xen, dom0)


# -- the shipped files ----------------------------------------------------------------------------

def test_the_committed_device_tree_is_built_from_its_source():
    assert compile_dts(DTS.read_text(), DTS.name) == DTB.read_bytes(), \
        "run: python -m xenpy.board.cubieboard2 bootscripts/cubieboard2/cubieboard2.dts " \
        "bootscripts/cubieboard2/cubieboard2.dtb"
    fdt = Fdt.parse(DTB.read_bytes())
    assert fdt.find("serial0").props["reg"] == struct.pack(">II", 0x01C28000, 0x400)
    assert fdt.find("/soc/pinctrl").props["reg"] == struct.pack(">II", 0x01C20800, 0x400)
    assert fdt.root.props["interrupt-parent"] == fdt.find("/soc/interrupt-controller").props["phandle"]


def test_the_sd_card_holds_what_its_sources_build():
    assert (SD / "sun7i-a20-cubieboard2.dtb").read_bytes() == DTB.read_bytes()
    assert (SD / "boot.cmd").read_bytes() == BOOT_CMD.read_bytes()
    assert script_from_image((SD / "boot.scr").read_bytes()) == BOOT_CMD.read_text()
    assert (SD / "xen").read_bytes() == (ROOT / "domains/xen-image/xen-image.zImage").read_bytes()
    assert (SD / "zImage").read_bytes() == (ROOT / "domains/dom0-image/dom0-image.zImage").read_bytes()


def test_dts_errors_name_the_line():
    with pytest.raises(FdtError, match=r"^b.dts:3: reference to undefined label &gic$"):
        compile_dts("/dts-v1/;\n/ {\n\tinterrupt-parent = <&gic>;\n};\n", "b.dts")
    with pytest.raises(FdtError, match=r"^b.dts:2: expected ';', found '}'"):
        compile_dts("/dts-v1/;\n/ { a = <1> };\n", "b.dts")


def test_a_tree_survives_a_round_trip():
    blob = DTB.read_bytes()
    fdt = Fdt.parse(blob)
    assert fdt.to_blob() == blob
    assert Fdt.parse(fdt.to_blob(0x2000)).to_blob() == blob     # padding is not content


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1586), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(8, 1587))
def test_a_damaged_tree_is_an_fdt_error_never_a_crash(changes, length):
    blob = bytearray(DTB.read_bytes())
    for pos, value in changes:
        blob[pos] = value
    try:
        Fdt.parse(bytes(blob[:length]))
    except FdtError as e:
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("ab $;#'\"\\{}<>[]\n=0x1") +
                                ["fdt ", "setenv ", "echo ", "${a}", "bootz ", "set "]),
                max_size=30).map("".join))
def test_any_script_text_ends_in_a_one_line_error_or_a_boot(text):
    fw = UBoot(SD, ram_base=RAM_BASE, ram_size=RAM_SIZE)
    try:
        fw.run_script(text)
    except FirmwareError as e:
        assert "\n" not in str(e)
    finally:
        fw.ram.close()


def test_the_timer_clock_frequency_is_read_from_the_boot_tree():
    # preinit_dt_xen_time(): the board's generic timer node says its rate; Xen hands guests one.
    blob = DTB.read_bytes()
    info = boot_fdt_info(lambda a, n: blob[a:a + n], 0)
    timer = Fdt.parse(blob).find("/timer")
    assert timer is not None and info.timer_clock_frequency == timer.u32("clock-frequency")
    assert boot_fdt_info(lambda a, n: chosen_tree(bootargs="B")[a:a + n], 0).timer_clock_frequency == 0
