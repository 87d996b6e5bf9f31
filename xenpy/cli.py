"""`xenpy`: power the simulated board on and off.

    xenpy boot [--foreground] [--pcpus N] [--mem MB] [--dom0-mem MB] [--layout 4.4|current]
    xenpy boot --sd DIR [SCRIPT] [--foreground] [--layout 4.4|current]
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
                            layout=ns.layout, vgic_strict=ns.vgic_strict)


def _power_on_sd(ns: argparse.Namespace):
    """Run the Cubieboard2's firmware and Xen's early boot; (board, result) or a one-line error."""
    from xenpy.board.cubieboard2 import Cubieboard2
    board = Cubieboard2()
    return board, board.power_on(ns.sd, ns.script, layout=ns.layout)


def cmd_boot(ns: argparse.Namespace, passthrough: list[str]) -> int:
    if board_running():
        print(f"xenpy: a board is already running at {run_dir()}", file=sys.stderr)
        return 1
    sd_board = None
    if ns.sd is not None:
        from xenpy.board.uboot import FirmwareError
        try:
            sd_board, power = _power_on_sd(ns)
        except FirmwareError as e:
            print(e, file=sys.stderr)
            return 1
        # The child boots the same card again; give it paths that do not depend on its cwd.
        passthrough = ["--sd", os.path.abspath(ns.sd), "--layout", ns.layout]
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
        board = Board(power.config, echo=echo)
        sd_board.attach(board.hv.log)
    else:
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
    b.add_argument("--pcpus", type=int, help="physical CPUs (default 2)")
    b.add_argument("--mem", type=int, help="host RAM in MB (default 2048)")
    b.add_argument("--dom0-mem", type=int, help="Domain-0 memory in MB (default 512)")
    b.add_argument("--vgic-strict", action="store_true",
                   help="an access to a vGIC register the model lacks aborts the guest")
    b.add_argument("--layout", choices=("4.4", "current"), default="4.4",
                   help="default guest memory map (Xen 4.4's or the current one)")
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
        if ns.sd is not None:
            given = [f for f, v in (("--pcpus", ns.pcpus), ("--mem", ns.mem),
                                    ("--dom0-mem", ns.dom0_mem)) if v is not None]
            if given:
                p.error(f"{', '.join(given)}: with --sd the board and its boot script decide "
                        f"(CPUs and RAM from the device tree, dom0_mem= on Xen's command line)")
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
    print(f"board {'running' if running else 'not running'} at {run_dir()}")
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
