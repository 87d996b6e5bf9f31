"""The execution engine is exact: guests that count, idle, unmask and spin the way real kernels do.

stress: LDREX/STREX, plain and spinlocked increments on 1, 2 and 4 vCPUs while timers, IPIs and the
smallest time slice keep preempting them; every count must be exact (no instruction run twice or
skipped by a stop).
idle: Mini-OS's idle loop (WFI with IRQs masked, then a one-instruction unmasked window) woken by
events dom0 sends; each is taken in the window, and while idle the domain is blocked and the board
uses next to no host CPU.
unmask: an interrupt pending behind CPSR.I is taken before the instruction after the unmask
(cpsie, msr and three exception returns), for an event and for the timer.
wfe: a WFE spinlock between two vCPUs runs without an undefined-instruction exception.
shootdown: a mapping one vCPU changes (then TLBIALLIS) and code it patches (then ICIMVAU or
ICIALLUIS) are seen by the other vCPU, whose own TLB and translated code held the old ones.

Each guest is driven through `xl create -c` with a hard timeout: a hang fails with the console
printed so far.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, booted, env_for, rows, run, wait_for, xl
from toolstack.xc import SocketTransport
from toolstack.xenevtchn import Xenevtchn

EXAMPLES = ROOT / "examples"
SUCCESS = "Test result: SUCCESS"
# Hard limits: a guest that hangs (a lost interrupt, a deadlocked lock) fails at this point. They
# are generous (a loaded 2-core machine) and no test measures how fast anything ran.
BOOT_TIMEOUT = 60
STRESS_TIMEOUT = 300
GUEST_TIMEOUT = 120
EVENT_TIMEOUT = 30


class Guest:
    """`xl create -c CFG VARS` in the background, its console collected line by line."""

    def __init__(self, env: dict[str, str], cfg: Path, *variables: str, name: str) -> None:
        self.env, self.name = env, name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolstack.xl", "create", "-c", str(cfg), *variables],
            cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if not line.startswith("Parsing config from "):
                self.lines.append(line)

    def console(self) -> str:
        return "\n".join(self.lines) or "(nothing)"

    def wait_line(self, pattern: str, timeout: float, what: str) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                m = re.fullmatch(pattern, line)
                if m:
                    return m
            if time.monotonic() >= deadline or (self.proc.poll() is not None
                                                 and not self._reader.is_alive()):
                raise AssertionError(f"{what}: no line matching {pattern!r} after {timeout} s; "
                                     f"console so far:\n{self.console()}")
            time.sleep(0.05)

    def finish(self, timeout: float, what: str) -> list[str]:
        """Wait for the console to end (the domain powered off); its lines."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{what}: still running after {timeout} s; console so far:\n"
                                 f"{self.console()}") from None
        self._reader.join(10)
        return list(self.lines)

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *_exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        xl("destroy", self.name, env=self.env)
        self._reader.join(10)


def domid_of(name: str, env: dict[str, str]) -> int | None:
    row = rows(xl("list", env=env).stdout).get(name)
    return int(row[0]) if row else None


def state_of(name: str, env: dict[str, str]) -> str | None:
    row = rows(xl("list", env=env).stdout).get(name)
    return row[3] if row else None


# -- stress ----------------------------------------------------------------------------------------

# 10^5 LDREX/STREX increments per variant (a bench runs 10^7 with iters= on the command line).
# A timer tick every 2 ms and an IPI every 64 iterations: frequent, yet each tick is re-armed
# from the time its handler ran, so even a slow engine leaves the loop time between ticks.
STRESS_ITERS = {1: 100_000, 2: 50_000, 4: 25_000}


@pytest.fixture(scope="class")
def fast_board(tmp_path_factory):
    """A 2-pCPU board with the smallest time slice, so vCPUs are preempted as often as it can
    (for the stress tests only: its ticker keeps a tenth of a core busy even when idle)."""
    yield from booted(env_for(tmp_path_factory), "--pcpus", "2", "--slice-us", "100")


