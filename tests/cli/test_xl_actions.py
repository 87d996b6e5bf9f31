"""on_poweroff / on_reboot / on_crash actions carried out by xl's domain watcher."""
from __future__ import annotations

import struct
import subprocess
import sys

from tests.daemon import ROOT, rows, run, wait_for, xl
from tests.guest.a32 import HVC, load32, mov, zimage, zimage_data_addr


def guest(tmp_path, reason: int, spin: int = 1) -> str:
    """A zImage that prints `up`, spins `spin` (>= 1) iterations, then shuts down with `reason`."""
    prog_len = 0
    for _ in range(2):     # the data address depends on the program's length
        data_at = 0x80008000 + 0x30 + 4 * prog_len
        prog = [mov(0, 0), mov(1, 3), *load32(2, data_at), mov(12, 18), HVC,      # console "up\n"
                *load32(4, spin), 0xE2544001, 0x1AFFFFFD,                          # spin
                mov(0, 2), *load32(1, data_at + 4), mov(12, 29), HVC, 0xEAFFFFFE]  # shutdown
        prog_len = len(prog)
    assert zimage_data_addr(prog) == data_at
    path = tmp_path / f"reason{reason}.zImage"
    path.write_bytes(zimage(prog, b"up\n\0" + struct.pack("<I", reason)))
    return str(path)


def cfg(tmp_path, name: str, kernel: str, **actions: str) -> str:
    text = f'name = "{name}"\nkernel = "{kernel}"\nmemory = 16\n'
    text += "".join(f'{k} = "{v}"\n' for k, v in actions.items())
    path = tmp_path / f"{name}.cfg"
    path.write_text(text)
    return str(path)


def test_on_crash_preserve_keeps_the_domain_with_the_crash_letter(board, tmp_path):
    c = cfg(tmp_path, "crashy", guest(tmp_path, 3), on_crash="preserve")
    assert xl("create", c, env=board).returncode == 0
    assert wait_for(lambda: rows(xl("list", env=board).stdout).get("crashy", [""] * 4)[3] == "---sc-")
    xl("destroy", "crashy", env=board)


def test_on_reboot_restart_creates_a_new_domain_with_the_same_name(board, tmp_path):
    c = cfg(tmp_path, "phoenix", guest(tmp_path, 1, spin=300_000_000), on_reboot="restart")
    assert xl("create", c, env=board).returncode == 0
    first = rows(xl("list", env=board).stdout)["phoenix"][0]
    assert wait_for(lambda: rows(xl("list", env=board).stdout).get("phoenix", [first])[0] != first,
                    timeout=20)
    assert xl("destroy", "phoenix", env=board).returncode == 0
    assert wait_for(lambda: "phoenix" not in xl("list", env=board).stdout)


def test_on_poweroff_rename_restart_keeps_the_old_one_renamed(board, tmp_path):
    c = cfg(tmp_path, "twin", guest(tmp_path, 0, spin=300_000_000), on_poweroff="rename-restart")
    assert xl("create", c, env=board).returncode == 0
    first = rows(xl("list", env=board).stdout)["twin"][0]
    assert wait_for(lambda: f"twin-{first}" in rows(xl("list", env=board).stdout), timeout=20)
    table = rows(xl("list", env=board).stdout)
    assert table[f"twin-{first}"][3] == "---s--" and table["twin"][0] != first
    for name in ("twin", f"twin-{first}"):
        xl("destroy", name, env=board)


def test_shutdown_asks_every_guest_and_F_forces_one_that_does_not_answer(board, tmp_path):
    # An ARM guest always has PV control for libxl: xl writes control/shutdown and waits for
    # the guest's acknowledgement; this guest never looks, so only -F brings it down.
    c = cfg(tmp_path, "deaf", guest(tmp_path, 0, spin=2_000_000_000), on_poweroff="preserve")
    assert xl("create", c, env=board).returncode == 0
    domid = rows(xl("list", env=board).stdout)["deaf"][0]
    proc = subprocess.Popen([sys.executable, "-m", "toolstack.xl", "shutdown", "deaf"],
                            cwd=ROOT, env=board, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: run("toolstack.xenstore_cli", "read",
                                    f"/local/domain/{domid}/control/shutdown",
                                    env=board).stdout.strip() == "poweroff")
        assert proc.poll() is None          # still waiting for the acknowledgement
    finally:
        proc.kill()
        proc.communicate()
    r = xl("shutdown", "-F", "-w", "deaf", env=board)
    assert r.returncode == 0, r.stderr
    assert "Shutting down domain" in r.stderr
    assert rows(xl("list", env=board).stdout)["deaf"][3] == "---s--"
    xl("destroy", "deaf", env=board)


def test_create_c_shows_everything_even_when_the_domain_is_already_gone(board, tmp_path):
    c = cfg(tmp_path, "brief", guest(tmp_path, 0))      # on_poweroff = destroy (the default)
    r = xl("create", "-c", c, env=board)
    assert r.returncode == 0 and r.stdout == "up\n"
