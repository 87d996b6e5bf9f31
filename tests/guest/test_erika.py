"""The ERIKA-style RTOS domU (domains/erika) on the Cubieboard2, started as the guide starts it:
boot the board from its SD card, then `xl create examples/erika/erika.cfg`."""
from __future__ import annotations

import re
import time

import pytest

from tests.cli.test_cubieboard2 import SD
from tests.daemon import ROOT, booted, dmesg, env_for, rows, wait_for, xl

CFG = "examples/erika/erika.cfg"
JITTER = re.compile(r"alarm jitter: min (\d+) us, max (\d+) us, avg (\d+) us over (\d+) expiries")


@pytest.fixture(scope="module")
def cubieboard(tmp_path_factory):
    # the card's boot.scr
    yield from booted(env_for(tmp_path_factory), "--sd", str(SD.relative_to(ROOT)))


LATE = "kernel service errors (heartbeats late by up to"
REFUSED = re.compile(r"os: ActivateTask\(\d+\): E_OS_LIMIT")


def test_startup_heartbeat_jitter_and_pd1(cubieboard):
    r = xl("create", "-c", CFG, 'extra="exit=1"', env=cubieboard, timeout=120)
    assert r.returncode == 0, r.stderr
    # On a host too loaded to run a 10 ms alarm (the startup tasks' XenStore calls outrank the
    # heartbeat), heartbeats queue up and the kernel refuses activations beyond their limit,
    # saying so where it happens; the run then ends with the RTOS's own lateness verdict. That
    # is the RTOS reporting the host, not a wrong result: the exact heartbeats are checked on
    # the deterministic board (test_deterministic.py). Everything else must hold either way.
    everything = r.stdout.splitlines()
    refused = [line for line in everything if REFUSED.fullmatch(line)]
    lines = [line for line in everything if not REFUSED.fullmatch(line)]
    late = bool(refused) and lines[-1].startswith("Test result: FAILURE (") and LATE in lines[-1]
    assert lines[0] == "ERIKA Enterprise-style OSEK kernel on Xen (xenpy domU)"
    assert lines[1].startswith("os: StartOS(0): 6 tasks, 1 alarms, 1 resources, counter tick "
                               "1000 us")
    assert lines[2:5] == ["TaskInit: PD1 -> high (read back 1)",
                          "TaskInit: PD28 refused: -22",                  # -EINVAL: no PD28
                          "TaskInit: AlarmHeartbeat every 10 ms, 50 beats"]
    # An event on an IPI channel: its PPI 31 handler runs at ISR level and activates a task,
    # which waits for the higher-priority TaskInit to end.
    port = re.fullmatch(r"TaskInit: sent an event on port (\d+)", lines[5]).group(1)
    # This board's dom0 did not open /local to domUs: the command server says why it is off.
    assert lines[6] == ("pin server: cannot write /local/erika_task_evtchn: EACCES (dom0 must "
                        "run `xenstore-chmod -r /local b` first)")
    assert lines[7] == f"TaskEvent: activated by the upcall of port {port} (1 at ISR level)"
    report = next(line for line in lines if line.startswith("TaskReport: "))
    beats, errors = map(int, re.match(r"TaskReport: (\d+) beats, .*, (\d+) kernel errors$",
                                      report).groups())
    if late:
        assert errors == len(refused) and beats >= 50, "\n".join(everything)
    else:
        assert [f"heartbeat {n}/50: off" for n in (10, 20, 30, 40, 50)] == \
            [line for line in lines if line.startswith("heartbeat ")]
        assert any(re.fullmatch(r"TaskBackground: \d+ loops, preempted by 25 beats", line)
                   for line in lines), lines
        assert errors == 0 and lines[-1] == "Test result: SUCCESS", "\n".join(everything)

    # The kernel's jitter summary: every heartbeat is one expiry of the 10 ms alarm, none is
    # early (lateness is unsigned), and a lateness of a second would mean lost interrupts.
    m = JITTER.fullmatch(lines[-2])
    assert m, lines[-2]
    lo, hi, avg, n = map(int, m.groups())
    assert n == beats + len(refused) and beats >= 50      # each expiry ran a beat or was refused
    assert lo <= avg <= hi and (late or hi < 1_000_000)

    # The startup task's pin, as the board's PIO model holds it.
    log = "\n".join(dmesg(cubieboard))
    domid = re.search(r"^\(XEN\) xl: domain (\d+) \(ERIKA_Enterprise\) shut down \(0\)", log,
                      re.M).group(1)
    assert f"(XEN) a20-pio: PD1 is now gpio_out (d{domid})" in log
    assert re.findall(r"a20-pio: PD1 -> (\w+) \(d(\d+)\)", log)[-1] == ("high", domid)
    assert wait_for(lambda: "ERIKA_Enterprise" not in xl("list", env=cubieboard).stdout)


