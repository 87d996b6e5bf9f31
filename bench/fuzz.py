"""A longer fuzz of the board's two dom0 protocols than the test suite runs: privcmd (any JSON
value, any field of any type, bad timeouts, passed descriptors) and the XenStore wire protocol
(any request type, transaction id and payload, broken frames). The properties are the suite's
(tests/unit/test_privcmd_robust.py, tests/unit/test_xenstore_fuzz.py); only the number of
examples differs.

    python bench/fuzz.py [-n 20000]

Each runs on an in-process board of its own (temporary sockets); nothing is left behind.
Exit status non-zero if hypothesis found a failing example (it prints the smallest one).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TESTS = ["tests/unit/test_privcmd_robust.py::"
         "test_fuzz_privcmd_every_request_is_answered_and_the_connection_survives",
         "tests/unit/test_xenstore_fuzz.py"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000, help="examples per protocol")
    args = ap.parse_args()
    env = {**os.environ, "XENPY_FUZZ_EXAMPLES": str(args.n), "PYTHONPATH": str(ROOT)}
    rc = 0
    for test in TESTS:
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "--hypothesis-show-statistics", test], cwd=ROOT, env=env)
        print(f"{test}: {args.n} examples, {time.perf_counter() - t:.0f} s, "
              f"{'ok' if r.returncode == 0 else 'FAILED'}", flush=True)
        rc = rc or r.returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
