"""Finding the board xl talks to (xenpy's part: on Xen, xl opens /dev/xen/privcmd).

A run directory that never had a board gets one started, and xl says so. One whose board died
(its pid file names a process that is gone) or was shut down is reported, with where the log is:
silently starting a fresh default board there would hide the crash and show other domains.
"""
from __future__ import annotations

import os
from typing import Any

from toolstack.xc import BoardNotRunning, Xc
from toolstack.xl.utils import fail
from xenpy.rundir import board_died_message, board_log_path, run_dir


def board_state() -> tuple[str, int | None]:
    """("never", None), ("died", pid), ("silent", pid) or ("stopped", None) for a run
    directory without a live board. The board writes board.log when it starts and removes board.pid when it stops."""
    pid_file = run_dir() / "board.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "died", pid
        except PermissionError:
            pass
        if _zombie(pid):
            return "died", pid
        return "silent", pid     # alive but not answering on privcmd
    if board_log_path().exists():
        return "stopped", None
    return "never", None


def _zombie(pid: int) -> bool:
    """A board that died but was not reaped yet still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def connect() -> tuple[Xc, Any]:
    from toolstack.xs import XsClient
    try:
        xc = Xc()
    except BoardNotRunning:
        xc = _start_or_explain()
    try:
        xs = XsClient()
    except Exception as e:  # noqa: BLE001 - any connection failure is one line
        raise fail(f"xl: cannot connect to xenstored: {e}") from None
    return xc, xs


def _start_or_explain() -> Xc:
    state, pid = board_state()
    log = board_log_path()
    if state == "died":        # the words every tool uses for it (xenpy.rundir)
        raise fail(f"xl: {board_died_message() or f'the board (pid {pid}) died'}")
    if state == "silent":
        raise fail(f"xl: the board in {run_dir()} (pid {pid}) does not answer on privcmd; "
                   f"its log is {log}.")
    if state == "stopped":
        raise fail(f"xl: the board in {run_dir()} was shut down (its log is {log}); "
                   f"start one with 'xenpy boot'.")
    from xenpy.cli import start_background
    from toolstack.xl.utils import G, err
    if G.dryrun_only:
        raise fail(f"xl: no board has run in {run_dir()}, and a dry run (-N) starts none")
    err(f"xl: no board has run in {run_dir()}; starting the default one "
        f"(xenpy boot: 2 pCPUs, 2048 MB)")
    try:
        start_background([])
    except RuntimeError as e:
        raise fail(f"xl: {e}") from None
    _wait_for_dom0_name()
    return Xc()


def _wait_for_dom0_name(timeout: float = 20.0) -> None:
    """The board answers privcmd before its xenstored has Domain-0's nodes; xl's first
    command would list dom0 as "(null)"."""
    import time
    from toolstack.xs import XsClient, XsError
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with XsClient() as xs:
                if xs.read("/local/domain/0/name"):
                    return
        except (OSError, XsError):
            pass
        time.sleep(0.05)
    raise fail(f"xl: the board started but its xenstored did not name Domain-0 in "
               f"{timeout:.0f} s (see {board_log_path()})")