def test_without_exit_it_stays_up_idle_until_destroyed(cubieboard):
    r = xl("create", CFG, 'extra="beats=5"', env=cubieboard)
    assert r.returncode == 0, r.stderr
    domid = rows(xl("list", env=cubieboard).stdout)["ERIKA_Enterprise"][0]
    assert wait_for(lambda: f"(d{domid}) ERIKA: running, idle until an event" in
                    dmesg(cubieboard), timeout=60)
    # Its verdict came first. On a host too loaded to run its 10 ms alarm, a lost activation is
    # its own reported failure (the heartbeats are checked on the deterministic board); it still
    # stays up, which is what this test is about.
    verdict = [line for line in dmesg(cubieboard) if line.startswith(f"(d{domid}) Test result: ")]
    late = len(verdict) == 1 and "kernel service errors (heartbeats late by up to" in verdict[0]
    assert verdict == [f"(d{domid}) Test result: SUCCESS"] or late, verdict
    state = rows(xl("list", env=cubieboard).stdout)["ERIKA_Enterprise"][3]
    assert state in ("r-----", "-b----"), state
    assert xl("destroy", "ERIKA_Enterprise", env=cubieboard).returncode == 0
    assert "ERIKA_Enterprise" not in xl("list", env=cubieboard).stdout


def _late_heartbeats(env, extra: str) -> str:
    """Run the RTOS with a 5 ms deadline on its 10 ms heartbeats and hold it paused for half a
    second on the way: a heartbeat comes late. Returns its domain id."""
    xl("destroy", "ERIKA_Enterprise", env=env)          # one RTOS at a time drives the pins
    assert wait_for(lambda: "ERIKA_Enterprise" not in xl("list", env=env).stdout)
    assert xl("create", CFG, f'extra="beats=1000 period_ms=10 deadline_us=5000 {extra}"',
              env=env).returncode == 0
    domid = rows(xl("list", env=env).stdout)["ERIKA_Enterprise"][0]
    assert wait_for(lambda: f"(d{domid}) heartbeat 200/1000: off" in dmesg(env), timeout=60)
    assert xl("pause", "ERIKA_Enterprise", env=env).returncode == 0
    time.sleep(0.5)
    assert xl("unpause", "ERIKA_Enterprise", env=env).returncode == 0
    assert wait_for(lambda: any(line.startswith(f"(d{domid}) Test result: ")
                                for line in dmesg(env)), timeout=60)
    return domid


def test_late_heartbeats_are_reported_and_the_rtos_runs_on(cubieboard):
    domid = _late_heartbeats(cubieboard, "")
    assert wait_for(lambda: f"(d{domid}) ERIKA: running, idle until an event" in
                    dmesg(cubieboard), timeout=60)
    result = [ln for ln in dmesg(cubieboard) if ln.startswith(f"(d{domid}) Test result: ")]
    assert len(result) == 1 and result[0].startswith(f"(d{domid}) Test result: FAILURE ("), result
    assert rows(xl("list", env=cubieboard).stdout)["ERIKA_Enterprise"][3] in ("r-----", "-b----")
    assert xl("destroy", "ERIKA_Enterprise", env=cubieboard).returncode == 0


def test_with_exit_1_late_heartbeats_end_the_run(cubieboard):
    domid = _late_heartbeats(cubieboard, "exit=1")
    assert wait_for(lambda: "ERIKA_Enterprise" not in xl("list", env=cubieboard).stdout)
    assert any(ln.startswith(f"(d{domid}) Test result: FAILURE (") for ln in dmesg(cubieboard))
    assert f"(d{domid}) ERIKA: running, idle until an event" not in dmesg(cubieboard)