class TestStress:
    """stress on 1, 2 and 4 vCPUs, sharing one fast board."""

    @pytest.mark.parametrize("vcpus", [1, 2, 4])
    def test_counts_are_exact_under_preemption(self, fast_board, vcpus):
        iters = STRESS_ITERS[vcpus]
        total = vcpus * iters
        with Guest(fast_board, EXAMPLES / "stress/stress.cfg", f"vcpus={vcpus}",
                   f'extra="iters={iters} tick_us=2000 kick=64"', name="stress") as g:
            lines = g.finish(STRESS_TIMEOUT, f"stress on {vcpus} vCPUs")
        console = "\n".join(lines)
        assert lines and lines[-1] == SUCCESS, console
        assert f"stress: {vcpus} vcpus x {iters} iterations, timer every 2000 us, an IPI every 64" \
            in lines, console
        assert f"stress: shared (ldrex/strex) {total}, expected {total}" in lines, console
        assert f"stress: locked (ticket lock) {total}, expected {total}" in lines, console
        for cpu in range(vcpus):
            m = next((re.fullmatch(rf"stress: vcpu{cpu} private (\d+), expected {iters}; "
                                   rf"took (\d+) IPIs, (\d+) timer ticks", l) for l in lines
                      if l.startswith(f"stress: vcpu{cpu} ")), None)
            assert m, console
            private, ipis, ticks = map(int, m.groups())
            assert private == iters, console
            # The preemption really happened: IPIs (from the previous vCPU, or from itself on one
            # vCPU) and timer ticks arrived.
            assert ipis > 0 and ticks > 0, console


def test_boot_refuses_a_slice_below_xens_minimum(tmp_path_factory):
    r = run("xenpy", "boot", "--slice-us", "50", env=env_for(tmp_path_factory))
    assert r.returncode != 0
    assert "--slice-us 50: the time slice must be at least 100 us" in r.stderr
    assert "Traceback" not in r.stderr


# -- idle ------------------------------------------------------------------------------------------

def board_cpu_seconds(env: dict[str, str]) -> float:
    """User + system CPU time of the board process so far (/proc/PID/stat)."""
    pid = int((Path(env["XENPY_RUNDIR"]) / "board.pid").read_text())
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_idle(env: dict[str, str], g: Guest, what: str) -> None:
    """Blocked in `xl list`, and the board nearly idle over two seconds of wall time."""
    assert wait_for(lambda: state_of("idle", env) == "-b----", EVENT_TIMEOUT), (
        f"{what}: idle is {state_of('idle', env)!r}, not blocked; console:\n{g.console()}")
    cpu0, t0 = board_cpu_seconds(env), time.monotonic()
    time.sleep(2)
    busy = (board_cpu_seconds(env) - cpu0) / (time.monotonic() - t0)
    assert busy < 0.2, (f"{what}: the board used {busy:.0%} of a core while the guest idled; "
                        f"console:\n{g.console()}")
    assert state_of("idle", env) == "-b----", f"{what}: console:\n{g.console()}"


def test_idle_takes_every_event_in_its_window_and_sleeps_meanwhile(board):
    events = 3
    with Guest(board, EXAMPLES / "idle/idle.cfg", f'extra="events={events}"', name="idle") as g:
        m = g.wait_line(rf"idle: waiting for {events} events on port (\d+) from domain 0",
                        BOOT_TIMEOUT, "idle start")
        domid = domid_of("idle", board)
        assert domid is not None, g.console()
        evt = Xenevtchn(SocketTransport(Path(board["XENPY_RUNDIR"]) / "privcmd"))
        try:
            port = evt.bind_interdomain(domid, int(m.group(1)))
            for n in range(1, events + 1):
                assert_idle(board, g, f"before event {n}")
                evt.notify(port)
                g.wait_line(rf"idle: event {n}", EVENT_TIMEOUT, f"event {n} of {events}")
            lines = g.finish(GUEST_TIMEOUT, "idle after its last event")
        finally:
            evt.close()
    console = "\n".join(lines)
    assert lines[-1] == SUCCESS, console
    assert [l for l in lines if l.startswith("idle: event ")] == \
        [f"idle: event {n}" for n in range(1, events + 1)], console
    assert any(re.fullmatch(rf"idle: took {events} events in \d+ idle windows, \d+ missed with "
                            rf"an upcall pending", l) for l in lines), console


