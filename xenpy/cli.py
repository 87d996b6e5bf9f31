"""`xenpy`: power the simulated board on and off.

    xenpy boot [--foreground] [--pcpus N] [--mem MB] [--dom0-mem MB] [--layout 4.4|current]
               [--slice-us US] [--sched credit2|null]
    xenpy boot --sd DIR [SCRIPT] [--foreground] [--layout 4.4|current] [--slice-us US]
    xenpy shutdown
    xenpy status
    xenpy proc read|write|list ...     dom0's driver controls (toolstack/proc.py)
    xenpy evtchn list|inject, gnttab list, vcpu dump    look inside guests (toolstack/introspect.py)
    xenpy trace start|stop|dump FILE   the hypervisor's trace buffer (toolstack/xentrace.py)

Without --sd the board is the default one, sized by the options. With --sd it is a Cubieboard2:
its firmware (U-Boot) runs SCRIPT (boot.cmd text or a mkimage boot.scr; default: boot.scr from
the SD card, as U-Boot's distro boot does) with DIR as the SD card, and Xen sizes itself and
Domain-0 from the device tree and command line the script prepared.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from xenpy.rundir import (board_died_message, board_log_path, dead_board, privcmd_path, run_dir,
                          xenstored_path)

# The scheduler's time slice: Xen's credit scheduler default (sched_credit_tslice_ms=10) and,
# as the smallest, the floor Xen puts on its rate limit (XEN_SYSCTL_SCHED_RATELIMIT_MIN).
SLICE_US_DEFAULT = 10_000
SLICE_US_MIN = 100


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
        log_start = log.tell()
        proc = subprocess.Popen([sys.executable, "-m", "xenpy", "boot", "--foreground", *args],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    deadline = time.monotonic() + wait_s
    pid_file = run_dir() / "board.pid"
    while time.monotonic() < deadline:
        # Ready means serving and its pid recorded (the board writes board.pid last).
        if board_running() and _pid_in(pid_file) == proc.pid:
            return proc.pid
        if proc.poll() is not None:
            raise RuntimeError(_start_failure(board_log_path(), log_start))
        time.sleep(0.05)
    raise RuntimeError(f"the board did not come up in {wait_s:.0f} s (see {board_log_path()})")


def _pid_in(path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _start_failure(log, start: int) -> str:
    """Why a board exited during its start: the line it said it with (a board that fails to
    start says why in one line) in what it logged from `start`, or where to look."""
    try:
        with open(log, "rb") as f:
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    said = [ln.strip() for ln in lines if ln.startswith("xenpy: ")]
    if said:
        return said[-1][len("xenpy: "):]
    return f"the board exited during start (see {log})"


def _board_config(ns: argparse.Namespace):
    from xenpy.common.hypervisor import HypervisorConfig
    return HypervisorConfig(nr_pcpus=ns.pcpus, total_mem_mb=ns.mem, dom0_mem_mb=ns.dom0_mem,
                            layout=ns.layout, vgic_strict=ns.vgic_strict,
                            slice_ms=ns.slice_us / 1000,
                            cmdline=f"sched={ns.sched}" if ns.sched else "",
                            deterministic=ns.deterministic, seed=ns.seed)


def _power_on_sd(ns: argparse.Namespace):
    """Run the Cubieboard2's firmware and Xen's early boot; (board, result) or a one-line error."""
    from xenpy.board.cubieboard2 import Cubieboard2
    board = Cubieboard2()
    return board, board.power_on(ns.sd, ns.script, layout=ns.layout)


def clean_after_dead_board() -> None:
    """A board killed with -9 (or crashed) leaves its sockets, pid file, store and saved
    domain configs behind. None of it belongs to the next boot: the store is one boot's, as
    xencommons starts xenstored empty (its persistence covers xenstored restarts within a boot),
    and the domains it knew are gone."""
    pid = dead_board()
    stale = [privcmd_path(), xenstored_path(), run_dir() / "board.pid"]
    if pid is None and not any(p.exists() for p in stale[:2]):
        return
    if pid is not None:
        print(f"xenpy: the previous board (pid {pid}) died; cleaning up after it",
              file=sys.stderr)
    for p in stale:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    store = run_dir() / "xenstored"
    for p in list(store.glob("state.json*")) if store.is_dir() else []:
        p.unlink(missing_ok=True)
    userdata = run_dir() / "userdata"
    for p in list(userdata.glob("*.libxl-json")) if userdata.is_dir() else []:
        p.unlink(missing_ok=True)


def cmd_boot(ns: argparse.Namespace, passthrough: list[str]) -> int:
    if board_running():
        print(f"xenpy: a board is already running at {run_dir()}", file=sys.stderr)
        return 1
    if not ns.foreground:
        clean_after_dead_board()
    sd_board = None
    if ns.sd is not None:
        from xenpy.board.uboot import FirmwareError
        try:
            sd_board, power = _power_on_sd(ns)
        except FirmwareError as e:
            print(e, file=sys.stderr)
            return 1
        # The child boots the same card again; give it paths that do not depend on its cwd.
        passthrough = ["--sd", os.path.abspath(ns.sd), "--layout", ns.layout,
                       "--slice-us", str(ns.slice_us)]
        if ns.deterministic:
            passthrough.append("--deterministic")
        if ns.seed is not None:
            passthrough += ["--seed", str(ns.seed)]
        if ns.script is not None:
            passthrough.append(os.path.abspath(ns.script))
    if not ns.foreground:
        try:
            pid = start_background(passthrough)
        except RuntimeError as e:
            print(f"xenpy: {e}", file=sys.stderr)
            return 1
        if sd_board is not None:
            print("\n".join(power.console))
        print(f"xenpy: board started (pid {pid}), run directory {run_dir()}")
        return 0
    from xenpy.board.board import Board
    # Started in the background, stdout already is the board log: echo only to a person.
    echo = (lambda line: print(line, flush=True)) if sys.stdout.isatty() else None
    if sd_board is not None:
        run_dir().mkdir(parents=True, exist_ok=True)
        with open(board_log_path(), "a") as log:      # the serial console before Xen's
            log.write("".join(line + "\n" for line in power.console))
        if echo:
            for line in power.console:
                echo(line)
        power.config.vgic_strict = ns.vgic_strict
        power.config.slice_ms = ns.slice_us / 1000
        power.config.deterministic, power.config.seed = ns.deterministic, ns.seed
        board = Board(power.config, echo=echo)
        sd_board.attach(board.hv.log)
    else:
        board = Board(_board_config(ns), echo=echo)
    signal.signal(signal.SIGTERM, lambda *_: board.request_stop())
    signal.signal(signal.SIGINT, lambda *_: board.request_stop())
    from xenpy.board.board import BoardError
    try:
        board.start()
    except BoardError as e:
        print(f"xenpy: {e}", file=sys.stderr, flush=True)
        board.stop()
        return 1
    board.wait()
    board.stop()
    return 0


def cmd_shutdown(_ns: argparse.Namespace) -> int:
    from toolstack.xc import BoardNotRunning, Xc
    try:
        xc = Xc()
    except BoardNotRunning as e:
        print(f"xenpy: {e}" if e.died else f"xenpy: no board running at {run_dir()}",
              file=sys.stderr)
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
    else:
        if pid is not None:
            print(f"xenpy: the board (pid {pid}) did not stop within 10 s; its log is "
                  f"{run_dir() / 'board.log'}", file=sys.stderr)
            return 1
    print("xenpy: board stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="xenpy", description="Run the simulated Xen-on-ARM board.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("boot", help="start a board (in the background unless --foreground)")
    b.add_argument("--foreground", action="store_true")
    b.add_argument("--pcpus", type=int, help="physical CPUs (default 2)")
    b.add_argument("--mem", type=int, help="host RAM in MB (default 2048)")
    b.add_argument("--dom0-mem", type=int, help="Domain-0 memory in MB (default 512)")
    b.add_argument("--vgic-strict", action="store_true",
                   help="an access to a vGIC register the model lacks aborts the guest")
    b.add_argument("--layout", choices=("4.4", "current"), default="4.4",
                   help="default guest memory map (Xen 4.4's or the current one)")
    b.add_argument("--slice-us", type=int, default=SLICE_US_DEFAULT, metavar="US",
                   help=f"scheduler time slice in microseconds (default {SLICE_US_DEFAULT}, "
                        f"at least {SLICE_US_MIN}: Xen's smallest rate limit)")
    b.add_argument("--sched", metavar="NAME",
                   help="the default board's Xen command line gets sched=NAME (credit2 or "
                        "null): Pool-0's scheduler; a Cubieboard2 takes sched= from its bootargs")
    b.add_argument("--deterministic", action="store_true",
                   help="virtual time from instructions executed, all pCPUs in lock step: "
                        "the same inputs give the same run, byte for byte")
    b.add_argument("--seed", type=int, metavar="N",
                   help="with --deterministic: vary the scheduling quanta, reproducibly")
    b.add_argument("--sd", metavar="DIR",
                   help="boot a Cubieboard2 with U-Boot from this SD card directory")
    b.add_argument("script", nargs="?", metavar="SCRIPT",
                   help="with --sd: the U-Boot script to run (boot.cmd or a mkimage boot.scr)")
    sub.add_parser("shutdown", help="stop the running board")
    sub.add_parser("status", help="say whether a board is running")
    sub.add_parser("proc", help="read or write a dom0 driver control, like a /proc file "
                                "(xenpy proc list)")
    for group, what in (("evtchn", "a domain's event channels: list, inject"),
                        ("gnttab", "a domain's grant table: list"),
                        ("vcpu", "a vCPU's registers and CP15 state: dump"),
                        ("trace", "the hypervisor's trace buffer: start, stop, dump")):
        sub.add_parser(group, help=f"{what} (xenpy {group} --help)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["trace"]:
        from toolstack.xentrace import main as trace_main
        return trace_main(argv[1:])
    if argv[:1] in (["evtchn"], ["gnttab"], ["vcpu"]):
        from toolstack.introspect import main as introspect_main
        return introspect_main(argv)
    if argv[:1] == ["proc"]:
        from toolstack.proc import main as proc_main
        return proc_main(argv[1:])
    ns = p.parse_args(argv)
    if ns.cmd == "boot":
        if ns.slice_us < SLICE_US_MIN:
            p.error(f"--slice-us {ns.slice_us}: the time slice must be at least {SLICE_US_MIN} us")
        if ns.sd is not None:
            given = [f for f, v in (("--pcpus", ns.pcpus), ("--mem", ns.mem),
                                    ("--dom0-mem", ns.dom0_mem), ("--sched", ns.sched))
                     if v is not None]
            if given:
                p.error(f"{', '.join(given)}: with --sd the board and its boot script decide "
                        f"(CPUs and RAM from the device tree, dom0_mem= and sched= on Xen's "
                        f"command line)")
        elif ns.script is not None:
            p.error(f"a boot script ({ns.script}) needs --sd DIR, the SD card it loads from")
        else:
            ns.pcpus = 2 if ns.pcpus is None else ns.pcpus
            ns.mem = 2048 if ns.mem is None else ns.mem
            ns.dom0_mem = 512 if ns.dom0_mem is None else ns.dom0_mem
            if ns.pcpus < 1 or ns.mem < 64 or not 0 < ns.dom0_mem < ns.mem:
                p.error("need --pcpus >= 1 and 0 < --dom0-mem < --mem")
        return cmd_boot(ns, [a for a in argv[1:] if a != "--foreground"])
    if ns.cmd == "shutdown":
        return cmd_shutdown(ns)
    running = board_running()
    died = None if running else board_died_message()
    print(f"board {'running' if running else 'not running'} at {run_dir()}"
          + (f": {died}" if died else ""))
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
