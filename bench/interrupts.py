"""Interrupt and event-channel figures, measured in one run by the guests themselves (CNTVCT).

1. Event-channel round trip between two domUs (the pingpong guests), in us and as a multiple of a
   null hypercall (xen_version) timed by the same guest in the same run.
2. Timer jitter: a 1 ms periodic tick (the timer guest), lateness of each interrupt against its
   deadline: p50 / p90 / p99 / max, for ticks waking a WFI and ticks interrupting a running loop.
3. Interrupts a guest can take per second: self-SGIs one at a time (the ipi guest), waiting in WFI
   with IRQs masked and then as IRQ exceptions of a loop; the timer with a deadline always already
   past (period 1 us); vCPU-to-vCPU round trips.

Absolute figures are this machine's. The board runs in-process; guests are created with libxl as
`xl create` does.

    python bench/interrupts.py [--json bench/results/interrupts.json] [--quick]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import busy_host, machine, write_result  # noqa: E402
from toolstack.domcfg import load_domain_config  # noqa: E402
from toolstack.libxl import Libxl  # noqa: E402
from toolstack.xc import LocalTransport, Xc  # noqa: E402
from toolstack.xs import XsClient  # noqa: E402
from xenpy.board.board import Board  # noqa: E402
from xenpy.common.hypervisor import HypervisorConfig  # noqa: E402

EXAMPLES = ROOT / "examples"


class GuestFailed(Exception):
    pass


class Bench:
    def __init__(self) -> None:
        os.environ["XENPY_RUNDIR"] = tempfile.mkdtemp(prefix="xenpy-bench-irq-")
        self.board = Board(HypervisorConfig(nr_pcpus=2))
        self.board.start()
        self.lx = Libxl(Xc(LocalTransport(self.board.privcmd)), XsClient())

    def close(self) -> None:
        self.board.stop()

    def create(self, cfg: Path, *variables: str, paused: bool = False) -> int:
        # Preserved after power-off, so its console can still be read; finish() destroys it.
        variables = (*variables, 'on_poweroff="preserve"')
        config, _ = load_domain_config(str(cfg), list(variables))
        return self.lx.create(config, paused=paused, extra=list(variables))

    def console(self, domid: int, timeout: float) -> list[str]:
        """The domain's console until its `Test result:` line (the guest then powers off)."""
        text, offset = "", 0
        deadline = time.monotonic() + timeout
        while "Test result:" not in text:
            if time.monotonic() > deadline:
                raise GuestFailed(f"domain {domid}: no result after {timeout:.0f} s:\n{text}")
            r = self.lx.xc.console_read(domid, offset, 0.5)
            text += r["data"]
            offset = r["offset"]
            if (r["shutdown"] or r["dying"]) and not r["data"] and "Test result:" not in text:
                raise GuestFailed(f"domain {domid} stopped without a result:\n{text}")
        while not text.endswith("\n"):
            r = self.lx.xc.console_read(domid, offset, 0.5)
            text += r["data"]
            offset = r["offset"]
        lines = text.splitlines()
        if lines[-1] != "Test result: SUCCESS":
            raise GuestFailed(f"domain {domid}: {lines[-1]}\n{text}")
        return lines

    def wait_for_line(self, domid: int, prefix: str, timeout: float) -> None:
        text, offset = "", 0
        deadline = time.monotonic() + timeout
        while not any(line.startswith(prefix) for line in text.splitlines()):
            if time.monotonic() > deadline:
                raise GuestFailed(f"domain {domid}: no {prefix!r} after {timeout:.0f} s:\n{text}")
            r = self.lx.xc.console_read(domid, offset, 0.5)
            text += r["data"]
            offset = r["offset"]

    def finish(self, domid: int) -> None:
        if self.lx.xc.domain_getinfo(domid) is not None:
            self.lx.destroy(domid)


def grab(pattern: str, lines: list[str]) -> tuple[int, ...]:
    for line in lines:
        m = re.fullmatch(pattern, line)
        if m:
            return tuple(int(g) for g in m.groups())
    raise GuestFailed(f"no line matches {pattern!r}")