# -- unmask ----------------------------------------------------------------------------------------

UNMASK_ROUNDS = 20


@pytest.mark.parametrize("how", ["cpsie", "msr", "subs", "rfe", "ldm"])
def test_pending_interrupt_is_taken_as_irqs_are_unmasked(board, how):
    with Guest(board, EXAMPLES / "unmask/unmask.cfg",
               f'extra="how={how} rounds={UNMASK_ROUNDS}"', name="unmask") as g:
        lines = g.finish(GUEST_TIMEOUT, f"unmask by {how}")
    console = "\n".join(lines)
    header = f"unmask: {UNMASK_ROUNDS} rounds of evtchn,timer x {how}"
    assert header in lines, console
    body = lines[lines.index(header) + 1:]
    # The same console every round and every run: the handler's line, then the marker.
    expected = [f"{kind} {src} {how} {r}" for r in range(1, UNMASK_ROUNDS + 1)
                for src in ("evtchn", "timer") for kind in ("isr", "marker")]
    assert body[:len(expected)] == expected, console
    assert body[len(expected):] == [
        f"unmask: {2 * UNMASK_ROUNDS} interrupts, 0 taken after the marker", SUCCESS], console


# -- wfe -------------------------------------------------------------------------------------------

def test_wfe_spinlock_between_two_vcpus(board):
    rounds = 20
    with Guest(board, EXAMPLES / "wfe/wfe.cfg", f'extra="rounds={rounds} hold_us=2000"',
               name="wfe") as g:
        lines = g.finish(GUEST_TIMEOUT, "wfe")
    console = "\n".join(lines)
    assert lines[-1] == SUCCESS, console
    tickets = 2 * rounds
    assert f"wfe: {rounds} rounds, lock now {tickets << 16 | tickets:08x}, 0 overlaps" in lines, \
        console


# -- shootdown -------------------------------------------------------------------------------------

def test_what_one_vcpu_remaps_or_patches_the_other_sees(board):
    rounds = 40
    with Guest(board, EXAMPLES / "shootdown/shootdown.cfg", f'extra="rounds={rounds}"',
               name="shootdown") as g:
        lines = g.finish(GUEST_TIMEOUT, "shootdown")
    console = "\n".join(lines)
    assert f"shootdown: {rounds} rounds, 0 stale mappings, 0 stale code" in lines, console
    assert lines[-1] == SUCCESS, console


# -- retrap ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deterministic_board(tmp_path_factory):
    yield from booted(env_for(tmp_path_factory), "--deterministic")


@pytest.mark.parametrize("which", ["board", "deterministic_board"])
def test_code_rewritten_where_a_trapped_cp15_instruction_was_runs_as_written(which, request):
    """A trap stays on its address; whatever the code there is by then is what runs: a timer
    write turned into an add, back into the write, into another timer write; a counter read
    (trapped on the deterministic board) turned into an add."""
    env = request.getfixturevalue(which)
    with Guest(env, EXAMPLES / "retrap/retrap.cfg", name="retrap") as g:
        lines = g.finish(GUEST_TIMEOUT, "retrap")
    console = "\n".join(lines)
    assert "retrap: add where the CTL write was: 2, CTL 0" in lines, console
    assert "retrap: TVAL where the CTL write was: CVAL a second past the counter, CTL 2" in lines, \
        console
    assert "retrap: add where the counter read was: 42" in lines, console
    assert lines[-1] == SUCCESS, console
