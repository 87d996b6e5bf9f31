"""The flagship's timing: the ERIKA RTOS domU's alarm jitter and dom0's pin command round trip.

Boots its own Cubieboard2 from examples/cubieboard2/sd (in a temporary run directory), opens
/local as the guide does, then runs the RTOS four times with the same heartbeat alarm (beats=N,
period_ms=P):
- quiet: nobody talks to it; the RTOS's TaskReport gives its alarm lateness;
- loaded: dom0's erika-xen driver toggles PD12 back to back while the heartbeats run; each
  command's round trip is timed in dom0, and the RTOS prints its own share (upcall to
  notify-back, guest time);
- beside two busy guests, all three in Pool-0 (credit2 on both pCPUs): the RTOS waits for a
  pCPU whenever both spin, until a time slice ends;
- the real-time variant: pCPU 1 in the null pool "rt" (examples/erika/rt-pool.cfg) with the RTOS
  alone in it (erika-rt.cfg), the same two busy guests in Pool-0 on pCPU 0.
The ratio loaded/quiet says what the command traffic costs the RTOS's timing, the last two what
the real-time pool buys it.

    python bench/erika.py [--beats 300] [--period-ms 10] [--json bench/results/erika.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import machine, write_result  # noqa: E402
from toolstack.erika_xen import ErikaXen, ErikaXenError, read_pin  # noqa: E402
from toolstack.xc import Xc  # noqa: E402

JITTER = re.compile(r"\(d(\d+)\) alarm jitter: min (\d+) us, max (\d+) us, avg (\d+) us "
                    r"over (\d+) expiries")
SERVED = re.compile(r"\(d(\d+)\) pin server: PD12 -> \w+, return 0, dom0 port \d+ notified in "
                    r"(\d+) us")


def sh(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def create(beats: int, period_ms: int, cfg: str = "examples/erika/erika.cfg") -> int:
    sh("toolstack.xl", "create", cfg, f'extra="beats={beats} period_ms={period_ms}"')
    for line in sh("toolstack.xl", "list").splitlines():
        if line.startswith("ERIKA_Enterprise "):
            return int(line.split()[1])
    raise SystemExit("the ERIKA domain did not appear in xl list")


def wait_log(regex: re.Pattern[str], domid: int, timeout: float) -> list[re.Match[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in regex.finditer(sh("toolstack.xl", "dmesg"))
                 if int(m.group(1)) == domid]
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"domain {domid}: no {regex.pattern!r} in {timeout:.0f} s")


def jitter(domid: int, timeout: float) -> dict[str, int]:
    m = wait_log(JITTER, domid, timeout)[-1]
    return dict(zip(("min_us", "max_us", "avg_us", "expiries"), map(int, m.groups()[1:])))


def stats(us: list[float]) -> dict[str, float]:
    us = sorted(us)
    return {"mean": round(statistics.fmean(us), 1), "median": round(us[len(us) // 2], 1),
            "p90": round(us[int(len(us) * 0.9)], 1), "min": round(us[0], 1),
            "max": round(us[-1], 1)}


def spinner(tmp: Path, name: str) -> str:
    """A guest that only spins (`b .` at its entry, an arm32 zImage): a busy neighbour."""
    load = 0x80008000                                   # RAM + 0x8000, where xl loads a zImage
    code = struct.pack("<I", 0xEA00000A) + b"\0" * 0x20 + struct.pack(
        "<III", 0x016F2818, load, load + 0x34) + struct.pack("<I", 0xEAFFFFFE)
    (tmp / f"{name}.zImage").write_bytes(code)
    cfg = tmp / f"{name}.cfg"
    cfg.write_text(f'name = "{name}"\nkernel = "{tmp / name}.zImage"\nmemory = 16\n')
    return str(cfg)


def beside_busy_guests(beats: int, period_ms: int, tmp: Path, rt_pool: bool) -> dict[str, int]:
    """The RTOS's lateness with two spinning guests in Pool-0, itself in Pool-0 or in "rt"."""
    timeout = beats * period_ms / 1000 * 5 + 60
    if rt_pool:
        sh("toolstack.xl", "cpupool-cpu-remove", "Pool-0", "1")
        sh("toolstack.xl", "cpupool-create", "examples/erika/rt-pool.cfg")
    for name in ("busy1", "busy2"):
        sh("toolstack.xl", "create", spinner(tmp, name))
    domid = create(beats, period_ms, "examples/erika/erika-rt.cfg" if rt_pool else
                   "examples/erika/erika.cfg")
    row = sh("toolstack.xl", "vcpu-list", "ERIKA_Enterprise").splitlines()[1].split()
    result = {**jitter(domid, timeout), "rtos_pcpu": int(row[3])}
    for name in ("ERIKA_Enterprise", "busy1", "busy2"):
        sh("toolstack.xl", "destroy", name)
    if rt_pool:
        sh("toolstack.xl", "cpupool-destroy", "rt")
        sh("toolstack.xl", "cpupool-cpu-add", "Pool-0", "1")
    return result


