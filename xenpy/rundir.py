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


def board_pid_path() -> Path:
    return run_dir() / "board.pid"


def dead_board() -> int | None:
    """The pid of a board that died without shutting down (its board.pid is left behind and
    no such process exists), or None."""
    try:
        pid = int(board_pid_path().read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except PermissionError:     # someone else's process took the number: ours is gone
        return pid
    try:                        # killed, but not reaped yet by whoever adopted it
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return pid
    except (OSError, IndexError):
        pass
    return None


def board_died_message() -> str | None:
    """One line for any tool that finds the board dead, or None if it did not die."""
    pid = dead_board()
    if pid is None:
        return None
    return (f"the board (pid {pid}) died without shutting down; its last words are in "
            f"{board_log_path()}; 'xenpy boot' starts a new one")
