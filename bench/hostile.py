"""Hostile guests beside the RTOS: the random-hypercall guest (tests/guest/test_hostile.py) makes
10^6 hypercalls with random numbers and arguments (wild pointers included) from domains on pCPU
0, replaced as they end, while the ERIKA RTOS runs its heartbeat on pCPU 1 of the Cubieboard2.
Records the count, the rate and the RTOS's own alarm lateness (its kernel's figures).

    python bench/hostile.py [-n 1000000] [--beats 6000] [--json bench/results/hostile.json]

In-process board in a temporary run directory. Figures are this machine's, and the RTOS's
lateness is the host's as much as the board's: compare with --hostile 0 (the RTOS alone).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import machine, write_result  # noqa: E402
from tests.hostile_soak import soak  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="hypercalls to reach")
    ap.add_argument("--beats", type=int, default=6000, help="RTOS heartbeats (10 ms each)")
    ap.add_argument("--hostile", type=int, default=2, help="hostile domains at a time")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/hostile.json")
    args = ap.parse_args()
    r = soak(args.n, args.timeout, args.beats, hostile=args.hostile)
    result = {**machine(), **r}
    print(json.dumps(result, indent=2))
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
