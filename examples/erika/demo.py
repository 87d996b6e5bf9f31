"""The flagship in one command: the Cubieboard2 boots from its SD card, dom0 opens /local, the ERIKA
RTOS domU starts, and dom0 toggles PD12 through it, while the RTOS's console is shown next to
`xl list` and the pin. Each step is the command a user would type (examples/erika/README.md).

    python examples/erika/demo.py [--toggles N] [--keep]

The board runs in its own run directory (a temporary one unless XENPY_RUNDIR is set) and is shut
down at the end unless --keep. On a terminal the view is live (rich); otherwise it is plain text.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from rich.console import Console, Group
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from toolstack.erika_xen import ErikaXen, ErikaXenError, read_pin  # noqa: E402
from toolstack.xc import BoardNotRunning, Xc, XcError  # noqa: E402

NAME = "ERIKA_Enterprise"
CONSOLE_LINES = 22
STEP_LINES = 14


class Demo:
    def __init__(self, live: bool) -> None:
        self.console = Console()
        self.live = live
        self.steps: list[tuple[str, str]] = []        # (command, what it printed)
        self.rtos = b""
        self.domid: int | None = None
        self.pin = "?"
        self.view: Live | None = None

    # -- running the user's commands -------------------------------------------------------------

    def sh(self, command: str, check: bool = True) -> str:
        r = subprocess.run(["bash", "-c", command], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.rstrip("\n")
        self.steps.append((command, out))
        if not self.live:
            print(f"$ {command}" + (f"\n{out}" if out else ""), flush=True)
        self.refresh()
        if check and r.returncode:
            raise SystemExit(f"demo: `{command}` failed (exit {r.returncode})")
        return out

    # -- the view -----------------------------------------------------------------------------

    def poll(self, xc: Xc) -> None:
        if self.domid is not None:
            try:
                out = xc.console_read(self.domid, len(self.rtos), 0)
                self.rtos += out["data"].encode("latin-1")
            except XcError:         # the domain may be gone between two looks
                pass
        try:
            self.pin = "high" if read_pin() else "low"
        except (ErikaXenError, BoardNotRunning):
            self.pin = "?"
        self.refresh()

    def render(self) -> Layout:
        steps = Text()
        for command, out in self.steps:
            steps.append(f"$ {command}\n", style="bold cyan")
            if out:
                steps.append(out + "\n")
        steps = Text("\n").join(steps.split("\n")[-STEP_LINES:])
        rtos = "\n".join(self.rtos.decode("latin-1").splitlines()[-CONSOLE_LINES:])
        xl_list = next((out for command, out in reversed(self.steps) if command == "xl list"), "")
        domains = Table("Name", "ID", "Mem", "VCPUs", "State", "Time(s)", box=None,
                        header_style="bold")
        for row in xl_list.splitlines()[1:]:
            domains.add_row(*row.split())
        pin = Text(f"PD12 {self.pin}", style="bold green" if self.pin == "high" else "bold")
        layout = Layout()
        layout.split_column(Layout(name="top", ratio=3), Layout(name="steps", ratio=2))
        layout["top"].split_row(
            Layout(Panel(rtos, title=f"{NAME}: xl console {NAME}"), ratio=3),
            Layout(Panel(Group(domains, Text(""), pin), title="xl list, and the pin"), ratio=2))
        layout["steps"].update(Panel(steps, title="dom0: the commands, as a user types them"))
        return layout

    def refresh(self) -> None:
        if self.view is not None:
            self.view.update(self.render())

    def freeze(self) -> None:
        """Leave the live view on screen as it is; what follows prints below it."""
        if self.view is not None:
            self.view.update(self.render(), refresh=True)
            self.view.stop()
            self.view = None
        self.live = False


def run(demo: Demo, toggles: int, keep: bool) -> int:
    demo.sh("xenpy boot --sd examples/cubieboard2/sd bootscripts/cubieboard2/boot.cmd")
    xc = Xc()
    try:
        demo.sh("xenstore-chmod -r /local b")
        demo.sh("xl create examples/erika/erika.cfg")
        demo.domid = next(int(line.split()[1]) for line in demo.sh("xl list").splitlines()
                          if line.startswith(NAME + " "))
        deadline = time.monotonic() + 60
        while True:                         # the RTOS publishes its port once it runs
            demo.poll(xc)
            try:
                driver = ErikaXen(demo.domid)
                break
            except ErikaXenError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        driver.close()
        for i in range(toggles):
            value = 1 - i % 2
            demo.sh(f"xenpy proc write erika-xen/pin_state {value}")
            demo.poll(xc)
            demo.sh("xenpy proc read erika-xen/pin_state")
            time.sleep(0.3 if demo.live else 0)
        time.sleep(0.5)
        demo.poll(xc)
        demo.sh("xl list")
        if demo.live:
            demo.freeze()
        else:
            print(f"--- {NAME}'s console ---\n{demo.rtos.decode('latin-1').rstrip()}", flush=True)
        demo.sh(f"xl destroy {NAME}")
        demo.domid = None
        demo.sh("xl list")
    finally:
        xc.close()
        if not keep:
            demo.sh("xenpy shutdown", check=False)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--toggles", type=int, default=4, help="pin writes (default 4)")
    ap.add_argument("--keep", action="store_true", help="leave the board running")
    args = ap.parse_args()
    if "XENPY_RUNDIR" not in os.environ:
        os.environ["XENPY_RUNDIR"] = tempfile.mkdtemp(prefix="xenpy-erika-")
    os.environ.pop("XENSTORED_PATH", None)
    # The commands are the installed xl / xenpy / xenstore-*: find them beside this Python even
    # when its scripts directory is not on PATH (a venv not activated, a --user install).
    scripts = [sysconfig.get_path("scripts"), sysconfig.get_path("scripts", f"{os.name}_user")]
    os.environ["PATH"] = os.pathsep.join([*scripts, os.environ.get("PATH", "")])
    demo = Demo(live=sys.stdout.isatty())
    try:
        if not demo.live:
            return run(demo, args.toggles, args.keep)
        demo.view = Live(demo.render(), console=demo.console, refresh_per_second=8)
        demo.view.start()
        try:
            return run(demo, args.toggles, args.keep)
        finally:
            demo.freeze()
    except (ErikaXenError, SystemExit) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        subprocess.run([sys.executable, "-m", "xenpy", "shutdown"], capture_output=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