def pingpong(b: Bench, rounds: int, cpus: tuple[str, str] = ("0", "1"), prefix: str = ""
             ) -> dict[str, float]:
    """Ping on pCPU cpus[0], pong on cpus[1]: across pCPUs (a wake-up is a host thread's) or on one
    (the pCPU switches from one to the other)."""
    pong = b.create(EXAMPLES / "pingpong/pong.cfg", f'extra="role=pong rounds={rounds}"',
                    f'cpus="{cpus[1]}"', paused=True)
    ping = b.create(EXAMPLES / "pingpong/ping.cfg", f'cpus="{cpus[0]}"',
                    f'extra="role=ping peer={pong} rounds={rounds} hcalls=5000 timeout_ms=20000"')
    try:
        # Pong stays paused while ping times its null hypercalls: the figure is a hypercall's
        # cost, not a hypercall's wait for the interpreter lock beside a busy pCPU.
        b.wait_for_line(ping, "ping: offered port", 30)
        b.lx.xc.domain_unpause(pong)
        lines = b.console(ping, 30 + rounds * 0.05)
        b.console(pong, 30)
    finally:
        b.finish(ping)
        b.finish(pong)
    (null_ns,) = grab(r"ping: null hypercall \(xen_version\) (\d+) ns, average of \d+", lines)
    avg, lo, hi = grab(rf"ping: {rounds} round trips: avg (\d+) us, min (\d+) us, max (\d+) us", lines)
    res = {"evtchn_rtt_avg_us": avg, "evtchn_rtt_min_us": lo, "evtchn_rtt_max_us": hi,
           "null_hypercall_ns": null_ns, "evtchn_rtt_over_null_hypercall": avg * 1000 / null_ns,
           "rounds": rounds}
    return {prefix + k: v for k, v in res.items()}


def timer(b: Bench, ticks: int, period_us: int, prefix: str) -> dict[str, float]:
    d = b.create(EXAMPLES / "timer/timer.cfg", f'name="{prefix}"',
                 f'extra="ticks={ticks} period_us={period_us} every={ticks}"')
    try:
        lines = b.console(d, 60 + ticks * period_us / 1e6 * 4)
    finally:
        b.finish(d)
    out: dict[str, float] = {f"{prefix}_ticks": ticks, f"{prefix}_period_us": period_us}
    for what in ("idle", "busy", "jitter"):
        lo, hi, avg = grab(rf"{what}: min (\d+) ns, max (\d+) ns, avg (\d+) ns over \d+ ticks",
                           lines)
        out.update({f"{prefix}_{what}_min_us": lo / 1000, f"{prefix}_{what}_avg_us": avg / 1000,
                    f"{prefix}_{what}_max_us": hi / 1000})
    p50, p90, p99 = grab(r"percentiles: p50 (\d+) ns, p90 (\d+) ns, p99 (\d+) ns", lines)
    (late,) = grab(r"late by a period or more: (\d+) of \d+ ticks", lines)
    out.update({f"{prefix}_p50_us": p50 / 1000, f"{prefix}_p90_us": p90 / 1000,
                f"{prefix}_p99_us": p99 / 1000, f"{prefix}_late_by_a_period": late})
    try:
        _n, _us, rate = grab(r"(\d+) ticks in (\d+) us from the first deadline: (\d+) interrupts "
                             r"per second", lines)
        out[f"{prefix}_interrupts_per_s"] = rate
    except GuestFailed:
        pass
    return out


def ipi(b: Bench, rounds: int, self_sgis: int) -> dict[str, float]:
    d = b.create(EXAMPLES / "ipi/ipi.cfg", f'extra="rounds={rounds} self={self_sgis}"')
    try:
        lines = b.console(d, 60)
    finally:
        b.finish(d)
    ev_avg, ev_max = grab(rf"evtchn ipi: {rounds} round trips, avg (\d+) ns, max (\d+) ns", lines)
    sgi_avg, sgi_max = grab(rf"sgi: {rounds} round trips, avg (\d+) ns, max (\d+) ns", lines)
    _n, _us, rate = grab(r"self-sgi: (\d+) interrupts in (\d+) us: (\d+) per second", lines)
    _n, _us, exc_rate = grab(r"self-sgi as exceptions: (\d+) interrupts in (\d+) us: (\d+) per "
                             r"second", lines)
    return {"ipi_evtchn_rtt_avg_us": ev_avg / 1000, "ipi_evtchn_rtt_max_us": ev_max / 1000,
            "ipi_sgi_rtt_avg_us": sgi_avg / 1000, "ipi_sgi_rtt_max_us": sgi_max / 1000,
            "self_sgi_per_s": rate, "self_sgi_exception_per_s": exc_rate, "ipi_rounds": rounds}


