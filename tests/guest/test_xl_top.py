"""`xl top` in batch mode against guests doing known work: gntcmd answering dom0's commands
(one EVTCHNOP_send per answer)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

from tests.daemon import ROOT, TIMEOUT, wait_for, xl
from tests.guest.test_grant_protocol import CMD_ADD, CMD_STOP, Dom0Side, xs_read
from tests.guest.test_irq_guests import domid_of

HEADER = ("      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS  "
          "HCALLS/s   IRQS/s  EVTCHN/s       HVC      MMIO     VIRQ    VSGI  PSCI      WFI")


def top(*args: str, env) -> subprocess.CompletedProcess:
    return xl("top", *args, env=env)


def test_xl_top_batch_counts_what_the_guest_does(board):
    env = board
    console = subprocess.Popen([sys.executable, "-m", "toolstack.xl", "create", "-c",
                                "examples/gntcmd/gntcmd.cfg", 'name="busy"'], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: domid_of("busy", env) is not None, 30)
        domid = domid_of("busy", env)
        assert wait_for(lambda: xs_read(env, f"/local/domain/{domid}/data/cmd-port"), 30)
        d0 = Dom0Side(env, domid)
        stop = threading.Event()
        done = [0]

        def drive() -> None:
            while not stop.is_set():
                assert d0.call(CMD_ADD, done[0], 1)[:2] == (0, done[0] + 1)
                done[0] += 1

        before = json.loads(top("-b", "-i", "1", "--json", env=env).stdout)["domains"]
        sends0 = next(d for d in before if d["name"] == "busy")["evtchn_sends"]
        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        try:
            assert wait_for(lambda: done[0] >= 5, 30), "the guest answered no commands"
            r = top("-b", "-i", "2", "-d", "1", env=env)
        finally:
            stop.set()
            driver.join(TIMEOUT)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        # xentop's batch format: a header, then one line per domain, per iteration.
        assert [i for i, l in enumerate(lines) if l == HEADER] == [0, len(lines) // 2], r.stdout
        second = lines[len(lines) // 2 + 1:]
        cols = {l.split()[0]: l.split() for l in second}
        assert set(cols) >= {"Domain-0", "busy"}
        busy = cols["busy"]
        assert re.fullmatch(r"[-dsbcpr]{6}", busy[1]) and busy[8] == "1"
        # MEM(k) with its magic pages; MAXMEM(k) the target plus libxl's LIBXL_MAXMEM_CONSTANT
        assert busy[4] == "32776" and busy[6] == "33792"
        assert float(busy[10]) > 0                # IRQS/s: an upcall per command
        assert float(busy[11]) > 0                # EVTCHN/s: an answer per command
        assert int(busy[12]) > 0 and int(busy[13]) > 0            # HVC, MMIO totals
        assert cols["Domain-0"][1] == "-----r"

        after = json.loads(top("-b", "-i", "1", "--json", env=env).stdout)["domains"]
        busy_j = next(d for d in after if d["name"] == "busy")
        # Every command was answered with one EVTCHNOP_send, counted by the guest's vCPU.
        assert busy_j["evtchn_sends"] - sends0 == done[0]
        assert busy_j["exits"]["virq"] >= done[0] and busy_j["exits"]["wfi"] > 0
        assert busy_j["exits"]["psci"] == 0 and busy_j["exits"]["vsgi"] == 0

        assert d0.call(CMD_STOP)[:2] == (0, 0)
        d0.unmap()
        d0.evt.notify(d0.port)
        d0.close()
        out, _ = console.communicate(timeout=TIMEOUT)
        assert out.splitlines()[-1] == "Test result: SUCCESS"
    finally:
        console.kill()


def test_xl_top_options(board):
    env = board
    r = top("-b", "-i", "0", env=env)
    assert r.returncode == 1 and r.stderr.strip() == "xl top: -i needs a positive number of iterations"
    r = top("-d", "-1", env=env)
    assert r.returncode == 1 and r.stderr.strip() == "xl top: -d needs a positive number of seconds"
    r = top("--json", "-d", "0.2", env=env)
    doc = json.loads(r.stdout)
    assert doc["interval_s"] == 0.2 and doc["domains"][0]["name"] == "Domain-0"
    r = top("--help", env=env)
    assert r.returncode == 0 and "xentop's batch format" in r.stdout and "--iterations" in r.stdout
