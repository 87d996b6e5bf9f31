"""What the benchmarks share: describing the machine, timing a rate, recording the result."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, str]:
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "python": f"{platform.python_implementation()} {platform.python_version()}"}


def rate(fn: Callable[[], None], n: int, repeat: int) -> float:
    """Best of `repeat` runs of n calls: calls per second."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def write_result(path: str | Path, result: dict) -> None:
    """The JSON that bench/report.py turns into the README's tables."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {path}")


@contextlib.contextmanager
def own_board(*boot_args: str, prefix: str = "xenpy-bench-"):
    """A board of the benchmark's own, in a temporary run directory (XENPY_RUNDIR points there
    while it runs): a benchmark never uses or leaves behind a board in the user's run directory.
    Yields the board's pid. `xenpy shutdown` at the end; a board that does not stop is killed."""
    import signal
    import subprocess
    import sys
    import tempfile
    saved = {k: os.environ.get(k) for k in ("XENPY_RUNDIR", "XENSTORED_PATH")}
    with tempfile.TemporaryDirectory(prefix=prefix) as rundir:
        os.environ["XENPY_RUNDIR"] = rundir
        os.environ.pop("XENSTORED_PATH", None)
        pid = None
        try:
            subprocess.run([sys.executable, "-m", "xenpy", "boot", *boot_args], cwd=ROOT,
                           check=True, stdout=subprocess.DEVNULL)
            pid = int((Path(rundir) / "board.pid").read_text())
            yield pid
        finally:
            subprocess.run([sys.executable, "-m", "xenpy", "shutdown"], cwd=ROOT,
                           capture_output=True, timeout=60)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)     # still there after the shutdown's wait
                except ProcessLookupError:
                    pass
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
