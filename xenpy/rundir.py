"""Where a running board keeps its sockets and state.

Shared by the board and by dom0 userspace (the toolstack), so it imports nothing else of ours.
XENPY_RUNDIR overrides the default; tests point it at a temporary directory.
"""
from __future__ import annotations

import os
from pathlib import Path


def run_dir() -> Path:
    env = os.environ.get("XENPY_RUNDIR")
    if env:
        return Path(env)
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"xenpy-{os.getuid()}"


def privcmd_path() -> Path:
    """The board's privcmd endpoint (the model of /dev/xen/privcmd)."""
    return run_dir() / "privcmd"


def xenstored_path() -> Path:
    """xenstored's socket; XENSTORED_PATH overrides it, as in Xen's client library."""
    env = os.environ.get("XENSTORED_PATH")
    return Path(env) if env else run_dir() / "xenstored" / "socket"


def board_log_path() -> Path:
    return run_dir() / "board.log"
