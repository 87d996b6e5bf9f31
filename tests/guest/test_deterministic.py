"""The deterministic board (`xenpy boot --deterministic`): two runs of the same scenario give the
same guest consoles and the same guest log, byte for byte, however loaded the host is."""
from __future__ import annotations

import re

import pytest

from tests.cli.test_cubieboard2 import SD
from tests.daemon import ROOT, booted, dmesg, env_for, xl

EXAMPLES = ROOT / "examples"


def guest_log(env: dict[str, str]) -> list[str]:
    """The hypervisor log's guest lines (`(dN) ...`): what the guests printed, in order."""
    return [line for line in dmesg(env) if re.match(r"\(d\d+\) ", line)]


def twice(tmp_path_factory, scenario, *boot_args: str) -> tuple[list[str], list[str]]:
    """Run `scenario(env)` on two fresh deterministic boards; (output, guest log) of each."""
    runs = []
    for _ in range(2):
        board = booted(env_for(tmp_path_factory), "--deterministic", *boot_args)
        env = next(board)
        try:
            runs.append((scenario(env), guest_log(env)))
        finally:
            next(board, None)
    (out1, log1), (out2, log2) = runs
    assert out1 == out2, "the consoles differ between two deterministic runs"
    assert log1 == log2, "the guest logs differ between two deterministic runs"
    return out1, log1


def create_console(env, cfg, *variables: str, timeout: float = 120) -> list[str]:
    r = xl("create", "-c", str(cfg), *variables, env=env, timeout=timeout)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and lines[-1] == "Test result: SUCCESS", "\n".join(lines)
    return lines


def test_timer_guest(tmp_path_factory):
    out, _ = twice(tmp_path_factory, lambda env: create_console(
        env, EXAMPLES / "timer/timer.cfg", 'extra="ticks=100 period_us=1000"'))
    # In virtual time a tick is late by the time the guest takes to enter its handler: nanoseconds.
    lo, hi = map(int, re.search(r"jitter: min (\d+) ns, max (\d+) ns", "\n".join(out)).groups())
    assert 0 <= lo <= hi < 100_000


def test_pingpong(tmp_path_factory):
    def scenario(env):
        r = xl("create", str(EXAMPLES / "pingpong/pong.cfg"), env=env)
        assert r.returncode == 0, r.stderr
        out = create_console(env, EXAMPLES / "pingpong/ping.cfg")
        # Pong runs on after ping is gone: the log is compared once pong has finished too, not
        # at whatever point of pong's run the host's speed lets the next command find it. Its
        # console is a dom0 wait, so pong's timers expire meanwhile; it ends as pong powers off.
        r = xl("console", "pong", env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1:] == ["Test result: SUCCESS"], r.stdout
        return out + r.stdout.splitlines()
    out, log = twice(tmp_path_factory, scenario)
    assert "ping: 100 round trips" in "\n".join(out)
    assert any("pong: echoed 100 notifications" in line for line in log)


def test_stress_on_four_vcpus(tmp_path_factory):
    out, _ = twice(tmp_path_factory, lambda env: create_console(
        env, EXAMPLES / "stress/stress.cfg", "vcpus=4",
        'extra="iters=20000 tick_us=200 kick=16"', timeout=300))
    assert "stress: shared (ldrex/strex) 80000, expected 80000" in out


def test_erika_on_the_cubieboard2(tmp_path_factory):
    out, _ = twice(tmp_path_factory, lambda env: create_console(
        env, "examples/erika/erika.cfg", 'extra="exit=1"'), "--sd", str(SD.relative_to(ROOT)))
    assert [line for line in out if line.startswith("heartbeat ")] == \
        [f"heartbeat {n}/50: off" for n in (10, 20, 30, 40, 50)]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_seed_gives_its_own_reproducible_run(tmp_path_factory, seed):
    out, _ = twice(tmp_path_factory, lambda env: create_console(
        env, EXAMPLES / "stress/stress.cfg", "vcpus=2",
        'extra="iters=5000 tick_us=100 kick=8"', timeout=300), "--seed", str(seed))
    assert "stress: shared (ldrex/strex) 10000, expected 10000" in out
