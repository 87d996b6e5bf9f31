"""Time for Debian's Linux kernel, as a domU, to reach its shell on hvc0.

Boots examples/linux/linux.cfg (kernel and initramfs from examples/linux/fetch.py's cache) with
`xl create -c` on a pty, on a fresh board, and reads the wall time at which each milestone shows on
the console, counted from the start of `xl create`:

  first_line   "Booting Linux": the zImage decompressor has finished and the kernel's earlycon
               (xenboot: console_io) has printed its first buffered line
  init         the initramfs's /init marker: the kernel's boot is done
  shell        the shell's first prompt

The kernel's own clock at the last line before the prompt is recorded too (kernel_s), and the
domain's CPU time. Repeat with --runs; the best run is reported.

    python bench/linux_boot.py [--runs N] [--vcpus 1|2] [--json bench/results/linux_boot.json]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "linux"))

from benchlib import machine, write_result  # noqa: E402
from fetch import MARKER, cache_dir  # noqa: E402
from tests.ptyconsole import ConsoleClosed, ConsoleTimeout, PtyConsole  # noqa: E402

PROMPT = re.compile(rb"xenpy:[^\n]*# ")
KTIME = re.compile(rb"\[\s*(\d+\.\d+)\] [^\n]*\n")


def one_boot(cache: Path, vcpus: int, timeout: float, log: str | None = None) -> dict:
    env = {**os.environ, "XENPY_RUNDIR": tempfile.mkdtemp(prefix="xenpy-bench-"),
           "PYTHONPATH": str(ROOT)}
    py = sys.executable
    subprocess.run([py, "-m", "xenpy", "boot", "--pcpus", "2"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    cfg = ROOT / "examples" / "linux" / ("linux.cfg" if vcpus == 1 else "linux-smp.cfg")
    con = PtyConsole([py, "-m", "toolstack.xl", "create", "-c", str(cfg)], env=env, cwd=cache)
    out: dict = {"vcpus": vcpus}
    try:
        for key, pat in (("first_line", b"Booting Linux"), ("init", MARKER.encode()),
                         ("shell", PROMPT)):
            try:
                m = con.expect(pat if isinstance(pat, re.Pattern) else re.compile(re.escape(pat)),
                               timeout - con.time_of(len(con.raw)), key)
            except (ConsoleTimeout, ConsoleClosed) as e:
                out["failed_at"] = key
                out["console_tail"] = str(e).splitlines()[-12:]
                break
            out[key + "_s"] = round(con.time_of(m.start()), 2)
        stamps = KTIME.findall(con.raw)
        if stamps:
            out["kernel_s"] = float(stamps[-1])
        lst = subprocess.run([py, "-m", "toolstack.xl", "list"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60).stdout
        for line in lst.splitlines():
            if line.startswith("linux"):
                out["cpu_s"] = float(line.split()[-1])
    finally:
        if log:
            Path(log).write_text(con.text())
        con.close()
        subprocess.run([py, "-m", "xenpy", "shutdown"], env=env, cwd=ROOT, capture_output=True,
                       timeout=120)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--vcpus", type=int, choices=(1, 2), default=1)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--console", help="write the last run's console to this file")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "linux_boot.json"))
    ns = ap.parse_args()
    cache = cache_dir()
    if not (cache / "vmlinuz").exists():
        print(f"linux_boot: no kernel in {cache}; run python examples/linux/fetch.py first",
              file=sys.stderr)
        return 1
    runs = []
    for n in range(ns.runs):
        t = time.monotonic()
        r = one_boot(cache, ns.vcpus, ns.timeout, ns.console)
        r["wall_s"] = round(time.monotonic() - t, 1)
        print(f"run {n + 1}: {r}", file=sys.stderr)
        runs.append(r)
    done = [r for r in runs if "shell_s" in r]
    best = min(done, key=lambda r: r["shell_s"]) if done else runs[-1]
    write_result(ns.json, {"benchmark": "linux_boot", **machine(),
                           "kernel": (cache / "manifest.json").read_text() and
                           __import__("json").loads((cache / "manifest.json").read_text())["kernel"],
                           "best": best, "runs": runs})
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