def run(beats: int, period_ms: int, tmp: Path) -> dict:
    timeout = beats * period_ms / 1000 * 5 + 60
    quiet = create(beats, period_ms)
    quiet_jitter = jitter(quiet, timeout)
    sh("toolstack.xl", "destroy", "ERIKA_Enterprise")

    loaded = create(beats, period_ms)
    for _ in range(100):                      # the RTOS publishes its port at start
        try:
            drv = ErikaXen(loaded)
            break
        except ErikaXenError:
            time.sleep(0.1)
    else:
        raise SystemExit("the RTOS never offered its port")
    rtts: list[float] = []
    with drv:
        t_end = time.monotonic() + beats * period_ms / 1000
        while time.monotonic() < t_end:
            answer = drv.write(len(rtts) % 2 ^ 1)          # 1, 0, 1, ...
            assert answer.return_value == 0, answer
            rtts.append(answer.round_trip_s * 1e6)
        assert read_pin() == (len(rtts) - 1) % 2 ^ 1, "PD12 does not hold the last value"
    xc = Xc()                                  # for scale: one privcmd hypercall round trip
    t = time.perf_counter()
    for _ in range(200):
        xc.domain_getinfo(loaded)
    privcmd_us = (time.perf_counter() - t) / 200 * 1e6
    xc.close()
    loaded_jitter = jitter(loaded, timeout)
    served = [int(m.group(2)) for m in wait_log(SERVED, loaded, 30)]
    sh("toolstack.xl", "destroy", "ERIKA_Enterprise")
    shared = beside_busy_guests(beats, period_ms, tmp, rt_pool=False)
    alone = beside_busy_guests(beats, period_ms, tmp, rt_pool=True)
    return {
        "heartbeat": {"beats": beats, "period_ms": period_ms},
        "alarm_jitter_quiet_us": quiet_jitter,
        "alarm_jitter_loaded_us": loaded_jitter,
        "jitter_avg_ratio_loaded_to_quiet": round(loaded_jitter["avg_us"] /
                                                  max(1, quiet_jitter["avg_us"]), 2),
        "commands": len(rtts),
        "command_round_trip_us": stats(rtts),
        "rtos_service_us": stats(served),
        "commands_per_s": round(len(rtts) / (sum(rtts) / 1e6), 1),
        "privcmd_domctl_us": round(privcmd_us, 1),
        "round_trip_in_privcmd_calls": round(statistics.median(rtts) / privcmd_us, 1),
        "alarm_jitter_beside_2_busy_guests_pool0_us": shared,
        "alarm_jitter_beside_2_busy_guests_rt_null_pool_us": alone,
        "jitter_avg_ratio_pool0_to_rt_pool": round(shared["avg_us"] / max(1, alone["avg_us"]),
                                                   1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beats", type=int, default=300)
    ap.add_argument("--period-ms", type=int, default=10)
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/erika.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xenpy-bench-") as rundir:
        os.environ["XENPY_RUNDIR"] = rundir
        os.environ.pop("XENSTORED_PATH", None)
        sh("xenpy", "boot", "--sd", "examples/cubieboard2/sd")
        try:
            sh("toolstack.xenstore_cli", "chmod", "-r", "/local", "b")
            result = {**machine(), **run(args.beats, args.period_ms, Path(rundir))}
        finally:
            sh("xenpy", "shutdown")
    print(json.dumps(result, indent=2))
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
