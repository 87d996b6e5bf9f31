"""`xenpy`: power the simulated board on and off.

    xenpy boot [--foreground] [--pcpus N] [--mem MB] [--dom0-mem MB] [--layout 4.4|current]
    xenpy shutdown
    xenpy status
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from xenpy.rundir import board_log_path, privcmd_path, run_dir


def board_running() -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(privcmd_path()))
        return True
    except OSError:
        return False
    finally:
        s.close()


def start_background(args: list[str], wait_s: float = 20.0) -> int:
    """Start a board as a detached process and wait until its privcmd socket answers."""
    run_dir().mkdir(parents=True, exist_ok=True)
    with open(board_log_path(), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "xenpy", "boot", "--foreground", *args],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if board_running():
            return proc.pid
        if proc.poll() is not None:
            raise RuntimeError(f"the board exited during start (see {board_log_path()})")
        time.sleep(0.05)
    raise RuntimeError(f"the board did not come up in {wait_s:.0f} s (see {board_log_path()})")


def _board_config(ns: argparse.Namespace):
    from xenpy.common.hypervisor import HypervisorConfig
    return HypervisorConfig(nr_pcpus=ns.pcpus, total_mem_mb=ns.mem, dom0_mem_mb=ns.dom0_mem,
                            layout=ns.layout)


def cmd_boot(ns: argparse.Namespace, passthrough: list[str]) -> int:
    if board_running():
        print(f"xenpy: a board is already running at {run_dir()}", file=sys.stderr)
        return 1
    if not ns.foreground:
        try:
            pid = start_background(passthrough)
        except RuntimeError as e:
            print(f"xenpy: {e}", file=sys.stderr)
            return 1
        print(f"xenpy: board started (pid {pid}), run directory {run_dir()}")
        return 0
    from xenpy.board.board import Board
    # Started in the background, stdout already is the board log: echo only to a person.
    echo = (lambda line: print(line, flush=True)) if sys.stdout.isatty() else None
    board = Board(_board_config(ns), echo=echo)
    signal.signal(signal.SIGTERM, lambda *_: board.request_stop())
    signal.signal(signal.SIGINT, lambda *_: board.request_stop())
    board.start()
    board.wait()
    board.stop()
    return 0


def cmd_shutdown(_ns: argparse.Namespace) -> int:
    from toolstack.xc import BoardNotRunning, Xc
    try:
        xc = Xc()
    except BoardNotRunning:
        print(f"xenpy: no board running at {run_dir()}", file=sys.stderr)
        return 1
    pid_file = run_dir() / "board.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    xc.host_shutdown()
    deadline = time.monotonic() + 10
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    print("xenpy: board stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="xenpy", description="Run the simulated Xen-on-ARM board.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("boot", help="start a board (in the background unless --foreground)")
    b.add_argument("--foreground", action="store_true")
    b.add_argument("--pcpus", type=int, default=2, help="physical CPUs (default 2)")
    b.add_argument("--mem", type=int, default=2048, help="host RAM in MB (default 2048)")
    b.add_argument("--dom0-mem", type=int, default=512, help="Domain-0 memory in MB")
    b.add_argument("--layout", choices=("4.4", "current"), default="4.4",
                   help="default guest memory map (Xen 4.4's or the current one)")
    sub.add_parser("shutdown", help="stop the running board")
    sub.add_parser("status", help="say whether a board is running")
    argv = sys.argv[1:] if argv is None else argv
    ns = p.parse_args(argv)
    if ns.cmd == "boot":
        if ns.pcpus < 1 or ns.mem < 64 or not 0 < ns.dom0_mem < ns.mem:
            p.error("need --pcpus >= 1 and 0 < --dom0-mem < --mem")
        return cmd_boot(ns, [a for a in argv[1:] if a != "--foreground"])
    if ns.cmd == "shutdown":
        return cmd_shutdown(ns)
    running = board_running()
    print(f"board {'running' if running else 'not running'} at {run_dir()}")
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
