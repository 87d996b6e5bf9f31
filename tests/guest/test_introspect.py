"""`xenpy evtchn|gnttab|vcpu` against a running gntcmd guest that dom0 drives."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.daemon import ROOT, TIMEOUT, run, wait_for, xl
from tests.guest.test_grant_protocol import CMD_STATS, CMD_STOP, Dom0Side, xs_read
from tests.guest.test_irq_guests import domid_of


def xenpy(*args: str, env) -> subprocess.CompletedProcess:
    return run("xenpy", *args, env=env)


def test_introspection_of_a_running_guest(board):
    env = board
    console = subprocess.Popen([sys.executable, "-m", "toolstack.xl", "create", "-c",
                                "examples/gntcmd/gntcmd.cfg", 'name="intro"'], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: domid_of("intro", env) is not None, 30)
        domid = domid_of("intro", env)
        assert wait_for(lambda: xs_read(env, f"/local/domain/{domid}/data/cmd-port"), 30)
        cmd_port = int(xs_read(env, f"/local/domain/{domid}/data/cmd-port"))

        # Before dom0 binds: the command port is offered to dom 0; the store and console
        # channels are interdomain with dom0.
        r = xenpy("evtchn", "list", "intro", "--json", env=env)
        assert r.returncode == 0, r.stderr
        ports = {p["port"]: p for p in json.loads(r.stdout)}
        assert ports[cmd_port]["type"] == "unbound" and ports[cmd_port]["remote_domid"] == 0
        assert sum(p["type"] == "interdomain" and p["remote_domid"] == 0
                   for p in ports.values()) >= 1
        r = xenpy("gnttab", "list", "intro", env=env)
        assert re.search(r"^\s+2  0x0001 permit_access\s+0\s+0x8[0-9a-f]{4}  -$", r.stdout, re.M), r.stdout
        assert re.search(r"^\s+3  0x0005 permit_access\|readonly\s+0\s+0x8[0-9a-f]{4}  -$", r.stdout, re.M)

        d0 = Dom0Side(env, domid)
        try:
            r = xenpy("evtchn", "list", "intro", env=env)
            row = next(l for l in r.stdout.splitlines()[1:] if l.split()[2] == str(cmd_port))
            assert re.fullmatch(rf"intro\s+{domid}\s+{cmd_port}  interdomain\s+dom 0 port "
                                rf"{d0.port}\s+0  no\s+no", row), row
            entries = {e["ref"]: e for e in json.loads(
                xenpy("gnttab", "list", "intro", "--json", env=env).stdout)}
            assert [m["domid"] for m in entries[2]["mapped_by"]] == [0]
            assert entries[2]["flags"] & 0x18          # reading|writing while dom0 maps it
            assert "dom 0" in xenpy("gnttab", "list", "intro", env=env).stdout

            # An injected event is an upcall the guest counts, like a notification of dom0's.
            before = d0.call(CMD_STATS)[2]
            n0 = int(re.search(rb"notifications (\d+)", before).group(1))
            r = xenpy("evtchn", "inject", "intro", str(cmd_port), env=env)
            assert r.returncode == 0, r.stderr
            after = d0.call(CMD_STATS)[2]
            assert int(re.search(rb"notifications (\d+)", after).group(1)) == n0 + 2, (before, after)

            # The vCPU's registers: where it is, in which mode, with its MMU on.
            r = xenpy("vcpu", "dump", "intro", "0", env=env)
            assert r.returncode == 0, r.stderr
            assert re.match(rf"intro \({domid}\) vCPU 0: online(, blocked)?, mode (SVC|IRQ)$",
                            r.stdout.splitlines()[0]), r.stdout
            pc = int(re.search(r"PC=0x([0-9a-f]{8})", r.stdout).group(1), 16)
            assert 0x80008000 <= pc < 0x80400000
            assert re.search(r"SCTLR\s*=0x[0-9a-f]*[13579bdf]\b", r.stdout)   # M bit: MMU on
            dump = json.loads(xenpy("vcpu", "dump", "intro", "--json", env=env).stdout)
            assert len(dump) == 1 and dump[0]["ctxt"]["sctlr"] & 1
            regs = dump[0]["ctxt"]["user_regs"]
            assert {"r0_usr", "sp_svc", "lr_irq", "spsr_irq", "r8_fiq", "pc32", "cpsr"} <= set(regs)
            assert 0x80008000 <= regs["sp_svc"] < 0x80400000

            assert d0.call(CMD_STOP)[:2] == (0, 0)
            d0.unmap()
            d0.evt.notify(d0.port)
        finally:
            d0.close()
        out, _ = console.communicate(timeout=TIMEOUT)
        assert out.splitlines()[-1] == "Test result: SUCCESS", out
    finally:
        console.kill()


def test_introspection_errors(board):
    env = board
    r = xenpy("evtchn", "list", "nosuch", env=env)
    assert r.returncode == 1 and r.stderr.strip() == "nosuch is an invalid domain identifier (rc=-6)"
    r = xenpy("evtchn", "inject", "Domain-0", "999", env=env)
    assert r.returncode == 1 and r.stderr.strip() == "xenpy evtchn inject: domain 0 has no port 999 in use"
    r = xenpy("vcpu", "dump", "Domain-0", "7", env=env)
    assert r.returncode == 1 and "vCPU 7: no such vCPU" in r.stderr, r.stderr
    r = xenpy("evtchn", "inject", "Domain-0", "x", env=env)
    assert r.returncode == 2 and "invalid int value" in r.stderr and "Traceback" not in r.stderr
    for group, cmd in (("evtchn", "list"), ("evtchn", "inject"), ("gnttab", "list"),
                       ("vcpu", "dump")):
        r = xenpy(group, cmd, "--help", env=env)
        assert r.returncode == 0 and f"usage: xenpy {group} {cmd}" in r.stdout, r.stdout
