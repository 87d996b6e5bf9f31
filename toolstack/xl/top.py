"""`xl top`: xentop for the board, with the hypervisor's own per-vCPU counters.

xentop's columns (NAME, STATE, CPU(sec), CPU(%), MEM(k), MEM(%), MAXMEM(k), MAXMEM(%), VCPUS), in
its batch format with -b, then ours: hypercalls, interrupts taken and event-channel sends per
second, and the exits by class since the domain started, as Jailhouse counts them (hypercall,
mmio, virq, vsgi, psci, wfi). The counters are plain increments where the hypervisor already
handles each trap; getvcpuinfo carries them (`xenpy_stats`).
"""
from __future__ import annotations

import argparse
import json
import select
import sys
import termios
import time
import tty
from dataclasses import dataclass, field
from typing import Any

NAME = "top"
USAGE = "[-b] [-i N] [-d SEC] [--json]"
HELP = "Monitor domains: CPU, memory and the hypervisor's per-vCPU event counters."

CLASSES = ("hypercalls", "mmio", "virq", "vsgi", "psci", "wfi")     # exit classes
RATES = ("hypercalls", "virq", "evtchn_sends")                      # shown per second
# xentop's field widths (tools/xentop/xentop.c), then ours.
XENTOP = [("NAME", 10), ("STATE", 6), ("CPU(sec)", 10), ("CPU(%)", 6), ("MEM(k)", 10),
          ("MEM(%)", 6), ("MAXMEM(k)", 10), ("MAXMEM(%)", 9), ("VCPUS", 5)]
OURS = [("HCALLS/s", 9), ("IRQS/s", 8), ("EVTCHN/s", 9), ("HVC", 9), ("MMIO", 9), ("VIRQ", 8),
        ("VSGI", 7), ("PSCI", 5), ("WFI", 8)]

