"""Every committed guest image is what its sources build to, byte for byte."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_PY = ROOT / "domains" / "build.py"

if importlib.util.find_spec("ziglang") is None:
    pytest.skip("ziglang is not installed (pip install -e '.[dev]'): cannot rebuild guests",
                allow_module_level=True)


def _load_build():
    spec = importlib.util.spec_from_file_location("xenpy_domains_build", BUILD_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod        # dataclasses look the module up by name
    spec.loader.exec_module(mod)
    return mod


build = _load_build()
GUESTS = build.guest_names()


def test_guests_exist():
    assert "hello" in GUESTS


@pytest.mark.parametrize("name", GUESTS)
def test_image_matches_sources(name, tmp_path):
    guest = build.load_guest(name)
    assert guest.image.is_file(), f"{name}: no committed image; run python domains/build.py {name}"
    fresh = build.build(guest, build.zig_command(), tmp_path, jobs=2)
    committed = guest.image.read_bytes()
    assert fresh == committed, (
        f"{name}: {guest.image.relative_to(ROOT)} differs from a fresh build "
        f"(first difference at {build.first_difference(committed, fresh):#x}); "
        f"run python domains/build.py {name} and commit the image")


def test_check_mode_reports_a_stale_image(tmp_path, monkeypatch, capsys):
    """--check names the guest and exits 1 when the committed bytes differ."""
    guest = build.load_guest("hello")
    stale = tmp_path / "hello.zImage"
    data = bytearray(guest.image.read_bytes())
    data[0x40] ^= 0xFF                  # one byte of code
    stale.write_bytes(bytes(data))
    monkeypatch.setattr(build.Guest, "image", property(lambda self: stale))
    assert build.main(["--check", "hello"]) == 1
    assert "hello: FAIL" in capsys.readouterr().out
