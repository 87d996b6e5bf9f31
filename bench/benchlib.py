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


def machine() -> dict[str, object]:
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "host_handoff_us": host_handoff_us()}


def host_handoff_us(n: int = 2000) -> float:
    """A round trip between two host processes through pipes, in us: the host's own cost of
    waking a thread that waits, which every hand-off between pCPU threads, xenstored and a
    client pays twice. On a virtual machine whose other core is idle it is tens of us (the
    idle vCPU halts and must be woken), on a busy one a few us: it decides the latency figures."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(n):
                os.read(r1, 1)
                os.write(w2, b"x")
        finally:
            os._exit(0)
    t = time.perf_counter()
    for _ in range(n):
        os.write(w1, b"x")
        os.read(r2, 1)
    dt = time.perf_counter() - t
    os.waitpid(pid, 0)
    for fd in (r1, w1, r2, w2):
        os.close(fd)
    return round(dt / n * 1e6, 1)


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
def busy_host():
    """Processes spinning beside the benchmark, one per host core but one: with no idle core,
    a wake-up costs what the host's scheduler takes, not a halted virtual CPU's wake."""
    import subprocess
    import sys
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(max(1, (os.cpu_count() or 2) - 1))]
    try:
        time.sleep(0.2)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


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