EPILOG = """\
The live view refreshes every SEC seconds (default 1); q or Ctrl-C quits. With -b it prints
xentop's batch format instead: a header line and one line per domain per iteration, -i N
iterations (default: until interrupted). --json prints one JSON document per iteration (with
-b, one per line; alone, one after a SEC-second sample).

  STATE      xentop's letters: d(ying) s(hutdown) b(locked) c(rashed) p(aused) r(unning)
  HCALLS/s   hypercalls per second         IRQS/s  interrupts the guest took per second
  EVTCHN/s   EVTCHNOP_send per second
  HVC MMIO VIRQ VSGI PSCI WFI   exits by class since the domain started (Jailhouse's classes):
             hypercalls, vGIC register accesses, interrupts taken, SGIs sent, PSCI calls, WFIs
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("-b", "--batch", action="store_true", help="batch mode: plain lines, no live view")
    p.add_argument("-i", "--iterations", type=int, metavar="N", help="stop after N updates")
    p.add_argument("-d", "--delay", type=float, default=1.0, metavar="SEC",
                   help="seconds between updates (default 1)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")


@dataclass
class Sample:
    at: float
    domains: list[dict[str, Any]] = field(default_factory=list)


def take_sample(lx, total_kb: int) -> Sample:
    from toolstack.xc import XcError
    s = Sample(time.monotonic())
    for info in lx.list_domains():
        raw = info.raw
        totals = dict.fromkeys(CLASSES + ("evtchn_sends",), 0)
        for n in range(info.max_vcpu_id + 1):
            try:
                stats = lx.xc.vcpu_getinfo(info.domid, n).get("xenpy_stats", {})
            except XcError:
                continue        # gone meanwhile
            for k in totals:
                totals[k] += int(stats.get(k, 0))
        flags = raw["flags"]
        shutdown = bool(flags & (1 << 2))
        crashed = shutdown and raw.get("shutdown_reason", -1) == 3
        state = "".join(c if on else "-" for c, on in (
            ("d", flags & 1), ("s", shutdown and not crashed), ("b", flags & (1 << 4)),
            ("c", crashed), ("p", flags & (1 << 3)), ("r", flags & (1 << 5))))
        max_kb = raw["max_pages"] * 4
        s.domains.append({"domid": info.domid, "name": info.name, "state": state,
                          "cpu_ns": raw["cpu_time"], "mem_kb": info.mem_kb,
                          "mem_pct": 100.0 * info.mem_kb / total_kb if total_kb else 0.0,
                          "maxmem_kb": max_kb or None,
                          "maxmem_pct": 100.0 * max_kb / total_kb if max_kb and total_kb else None,
                          "vcpus": info.vcpus, "totals": totals})
    return s


def rates(cur: Sample, prev: Sample | None) -> None:
    """CPU(%) and the per-second figures against the previous sample (0 without one, as xentop)."""
    old = {d["domid"]: d for d in prev.domains} if prev else {}
    dt = cur.at - prev.at if prev else 0.0
    for d in cur.domains:
        o = old.get(d["domid"])
        if o is None or dt <= 0:
            d["cpu_pct"] = 0.0
            d["per_s"] = dict.fromkeys(RATES, 0.0)
            continue
        d["cpu_pct"] = (d["cpu_ns"] - o["cpu_ns"]) / 1e9 / dt * 100
        d["per_s"] = {k: max(0, d["totals"][k] - o["totals"][k]) / dt for k in RATES}


def row(d: dict[str, Any]) -> list[str]:
    t, r = d["totals"], d["per_s"]
    maxmem = "no limit" if d["maxmem_kb"] is None else str(d["maxmem_kb"])
    maxpct = "n/a" if d["maxmem_pct"] is None else f"{d['maxmem_pct']:.1f}"
    return [d["name"][:10], d["state"], str(d["cpu_ns"] // 1_000_000_000), f"{d['cpu_pct']:.1f}",
            str(d["mem_kb"]), f"{d['mem_pct']:.1f}", maxmem, maxpct, str(d["vcpus"]),
            f"{r['hypercalls']:.0f}", f"{r['virq']:.0f}", f"{r['evtchn_sends']:.0f}",
            str(t["hypercalls"]), str(t["mmio"]), str(t["virq"]), str(t["vsgi"]),
            str(t["psci"]), str(t["wfi"])]


def batch_lines(sample: Sample) -> list[str]:
    cols = XENTOP + OURS
    widths = [w for _, w in cols]
    cells = [row(d) for d in sample.domains]
    for r in cells:                 # xentop widens a column for a number that does not fit
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    out = [" ".join(f"{h:>{w}}" for (h, _), w in zip(cols, widths))]
    out += [" ".join(f"{c:>{w}}" for c, w in zip(r, widths)) for r in cells]
    return out


def as_json(sample: Sample) -> list[dict[str, Any]]:
    return [{k: d[k] for k in ("domid", "name", "state", "cpu_ns", "cpu_pct", "mem_kb",
                               "mem_pct", "maxmem_kb", "maxmem_pct", "vcpus")}
            | {"per_second": d["per_s"], "exits": {k: d["totals"][k] for k in CLASSES},
               "evtchn_sends": d["totals"]["evtchn_sends"]} for d in sample.domains]


def run(ns: argparse.Namespace, libxl) -> int:
    if ns.iterations is not None and ns.iterations < 1:
        print("xl top: -i needs a positive number of iterations", file=sys.stderr)
        return 1
    if ns.delay <= 0:
        print("xl top: -d needs a positive number of seconds", file=sys.stderr)
        return 1
    lx = libxl()
    total_kb = lx.xc.physinfo()["total_pages"] * 4
    try:
        if ns.json and not ns.batch:
            first = take_sample(lx, total_kb)
            time.sleep(ns.delay)
            cur = take_sample(lx, total_kb)
            rates(cur, first)
            print(json.dumps({"interval_s": ns.delay, "domains": as_json(cur)}, indent=4))
            return 0
        if ns.batch:
            return _batch(ns, lx, total_kb)
        return _live(ns, lx, total_kb)
    except KeyboardInterrupt:
        return 0


def _batch(ns, lx, total_kb: int) -> int:
    prev = None
    n = 0
    while True:
        cur = take_sample(lx, total_kb)
        rates(cur, prev)
        if ns.json:
            print(json.dumps({"domains": as_json(cur)}), flush=True)
        else:
            print("\n".join(batch_lines(cur)), flush=True)
        prev, n = cur, n + 1
        if ns.iterations is not None and n >= ns.iterations:
            return 0
        time.sleep(ns.delay)


def _table(sample: Sample, version: str, nr_cpus: int):
    from rich.table import Table
    run_ = sum("r" in d["state"] for d in sample.domains)
    blocked = sum("b" in d["state"] for d in sample.domains)
    paused = sum("p" in d["state"] for d in sample.domains)
    title = (f"xl top - {time.strftime('%H:%M:%S')}   Xen {version}   "
             f"{len(sample.domains)} domains: {run_} running, {blocked} blocked, {paused} paused"
             f"   CPUs: {nr_cpus}")
    t = Table(title=title, title_justify="left", caption="q: quit", caption_justify="left")
    for name, _ in XENTOP + OURS:
        t.add_column(name, justify="left" if name == "NAME" else "right", no_wrap=True)
    for d in sample.domains:
        style = "bold" if "r" in d["state"] else ("yellow" if "p" in d["state"] else None)
        t.add_row(*row(d), style=style)
    return t


def _live(ns, lx, total_kb: int) -> int:
    from rich.live import Live
    v = lx.xc.version()
    version = f"{v['major']}.{v['minor']}{v['extra']}"
    nr_cpus = lx.xc.physinfo()["nr_cpus"]
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None
    if fd is not None:
        tty.setcbreak(fd)           # single keys, no echo; Ctrl-C still interrupts
    prev = None
    n = 0
    try:
        with Live(auto_refresh=False, screen=True) as live:
            while True:
                cur = take_sample(lx, total_kb)
                rates(cur, prev)
                live.update(_table(cur, version, nr_cpus), refresh=True)
                prev, n = cur, n + 1
                if ns.iterations is not None and n >= ns.iterations:
                    return 0
                deadline = time.monotonic() + ns.delay
                while (left := deadline - time.monotonic()) > 0:
                    if fd is None:
                        time.sleep(left)
                        break
                    if select.select([fd], [], [], left)[0] and sys.stdin.read(1) in ("q", "Q"):
                        return 0
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def main(argv: list[str]) -> int:
    """The command table's entry: xl's argv (argv[0] the command) parsed by argparse."""
    from toolstack.xl.utils import ctx
    p = argparse.ArgumentParser(prog=f"xl {NAME}", description=HELP)
    add_arguments(p)
    return run(p.parse_args(argv[1:]), ctx)
