"""Driving a board daemon the way a user does: the commands in subprocesses, against a board in a
temporary run directory. Shared by the CLI and guest tests."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90


def run(*args: str, env: dict[str, str], timeout: float = TIMEOUT, stdin: str | None = None
        ) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS...` from the repository root."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, input=stdin)


def xl(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return run("toolstack.xl", *args, env=env, **kw)


def env_for(tmp_path_factory) -> dict[str, str]:
    """The environment of a fresh run directory (no board yet)."""
    env = {**os.environ, "XENPY_RUNDIR": str(tmp_path_factory.mktemp("run"))}
    env.pop("XENSTORED_PATH", None)
    return env


def booted(env: dict[str, str], *boot_args: str) -> Iterator[dict[str, str]]:
    """A fixture body: `xenpy boot ARGS`, yield the environment, `xenpy shutdown`."""
    r = run("xenpy", "boot", *boot_args, env=env)
    assert r.returncode == 0, r.stderr
    yield env
    r = run("xenpy", "shutdown", env=env)
    assert r.returncode == 0, r.stderr       # a board that does not stop is a bug, not a leftover


def wait_for(pred, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def rows(list_output: str) -> dict[str, list[str]]:
    """`xl list` output: name -> the other columns."""
    out = {}
    for line in list_output.splitlines()[1:]:
        name, *rest = line.split()
        out[name] = rest
    return out


def dmesg(env: dict[str, str]) -> list[str]:
    return xl("dmesg", env=env).stdout.splitlines()
