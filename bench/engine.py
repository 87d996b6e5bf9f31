"""The engine-exactness guests at full size, on a board booted with the smallest time slice.

1. stress: 10^7 LDREX/STREX increments in all (plus as many plain and spinlocked ones) on 1, 2 and
   4 vCPUs, iters = 10^7 / N each, while timers, IPIs and 100 us time slices preempt them; every
   count must come out exact.
2. unmask: many boots of the unmask guest (every way of unmasking, both interrupt sources); the
   console must be the same each run, every handler line before its marker.

Prints each run's result and wall time (this machine's); exits 1 if any console is wrong.

    python bench/engine.py [--increments N] [--vcpus 1,2,4] [--unmask-runs N] [--rounds N]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SUCCESS = "Test result: SUCCESS"


def cmd(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def console(env: dict[str, str], cfg: Path, *variables: str, timeout: float
            ) -> tuple[list[str], float]:
    t0 = time.monotonic()
    try:
        r = cmd(env, "toolstack.xl", "create", "-c", str(cfg), *variables, timeout=timeout)
        out = r.stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        out += f"\n(still running after {timeout:.0f} s)"
        cmd(env, "toolstack.xl", "destroy", cfg.stem, timeout=60)
    return out.splitlines(), time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--increments", type=int, default=10_000_000,
                    help="LDREX/STREX increments per stress run, all vCPUs together")
    ap.add_argument("--vcpus", default="1,2,4", help="stress runs, by vCPU count")
    ap.add_argument("--unmask-runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=20, help="unmask rounds per run")
    ap.add_argument("--timeout", type=float, default=3600, help="per guest run, seconds")
    args = ap.parse_args()

    env = {**os.environ, "XENPY_RUNDIR": tempfile.mkdtemp(prefix="xenpy-bench-engine-")}
    r = cmd(env, "xenpy", "boot", "--pcpus", "2", "--slice-us", "100", timeout=120)
    if r.returncode:
        print(r.stderr.strip(), file=sys.stderr)
        return 1
    failed = 0
    try:
        for n in (int(v) for v in args.vcpus.split(",")):
            iters = args.increments // n
            lines, secs = console(env, EXAMPLES / "stress/stress.cfg", f"vcpus={n}",
                                  f'extra="iters={iters}"', timeout=args.timeout)
            ok = bool(lines) and lines[-1] == SUCCESS
            failed += not ok
            print(f"stress, {n} vCPUs x {iters} iterations: {'ok' if ok else 'WRONG'} "
                  f"in {secs:.1f} s")
            if not ok:
                print("\n".join("    " + line for line in lines))
        first = None
        for run in range(1, args.unmask_runs + 1):
            lines, secs = console(env, EXAMPLES / "unmask/unmask.cfg",
                                  f'extra="rounds={args.rounds}"', timeout=args.timeout)
            lines = [line for line in lines if not line.startswith("Parsing config")]
            first = first or lines
            ok = lines[-1:] == [SUCCESS] and lines == first
            failed += not ok
            if not ok or run in (1, args.unmask_runs):
                print(f"unmask run {run}: {'ok' if ok else 'WRONG'} in {secs:.1f} s")
            if not ok:
                print("\n".join("    " + line for line in lines))
    finally:
        cmd(env, "xenpy", "shutdown", timeout=60)
    print(f"{failed} wrong run(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
