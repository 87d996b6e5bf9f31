"""Dom0's erika-xen driver against the ERIKA RTOS domU on the Cubieboard2: `xenpy proc write |
read erika-xen/pin_state`, the demo's protocol (ports published in XenStore, grant ref 2, the
notify-back on dom0's port 7), its errors, and vCPU pinning of the seed's erika.cfg."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.cli.test_cubieboard2 import SD
from tests.daemon import ROOT, booted, dmesg, env_for, rows, run, wait_for, xl

CFG = "examples/erika/erika.cfg"
SERVING = re.compile(r"\(d(\d+)\) pin server: page 0x[0-9a-f]+ granted to dom0 as ref 2, "
                     r"port (\d+) at /local/erika_task_evtchn")


def proc(*args: str, env, timeout: float = 60):
    return run("xenpy", "proc", *args, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    for env in booted(env_for(tmp_path_factory), "--sd", str(SD.relative_to(ROOT))):
        assert run("toolstack.xenstore_cli", "chmod", "-r", "/local", "b", env=env).returncode == 0
        yield env


@pytest.fixture
def erika(board):
    """A running ERIKA domain serving commands: its domid."""
    r = xl("create", CFG, 'extra="beats=5"', env=board)
    assert r.returncode == 0, r.stderr
    domid = rows(xl("list", env=board).stdout)["ERIKA_Enterprise"][0]
    assert wait_for(lambda: any(m and m.group(1) == domid for m in map(SERVING.search,
                                                                        dmesg(board))), 60)
    yield int(domid)
    xl("destroy", "ERIKA_Enterprise", env=board)


def pio_log(env, domid: int) -> list[str]:
    return re.findall(rf"\(XEN\) a20-pio: (PD12 -> \w+) \(d{domid}\)", "\n".join(dmesg(env)))


def test_write_drives_pd12_through_the_rtos_and_read_sees_the_register(board, erika):
    r = proc("write", "erika-xen/pin_state", "1", env=board)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"erika-xen/pin_state: PD12 <- 1 by ERIKA_Enterprise \(domain \d+\): "
                        r"return_value 0, round trip \d+\.\d\d ms\n", r.stdout), r.stdout
    assert proc("read", "erika-xen/pin_state", env=board).stdout == "1\n"
    assert pio_log(board, erika)[-1] == "PD12 -> high"      # the RTOS's store, in the model

    r = proc("write", "erika-xen/pin_state", "0", "--json", env=board)
    assert r.returncode == 0, r.stderr
    assert '"return_value": 0' in r.stdout and '"value": 0' in r.stdout
    assert proc("read", "erika-xen/pin_state", env=board).stdout == "0\n"
    assert pio_log(board, erika)[-1] == "PD12 -> low"

    # The RTOS printed each command, answered on dom0's port 7 (the demo's), as the driver
    # asked for it when port 7 was free.
    log = "\n".join(dmesg(board))
    served = re.findall(rf"\(d{erika}\) pin server: PD12 -> (\w+), return 0, dom0 port (\d+) "
                        rf"notified in \d+ us", log)
    assert served == [("high", "7"), ("low", "7")]
    # Unloaded: dom0's port and key are gone, the RTOS's offer stays for the next load.
    assert run("toolstack.xenstore_cli", "read", "/local/linux_erika_evtchn",
               env=board).returncode == 1
    assert proc("write", "erika-xen/pin_state", "1", env=board).returncode == 0


def test_a_pin_the_a20_lacks_comes_back_as_return_value(board, erika):
    r = proc("write", "erika-xen/pin_state", "1", "--pin", "28", env=board)
    assert r.returncode == 1
    assert r.stderr == ("xenpy proc: erika-xen/pin_state: ERIKA_Enterprise (domain "
                        f"{erika}) refused PD28 <- 1: return_value -22 (Invalid argument)\n")
    refused = f"(d{erika}) pin server: PD28 refused: return -22, dom0 port 7 notified in "
    assert wait_for(lambda: refused in "\n".join(dmesg(board)))
    # What does not fit the page's int32s never reaches it.
    r = proc("write", "erika-xen/pin_state", str(1 << 31), env=board)
    assert (r.returncode, r.stderr) == (1, "xenpy proc: erika-xen/pin_state: PD12 <- 2147483648: "
                                           "the page holds 32-bit signed integers\n")


def test_domain_names_the_rtos_and_a_wrong_one_is_refused(board, erika):
    r = proc("write", "erika-xen/pin_state", "1", "--domain", str(erika), env=board)
    assert r.returncode == 0, r.stderr
    r = proc("write", "erika-xen/pin_state", "1", "--domain", "0", env=board)
    assert r.returncode == 1
    assert re.fullmatch(rf"xenpy proc: erika-xen/pin_state: /local/erika_task_evtchn = \d+ was "
                        rf"published by domain {erika}, not by domain 0\n", r.stderr), r.stderr


def test_the_rtos_reads_dom0s_port_from_the_key_when_7_is_taken(board, erika):
    # Another dom0 user holds port 7: the driver takes the next port and publishes it.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from toolstack.xenevtchn import Xenevtchn\n"
         "e = Xenevtchn(); ports = []\n"
         "while not ports or ports[-1] < 7: ports.append(e.bind_unbound_port(0))\n"
         "print(ports[-1], flush=True); sys.stdin.read()"],
        cwd=ROOT, env=board, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "7"
        r = proc("write", "erika-xen/pin_state", "1", env=board)
        assert r.returncode == 0, r.stderr
    finally:
        holder.communicate("", timeout=30)
    ports = re.findall(rf"\(d{erika}\) pin server: PD12 -> high, return 0, dom0 port (\d+)",
                       "\n".join(dmesg(board)))
    assert ports and int(ports[-1]) > 7


def test_a_paused_rtos_times_out_and_a_killed_one_is_a_clear_error(board, erika):
    assert xl("pause", "ERIKA_Enterprise", env=board).returncode == 0
    t0 = time.monotonic()
    r = proc("write", "erika-xen/pin_state", "1", "--timeout", "1", env=board)
    assert r.returncode == 1
    assert r.stderr == ("xenpy proc: erika-xen/pin_state: ERIKA_Enterprise (domain "
                        f"{erika}): no answer to PD12 <- 1 in 1 s\n")
    assert time.monotonic() - t0 < 15

    # Killed mid-command: the driver notices at once, not at its timeout.
    writer = subprocess.Popen([sys.executable, "-m", "xenpy", "proc", "write",
                               "erika-xen/pin_state", "1", "--timeout", "60"], cwd=ROOT,
                              env=board, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    # In flight once the driver has published its port (then it binds, maps and notifies).
    assert wait_for(lambda: run("toolstack.xenstore_cli", "read", "/local/linux_erika_evtchn",
                                env=board).returncode == 0, 30)
    time.sleep(0.5)
    assert writer.poll() is None                        # waiting for the answer
    t0 = time.monotonic()
    assert xl("destroy", "ERIKA_Enterprise", env=board).returncode == 0
    _, err = writer.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert writer.returncode == 1
    assert err == ("xenpy proc: erika-xen/pin_state: ERIKA_Enterprise (domain "
                   f"{erika}) was destroyed before answering PD12 <- 1\n")


def test_without_an_rtos_the_driver_says_what_is_missing(board):
    # A dead domain's nodes go with it (xenstored's domain_tree_remove), the key too.
    r = proc("write", "erika-xen/pin_state", "1", env=board)
    assert r.returncode == 1
    assert r.stderr.startswith("xenpy proc: erika-xen/pin_state: /local/erika_task_evtchn does "
                               "not exist: no ERIKA domain offers its port")
    assert "Traceback" not in r.stderr
    # Reading needs no RTOS: it is the PIO's data register, as the last RTOS left it.
    last = re.findall(r"a20-pio: PD12 -> (\w+)", "\n".join(dmesg(board)))
    level = int(bool(last) and last[-1] == "high")
    assert proc("read", "erika-xen/pin_state", "--json", env=board).stdout == \
        f'{{"control": "erika-xen/pin_state", "pin": "PD12", "value": {level}}}\n'
    r = proc("read", "erika-xen/nothing", env=board)
    assert (r.returncode, r.stderr) == (1, "xenpy proc: erika-xen/nothing: No such file or "
                                           "directory (controls: erika-xen/pin_state)\n")


def test_cpus_1_pins_the_rtos_vcpu(board):
    r = xl("create", CFG, 'cpus="1"', 'extra="beats=5"', env=board)
    assert r.returncode == 0, r.stderr
    try:
        vcpus = [line.split() for line in xl("vcpu-list", "ERIKA_Enterprise",
                                              env=board).stdout.splitlines()[1:]]
        assert [(v[2], v[3], v[6:]) for v in vcpus] == [("0", "1", ["1", "/", "all"])]
        assert proc("write", "erika-xen/pin_state", "1", env=board).returncode == 0
    finally:
        xl("destroy", "ERIKA_Enterprise", env=board)


def test_two_vcpus_on_pcpus_1_and_2_need_a_board_that_has_pcpu_2(board, tmp_path_factory):
    # The Cubieboard2 has pCPUs 0-1: libxl's error, and no domain is left behind.
    r = xl("create", CFG, "vcpus=2", 'cpus=["1", "2"]', env=board)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ("xl: setting affinity failed on vcpu `1': Invalid "
                                         "argument (this host has pCPUs 0-1)")
    assert "ERIKA_Enterprise" not in xl("list", env=board).stdout

    # A board with three pCPUs (and no A20 PIO, hence no iomem; created paused, as the RTOS
    # would touch its GPIO at once): one vCPU on each named pCPU.
    env = env_for(tmp_path_factory)
    assert run("xenpy", "boot", "--pcpus", "3", env=env).returncode == 0
    try:
        r = xl("create", "-p", CFG, "vcpus=2", 'cpus=["1", "2"]', "iomem=[]", env=env)
        assert r.returncode == 0, r.stderr
        vcpus = [line.split() for line in xl("vcpu-list", "ERIKA_Enterprise",
                                              env=env).stdout.splitlines()[1:]]
        # vCPU 1 is offline until a PSCI CPU_ON (xl prints no CPU for it), pinned all the same.
        assert [(v[2], v[3], v[6]) for v in vcpus] == [("0", "1", "1"), ("1", "-", "2")]
    finally:
        run("xenpy", "shutdown", env=env)


def test_a_key_left_by_a_domain_that_shut_down_is_stale(board):
    r = xl("create", CFG, 'on_poweroff="preserve"', 'extra="exit=1 beats=2"', env=board)
    assert r.returncode == 0, r.stderr
    try:
        assert wait_for(lambda: rows(xl("list", env=board).stdout)["ERIKA_Enterprise"][3]
                        .startswith("---s"), 60)
        domid = rows(xl("list", env=board).stdout)["ERIKA_Enterprise"][0]
        r = proc("write", "erika-xen/pin_state", "1", env=board)
        assert r.returncode == 1
        assert re.fullmatch(rf"xenpy proc: erika-xen/pin_state: /local/erika_task_evtchn = \d+ "
                            rf"is stale: domain {domid} shut down\n", r.stderr), r.stderr
    finally:
        xl("destroy", "ERIKA_Enterprise", env=board)
