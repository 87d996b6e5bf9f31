"""Soak: create, run and destroy the hello guest N times (default 10,000) on a board of its own,
recording the board's RSS, open descriptors and threads from /proc as it goes.

Each cycle is a domain's whole life through libxl over the board's sockets, as `xl create` and
`xl destroy` do it: createdomain, RAM, kernel and device tree, xenstore nodes, unpause; the guest
prints, brings up its second vCPU and powers off (on_poweroff=preserve keeps it); destroy.

    python bench/soak.py [-n 10000] [--json bench/results/soak.json]

^C stops it early and records the cycles done ("complete": false).

"start" is the board after its first cycle (libxl loaded in the domain watcher, Unicorn's
first instance made); "warm" after 100 (the board's bounded logs filled); growth is end over
those. Figures are this machine's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import machine, own_board, write_result  # noqa: E402
from tests.soak import Cycler, usage  # noqa: E402


def summary(args, fresh, samples: list[dict], seconds: float, done: bool) -> dict:
    start = samples[0]
    warm = next((s for s in samples if s["cycles"] == 100), start)
    end = samples[-1]
    return {
        **machine(),
        "cycles": end["cycles"],
        "cycles_asked": args.n,
        "complete": done,
        "guest": "hello (16 MB, 2 vCPUs), created, run to power-off, destroyed",
        "cycles_per_s": round(end["cycles"] / seconds, 1),
        "fresh_board": {"rss_kb": fresh.rss_kb, "fds": fresh.fds, "threads": fresh.threads},
        "start": start, "warm": warm, "end": end,
        "rss_growth_over_start": round(end["rss_kb"] / start["rss_kb"] - 1, 3),
        "rss_growth_over_warm": round(end["rss_kb"] / warm["rss_kb"] - 1, 3),
        "samples": samples,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/soak.json")
    args = ap.parse_args()
    samples: list[dict] = []
    done = False
    failure = None
    with own_board("--pcpus", "2") as pid:
        fresh = usage(pid)
        cycler = Cycler()
        t0 = time.perf_counter()
        every = max(1, args.n // 20)

        def sample(i: int) -> None:
            if i == 0 or i == 99 or (i + 1) % every == 0:
                u = usage(pid)
                samples.append({"cycles": i + 1, "rss_kb": u.rss_kb, "fds": u.fds,
                                "threads": u.threads,
                                "seconds": round(time.perf_counter() - t0, 1)})
                print(samples[-1], flush=True)

        try:
            cycler.run(args.n, sample)
            done = True
        except KeyboardInterrupt:           # a long soak stopped early keeps what it measured
            print("interrupted: recording the cycles done so far", flush=True)
        except Exception as e:  # noqa: BLE001 - the board went away: say how, keep the figures
            log = Path(os.environ["XENPY_RUNDIR"]) / "board.log"
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
            failure = f"{type(e).__name__}: {e}"
            print(f"soak stopped: {failure}\n" + "\n".join(tail), flush=True)
        finally:
            cycler.close()
        seconds = time.perf_counter() - t0
    if not samples:
        return 1
    result = summary(args, fresh, samples, seconds, done)
    if failure:
        result["failure"] = failure
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    write_result(args.json, result)
    return 0 if done else 130


if __name__ == "__main__":
    sys.exit(main())
