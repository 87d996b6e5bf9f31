"""Scale: many idle domains, and busy domains on more than one pCPU.

1. Idle: N (default 200) idle domUs on a 2-pCPU board: the idle guest (domains/idle) sleeps as
   Mini-OS does, in WFI with interrupts masked, woken only by events that never come. Once every
   one shows `-b----` in `xl list`, the board process's host CPU use (user + system, from /proc)
   is measured over a quiet interval, then `xl list` (the command, a process of its own, as a
   user runs it) is timed R times. Also the board's RSS, descriptors and threads per domain.
2. Busy: two compute-bound domUs (the stress guest, one vCPU each, no timer and no IPIs: a
   counting loop that never traps) created paused and unpaused together, on a board with one
   pCPU and on one with two; throughput is both guests' iterations over the wall time until
   both have powered off, and the ratio compares two pCPUs with one.

    python bench/scale.py [--domains 200] [--idle-seconds 10] [--list-runs 20]
                          [--iters 20000000] [--json bench/results/scale.json]

Each board is a board of its own in a temporary run directory, shut down at the end whatever
happens. Figures are this machine's; CPU use is the board's own (other load on the machine does
not count in it, though it slows everything down).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import machine, own_board, write_result  # noqa: E402
from tests.soak import cpu_seconds, usage  # noqa: E402

IDLE_CFG = ROOT / "examples/idle/idle.cfg"
STRESS_CFG = ROOT / "examples/stress/stress.cfg"
TARGETS = {"idle_cpu_percent_of_a_core": 5.0, "xl_list_ms": 100.0, "busy_2_over_1_pcpus": 1.7}


def libxl():
    from toolstack.libxl import Libxl
    from toolstack.xc import Xc
    from toolstack.xs import XsClient
    return Libxl(Xc(), XsClient())


def xl_env() -> dict[str, str]:
    # `xl` as installed: its modules compiled once (an environment that forbids writing
    # bytecode would time the compiler instead, every run).
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def xl_list(env: dict[str, str]) -> tuple[float, list[str]]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "toolstack.xl", "list"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    ms = (time.perf_counter() - t) * 1000
    if r.returncode:
        raise SystemExit(f"xl list failed: {r.stderr.strip()}")
    return ms, r.stdout.splitlines()[1:]


def wait_all_blocked(lx, domids: list[int], timeout: float) -> None:
    want = set(domids)
    deadline = time.monotonic() + timeout
    while True:
        blocked = {i["domain"] for i in lx.xc.domain_getinfolist()
                   if i["domain"] in want and i["flags"] & (1 << 4) and not i["flags"] & (1 << 5)}
        if blocked == want:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(want - blocked)} of {len(want)} idle domains not blocked "
                             f"after {timeout:.0f} s")
        time.sleep(0.2)


def idle(args) -> dict:
    from toolstack.domcfg import load_domain_config
    with own_board("--pcpus", "2", prefix="xenpy-bench-scale-") as pid:
        lx = libxl()
        try:
            before = usage(pid)
            cpu_empty0 = cpu_seconds(pid)
            time.sleep(args.idle_seconds / 2)
            empty_pct = (cpu_seconds(pid) - cpu_empty0) / (args.idle_seconds / 2) * 100
            t0 = time.monotonic()
            domids = []
            for i in range(args.domains):
                cfg, _ = load_domain_config(str(IDLE_CFG), [
                    f"memory={args.memory}", f'name="idle{i}"', 'extra="events=100000"'])
                domids.append(lx.create(cfg))
            create_s = time.monotonic() - t0
            wait_all_blocked(lx, domids, timeout=120)
            time.sleep(1)                        # the last ones' boots are over
            after = usage(pid)
            c0, w0 = cpu_seconds(pid), time.monotonic()
            time.sleep(args.idle_seconds)
            cpu_pct = (cpu_seconds(pid) - c0) / (time.monotonic() - w0) * 100
            env = xl_env()
            xl_list(env)                         # compiles xl's modules once
            times = []
            for _ in range(args.list_runs):
                ms, rows = xl_list(env)
                times.append(ms)
                states = [r.split()[4] for r in rows if r.startswith("idle")]
                if len(states) != args.domains or set(states) != {"-b----"}:
                    raise SystemExit(f"xl list shows {len(states)} idle domains, states "
                                     f"{sorted(set(states))}")
        finally:
            lx.xs.close()
            lx.xc.close()
    n = args.domains
    return {
        "domains": n, "memory_mb": args.memory, "create_seconds": round(create_s, 1),
        "board_cpu_percent_empty": round(empty_pct, 2),
        "board_cpu_percent_idle_domains": round(cpu_pct, 2),
        "idle_seconds": args.idle_seconds,
        "xl_list_ms": {"median": round(statistics.median(times), 1),
                       "max": round(max(times), 1), "min": round(min(times), 1),
                       "runs": len(times)},
        "rss_kb": {"before": before.rss_kb, "after": after.rss_kb,
                   "per_domain": round((after.rss_kb - before.rss_kb) / n)},
        "fds": {"before": before.fds, "after": after.fds,
                "per_domain": round((after.fds - before.fds) / n, 1)},
        "threads": {"before": before.threads, "after": after.threads},
    }


def busy_run(pcpus: int, iters: int) -> dict:
    from toolstack.domcfg import load_domain_config
    with own_board("--pcpus", str(pcpus), prefix="xenpy-bench-scale-") as pid:
        lx = libxl()
        try:
            domids = []
            for i in range(2):
                cfg, _ = load_domain_config(str(STRESS_CFG), [
                    "vcpus=1", f'name="busy{i}"', f'extra="iters={iters} tick_us=0 kick=0"'])
                domids.append(lx.create(cfg, paused=True))
            t0, c0 = time.monotonic(), cpu_seconds(pid)
            for d in domids:
                lx.xc.domain_unpause(d)
            deadline = t0 + 3600
            while {i["domain"] for i in lx.xc.domain_getinfolist()} & set(domids):
                if time.monotonic() > deadline:
                    raise SystemExit(f"busy guests still running after an hour ({pcpus} pCPUs)")
                time.sleep(0.01)
            wall = time.monotonic() - t0
            cpu = cpu_seconds(pid) - c0
            log = "\n".join(lx.xc.readconsole())
        finally:
            lx.xs.close()
            lx.xc.close()
    ok = sum(1 for d in domids if re.search(rf"^\(d{d}\) Test result: SUCCESS$", log, re.M))
    if ok != 2:
        raise SystemExit(f"busy guests on {pcpus} pCPU(s): {ok} of 2 counted right\n{log[-2000:]}")
    # The board's host CPU over the wall time: how many host cores it got (at most `pcpus`
    # for the guests, plus a little for dom0's services).
    return {"pcpus": pcpus, "wall_seconds": round(wall, 2),
            "iterations_per_s": round(2 * iters / wall),
            "board_cores_used": round(cpu / wall, 2),
            "iterations_per_board_cpu_s": round(2 * iters / cpu)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, default=200)
    ap.add_argument("--memory", type=int, default=4, help="MB per idle domain")
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--list-runs", type=int, default=20)
    ap.add_argument("--iters", type=int, default=20_000_000, help="per busy guest")
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/scale.json")
    args = ap.parse_args()
    idle_res = idle(args)
    one, two = busy_run(1, args.iters), busy_run(2, args.iters)
    ratio = round(two["iterations_per_s"] / one["iterations_per_s"], 2)
    # Work per CPU second the board got: equal on 1 and 2 pCPUs when nothing in the board
    # serializes the two guests (the interpreter lock is not held while guest code runs), so a
    # ratio below 2 is then the host's other load taking the second core.
    per_cpu = round(two["iterations_per_board_cpu_s"] / one["iterations_per_board_cpu_s"], 2)
    result = {**machine(), "idle": idle_res,
              "busy": {"guest": "stress, 1 vCPU, iters per guest, tick_us=0 kick=0",
                       "iters": args.iters, "one_pcpu": one, "two_pcpus": two,
                       "ratio_2_over_1": ratio, "per_board_cpu_s_2_over_1": per_cpu},
              "targets": TARGETS}
    lst = idle_res["xl_list_ms"]
    rows = [
        (f"board CPU, {idle_res['domains']} idle domUs", idle_res["board_cpu_percent_idle_domains"],
         TARGETS["idle_cpu_percent_of_a_core"], "% of a core", "<"),
        ("xl list, median", lst["median"], TARGETS["xl_list_ms"], "ms", "<"),
        ("xl list, max", lst["max"], TARGETS["xl_list_ms"], "ms", "<"),
        ("2 busy guests, 2 pCPUs over 1", ratio, TARGETS["busy_2_over_1_pcpus"], "x", ">="),
    ]
    for name, value, target, unit, op in rows:
        met = value < target if op == "<" else value >= target
        print(f"{name}: {value} {unit} (target {op} {target}: {'met' if met else 'NOT met'})")
    print(f"busy: board on {one['board_cores_used']} / {two['board_cores_used']} host cores with "
          f"1 / 2 pCPUs; work per board CPU second 2 over 1: {per_cpu}")
    print(f"board RSS {idle_res['rss_kb']['per_domain']} KB and "
          f"{idle_res['fds']['per_domain']} descriptors per idle domain; "
          f"empty board CPU {idle_res['board_cpu_percent_empty']}%")
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
