"""The board's own troubles as its users meet them: killed with -9, unable to write its pid
file, a full disk under its run directory."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.daemon import ROOT, env_for, rows, run, wait_for, xl

HELLO = str(ROOT / "examples/hello/hello.cfg")


def pid_of(env) -> int:
    return int((Path(env["XENPY_RUNDIR"]) / "board.pid").read_text())


def test_boot_returns_with_board_pid_written(tmp_path_factory):
    env = env_for(tmp_path_factory)
    r = run("xenpy", "boot", env=env)
    try:
        assert r.returncode == 0, r.stderr
        assert f"(pid {pid_of(env)})" in r.stdout     # there as soon as boot returns
    finally:
        run("xenpy", "shutdown", env=env)


def test_a_board_that_cannot_write_its_pid_file_says_so_in_one_line(tmp_path_factory):
    env = env_for(tmp_path_factory)
    (Path(env["XENPY_RUNDIR"]) / "board.pid").mkdir()          # in the way
    r = run("xenpy", "boot", env=env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"xenpy: cannot write {env['XENPY_RUNDIR']}/board.pid: Is a directory"]
    assert run("xenpy", "status", env=env).returncode == 1      # and nothing is left running
    assert not (Path(env["XENPY_RUNDIR"]) / "privcmd").exists()


def test_after_kill_9_every_tool_says_the_board_died_and_the_next_boot_starts_fresh(
        tmp_path_factory):
    env = env_for(tmp_path_factory)
    assert run("xenpy", "boot", env=env).returncode == 0
    try:
        assert xl("create", HELLO, 'name="before"', 'on_poweroff="preserve"',
                  env=env).returncode == 0
        run("toolstack.xenstore_cli", "write", "/local/domain/0/data/mark", "old", env=env)
        pid = pid_of(env)
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists() or
                        Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", timeout=30)
        died = f"the board (pid {pid}) died without shutting down"
        for tool in (("toolstack.xl", "list"), ("toolstack.xl", "create", HELLO),
                     ("toolstack.xenstore_cli", "read", "/local/domain/0/name"),
                     ("xenpy", "shutdown"), ("xenpy", "status")):
            r = run(*tool, env=env, timeout=60)
            assert r.returncode != 0, tool
            assert died in r.stderr + r.stdout and "Traceback" not in r.stderr, (tool, r.stderr)
        r = run("xenpy", "boot", env=env)
        assert r.returncode == 0, r.stderr
        assert f"the previous board (pid {pid}) died; cleaning up after it" in r.stderr
        table = rows(xl("list", env=env).stdout)
        assert list(table) == ["Domain-0"]                      # no ghost of "before"
        r = run("toolstack.xenstore_cli", "read", "/local/domain/0/data/mark", env=env)
        assert r.returncode != 0                                # a fresh store
    finally:
        run("xenpy", "shutdown", env=env)


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path) -> Path:
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def test_a_full_disk_under_the_run_directory(small_disk, tmp_path_factory):
    env = {**env_for(tmp_path_factory), "XENPY_RUNDIR": str(small_disk / "run")}
    assert run("xenpy", "boot", env=env).returncode == 0
    try:
        filler = fill(small_disk)
        r = xl("list", env=env, timeout=30)                     # reads: served, no hang
        assert r.returncode == 0 and "Domain-0" in r.stdout
        r = xl("create", HELLO, 'name="nospace"', env=env, timeout=60)
        assert r.returncode == 1
        assert r.stderr.splitlines()[-1] == (
            "xl: cannot create domain nospace: xenstored: ENOSPC: No space left on device")
        assert "nospace" not in xl("list", env=env).stdout      # the half-built one is gone
        filler.unlink()                                         # space returns
        r = xl("create", HELLO, 'name="space"', 'on_poweroff="preserve"', env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: "space" in rows(xl("list", env=env).stdout))
    finally:
        run("xenpy", "shutdown", env=env)