def busy(fn):
    with busy_host():
        return fn()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=str(ROOT / "bench/results/interrupts.json"))
    ap.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    ns = ap.parse_args()
    q = ns.quick
    res: dict[str, object] = dict(machine())
    errors: list[str] = []
    b = Bench()
    try:
        for name, fn in (("pingpong", lambda: pingpong(b, 100 if q else 500)),
                         ("pingpong_one_pcpu", lambda: pingpong(b, 100 if q else 500, ("0", "0"),
                                                                "one_pcpu_")),
                         ("pingpong_host_busy", lambda: busy(lambda: pingpong(
                             b, 100 if q else 500, ("0", "1"), "host_busy_"))),
                         ("timer", lambda: timer(b, 300 if q else 2000, 1000, "timer")),
                         ("timer_max_rate", lambda: timer(b, 500 if q else 3000, 1, "maxrate")),
                         ("ipi", lambda: ipi(b, 100 if q else 300, 500 if q else 2000))):
            t0 = time.monotonic()
            try:
                res.update(fn())
            except GuestFailed as e:    # a benchmark reports, it does not stop at the first error
                errors.append(f"{name}: {e}")
            print(f"  ({name}: {time.monotonic() - t0:.1f} s)", file=sys.stderr)
    finally:
        b.close()
    res["errors"] = errors

    def f(key: str, fmt: str = "{:.1f}") -> str:
        return fmt.format(res[key]) if key in res else "n/a"

    rows = [
        ("the host's own hand-off: pipe round trip", f("host_handoff_us") + " us"),
        ("null hypercall (xen_version), guest-timed", f("null_hypercall_ns", "{:.0f}") + " ns"),
        ("event channel round trip, domU <-> domU", f"avg {f('evtchn_rtt_avg_us', '{:.0f}')} us, "
         f"min {f('evtchn_rtt_min_us', '{:.0f}')} us, max {f('evtchn_rtt_max_us', '{:.0f}')} us"),
        ("  ... in null hypercalls (target <= 10)",
         f("evtchn_rtt_over_null_hypercall", "{:.0f}") + " x"),
        ("  ... both on one pCPU", f"avg {f('one_pcpu_evtchn_rtt_avg_us', '{:.0f}')} us, "
         f"{f('one_pcpu_evtchn_rtt_over_null_hypercall', '{:.0f}')} x (target <= 4)"),
        ("  ... two pCPUs, the host busy", f"avg {f('host_busy_evtchn_rtt_avg_us', '{:.0f}')} us, "
         f"{f('host_busy_evtchn_rtt_over_null_hypercall', '{:.0f}')} x"),
        ("timer 1 ms tick lateness p50 / p90 / p99", f"{f('timer_p50_us')} / {f('timer_p90_us')} / "
         f"{f('timer_p99_us')} us"),
        ("  ... max, waking WFI / running loop", f"{f('timer_idle_max_us')} / "
         f"{f('timer_busy_max_us')} us"),
        ("  ... ticks late by a whole period", f("timer_late_by_a_period", "{:.0f}") + " of "
         + f("timer_ticks", "{:.0f}")),
        ("timer interrupts/s (deadline always past)", f("maxrate_interrupts_per_s", "{:.0f}")),
        ("self-SGI interrupts/s, one at a time", f("self_sgi_per_s", "{:.0f}")),
        ("  ... taken as IRQ exceptions of a loop", f("self_sgi_exception_per_s", "{:.0f}")),
        ("vCPU->vCPU round trip: evtchn IPI / SGI", f"{f('ipi_evtchn_rtt_avg_us', '{:.0f}')} / "
         f"{f('ipi_sgi_rtt_avg_us', '{:.0f}')} us"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"interrupts and event channels ({res['machine']}, Python {res['python']})")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for e in errors:
        print(f"error: {e.splitlines()[0]}")
    write_result(ns.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
