"""The Cubieboard2 as a user boots it: `xenpy boot --sd DIR SCRIPT`, then xl against it."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from tests.daemon import ROOT, dmesg, env_for, rows, run, wait_for, xl
from tests.guest.a32 import B_SELF, CODE, HVC, MCR_VBAR_R0, load32, mov, zimage

SD = ROOT / "examples/cubieboard2/sd"
BOOT_CMD = ROOT / "bootscripts/cubieboard2/boot.cmd"
PIO = 0x01C20800
PD_CFG1, PD_DAT = PIO + 3 * 0x24 + 0x04, PIO + 3 * 0x24 + 0x10
NOP, STR_R1_R0, LDR_R2_R0 = 0xE1A00000, 0xE5801000, 0xE5902000


@pytest.fixture(scope="module")
def cubieboard(tmp_path_factory):
    env = env_for(tmp_path_factory)
    r = run("xenpy", "boot", "--sd", str(SD.relative_to(ROOT)),
            str(BOOT_CMD.relative_to(ROOT)), env=env)
    assert r.returncode == 0, r.stderr
    assert "Starting kernel ..." in r.stdout.splitlines()
    yield env
    run("xenpy", "shutdown", env=env)


def guest(body: list[int]) -> bytes:
    """A zImage running `body` then powering off; any exception it takes crashes it."""
    start = CODE + 0x30

    def build(vbar: int, data: int) -> tuple[list[int], int, int]:
        words = [*load32(0, vbar), MCR_VBAR_R0, *body,
                 mov(0, 2), *load32(1, data), mov(12, 29), HVC, B_SELF]       # poweroff
        while (start + 4 * len(words)) % 32:
            words.append(NOP)
        vec = start + 4 * len(words)
        crash = vec + 32
        words += [0xEA000000 | ((crash - (vec + 4 * i) - 8) >> 2 & 0xFFFFFF) for i in range(8)]
        words += [mov(0, 2), *load32(1, data + 4), mov(12, 29), HVC, B_SELF]   # crash
        return words, vec, start + 4 * len(words)

    _, vec, data = build(0, 0)
    words, vec2, data2 = build(vec, data)
    assert (vec, data) == (vec2, data2)
    return zimage(words, struct.pack("<II", 0, 3))


def cfg(tmp_path, name: str, image: bytes, extra: str = "", memory: int = 16) -> str:
    kernel = tmp_path / f"{name}.zImage"
    kernel.write_bytes(image)
    path = tmp_path / f"{name}.cfg"
    path.write_text(f'name = "{name}"\nkernel = "{kernel}"\nmemory = {memory}\nvcpus = 1\n{extra}')
    return str(path)


def test_dom0_is_sized_and_pinned_by_the_boot_script(cubieboard):
    table = rows(xl("list", env=cubieboard).stdout)
    assert table["Domain-0"][:3] == ["0", "128", "1"]
    vl = xl("vcpu-list", "Domain-0", env=cubieboard).stdout.splitlines()
    assert len(vl) == 2 and vl[1].split()[3] == "0" and vl[1].endswith("0 / all")
    info = dict(line.split(":", 1) for line in xl("info", env=cubieboard).stdout.splitlines())
    assert info["nr_cpus                "].strip() == "2"
    assert info["total_memory           "].strip() == "1024"
    assert info["xen_commandline        "].strip().startswith(
        "console=dtuart dtuart=/soc@01c00000/serial@01c28000 dom0_mem=128M")
    log = dmesg(cubieboard)
    assert "(XEN) MODULE[1]: 000000007e000000 - 000000007e000090 Kernel" in log


def test_a_domu_drives_a_pin_through_its_iomem_pages(cubieboard, tmp_path):
    led = guest([*load32(0, PD_CFG1), *load32(1, 1 << 16), STR_R1_R0,     # PD12: output
                 *load32(0, PD_DAT), *load32(1, 1 << 12), STR_R1_R0])      # PD12 high
    r = xl("create", cfg(tmp_path, "led", led, 'iomem = ["1c20,2"]\n'), env=cubieboard)
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: "led" not in xl("list", env=cubieboard).stdout)   # powered off
    log = "\n".join(dmesg(cubieboard))
    high = re.findall(r"^\(XEN\) a20-pio: PD12 -> high \(d(\d+)\)$", log, re.M)
    assert high, log
    assert f"(XEN) memory_map:add: d{high[-1]} gfn=1c20 mfn=1c20 nr=2 (pio)" in log


def test_an_access_outside_the_granted_pages_aborts_the_guest(cubieboard, tmp_path):
    stray = guest([*load32(0, 0x01C21FFC), LDR_R2_R0,       # last word granted: reads zero
                   *load32(0, 0x01C22000), LDR_R2_R0])      # the next page: data abort
    r = xl("create", cfg(tmp_path, "stray", stray, 'iomem = ["1c20,2"]\non_crash = "preserve"\n'),
           env=cubieboard)
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: rows(xl("list", env=cubieboard).stdout)
                    .get("stray", [""] * 4)[3] == "---sc-")
    assert any("unmodelled register 0x01c21ffc" in line for line in dmesg(cubieboard))
    assert xl("destroy", "stray", env=cubieboard).returncode == 0


@pytest.mark.parametrize("iomem, note", [
    ("10000,2", "10000-10001"),        # nothing of the board's there
    ("1c28,1", "1c28-1c28"),           # UART0: Xen's console, dtuart=
])
def test_an_iomem_range_the_board_does_not_give_fails_with_one_line(cubieboard, tmp_path,
                                                                    iomem, note):
    r = xl("create", cfg(tmp_path, "nope", guest([]), f'iomem = ["{iomem}"]\n'), env=cubieboard)
    assert r.returncode == 1
    assert r.stderr.splitlines()[1:] == [
        f"xl: failed give domain access to iomem range {note}: Operation not permitted (the "
        f"board has no device there that dom0 may pass through; see xl dmesg)"]
    assert "nope" not in xl("list", env=cubieboard).stdout


def test_the_erika_configuration_shape(cubieboard, tmp_path):
    spin = guest([B_SELF])
    c = cfg(tmp_path, "ERIKA_Enterprise", spin,
            "on_crash = 'destroy'\niomem = [\"1c20,2\"]\ncpus = \"1\"\n", memory=512)
    assert xl("create", c, env=cubieboard).returncode == 0
    table = rows(xl("list", env=cubieboard).stdout)
    assert table["ERIKA_Enterprise"][1:3] == ["512", "1"]
    vl = xl("vcpu-list", "ERIKA_Enterprise", env=cubieboard).stdout.splitlines()
    assert vl[1].split()[3] == "1" and vl[1].endswith("1 / all")
    assert xl("destroy", "ERIKA_Enterprise", env=cubieboard).returncode == 0
    assert "ERIKA_Enterprise" not in xl("list", env=cubieboard).stdout


def test_a_bad_script_line_is_one_clear_error(tmp_path_factory, tmp_path):
    env = env_for(tmp_path_factory)
    bad = tmp_path / "boot.cmd"
    bad.write_text(BOOT_CMD.read_text().replace("fatload mmc 0 ${kernel_addr_r} /zImage",
                                                "fatload mmc 0 ${kernel_addr_r} /vmlinuz"))
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "/vmlinuz" in text)
    r = run("xenpy", "boot", "--sd", str(SD), str(bad), env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"{bad}:{line}: fatload: ** File not found /vmlinuz ** (not on the SD "
                        f"card {SD})\n")
    r = run("xenpy", "boot", "--sd", str(SD), "--pcpus", "4", env=env)
    assert r.returncode == 2 and "--pcpus: with --sd the board and its boot script decide" in r.stderr


def test_a_boot_scr_made_by_mkimage_boots_by_itself(tmp_path_factory, tmp_path):
    if shutil.which("mkimage") is None:
        pytest.skip("mkimage not on PATH (Debian package u-boot-tools)")
    card = tmp_path / "sd"
    shutil.copytree(SD, card)
    (card / "boot.scr").unlink()
    subprocess.run(["mkimage", "-C", "none", "-A", "arm", "-T", "script", "-d",
                    str(card / "boot.cmd"), str(card / "boot.scr")], check=True,
                   capture_output=True)
    env = env_for(tmp_path_factory)
    r = run("xenpy", "boot", "--sd", str(card), env=env)     # no script: U-Boot finds boot.scr
    try:
        assert r.returncode == 0, r.stderr
        assert "Found U-Boot script /boot.scr" in r.stdout
        assert rows(xl("list", env=env).stdout)["Domain-0"][:3] == ["0", "128", "1"]
    finally:
        run("xenpy", "shutdown", env=env)
