"""The XenBus guest against a board daemon: its store ring, a watch that dom0's xenstore-write
fires, a transaction that dom0 makes conflict (EAGAIN, then a retry that commits), and writes
outside its home refused (EACCES) until `xenstore-chmod -r /local b`, as the ERIKA port's setup
does."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import ROOT, TIMEOUT, run, wait_for, xl
from tests.guest.test_irq_guests import domid_of
from toolstack.xs import XsClient, XsError

CFG = ROOT / "examples/xenbus/xenbus.cfg"


def xs_client(env: dict[str, str]) -> XsClient:
    return XsClient(Path(env["XENPY_RUNDIR"]) / "xenstored" / "socket")


def xenstore(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run("toolstack.xenstore_cli", *args, env=env)


def read_or_none(xs: XsClient, path: str) -> bytes | None:
    try:
        return xs.read(path)
    except XsError:
        return None


def start(env: dict[str, str], *variables: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toolstack.xl", "create", "-c", str(CFG),
                             *variables], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_watch_conflicting_transaction_and_eacces_outside_home(board):
    # Kept after power-off, so its nodes can be read once it is done.
    proc = start(board, 'extra="outside=eacces"', 'on_poweroff="preserve"')
    try:
        assert wait_for(lambda: domid_of("xenbus", board) is not None, 30)
        domid = domid_of("xenbus", board)
        home = f"/local/domain/{domid}"
        with xs_client(board) as xs:
            # The guest says when its watch is set; dom0 then writes the key with the real tool.
            assert wait_for(lambda: read_or_none(xs, f"{home}/data/ready") == b"watch", 30)
            r = xenstore(board, "write", f"{home}/data/from-dom0", "hello guest")
            assert r.returncode == 0, r.stderr
            # The guest has read the counter inside its transaction: change it under it.
            assert wait_for(lambda: read_or_none(xs, f"{home}/data/tx-state") == b"in-transaction",
                            30)
            assert xs.read(f"{home}/data/counter") == b"1"
            assert xenstore(board, "write", f"{home}/data/counter", "100").returncode == 0
        out, err = proc.communicate(timeout=TIMEOUT)
        with xs_client(board) as xs:
            assert xs.read(f"{home}/data/tx-state") == b"done"
            assert xs.read(f"{home}/data/counter") == b"101"     # dom0's 100, then the retry's +1
            assert xs.read(f"{home}/data/greeting") == b"hello from a domU"
    finally:
        proc.kill()
        xl("destroy", "xenbus", env=board)
    lines = out.splitlines()
    assert lines[-1] == "Test result: SUCCESS", out + err
    assert f"xenbus: domain path {home}, domid {domid}" in lines
    entries = next(l for l in lines if l.startswith(f"xenbus: {home} has "))
    assert {"name", "domid", "store", "control", "data"} <= set(entries.split(":", 1)[1].split())
    assert 'xenbus: wrote and read back data/greeting = "hello from a domU" (17 bytes)' in lines
    assert any(re.fullmatch(r'xenbus: watch event (/local/domain/\d+/)?data/from-dom0: '
                            r'dom0 wrote "hello guest"', l) for l in lines), out
    assert any(re.fullmatch(r"xenbus: commit of transaction \d+: EAGAIN \(dom0 changed the "
                            r"counter\), retrying", l) for l in lines), out
    assert "xenbus: committed on attempt 2: counter 1 -> (dom0) -> 101" in lines
    assert f"xenbus: write /local/xenbus-test/{domid} refused: EACCES" in lines
    with xs_client(board) as xs:
        with pytest.raises(XsError) as e:
            xs.read(f"/local/xenbus-test/{domid}")
        assert e.value.errno_name == "ENOENT"


def test_without_dom0_writes_outside_home_are_refused(board):
    proc = start(board, 'extra="dom0=0 outside=eacces"')
    out, err = proc.communicate(timeout=TIMEOUT)
    lines = out.splitlines()
    assert lines[-1] == "Test result: SUCCESS", out + err
    assert any(re.fullmatch(r"xenbus: write /local/xenbus-test/\d+ refused: EACCES", l)
               for l in lines), out
    # Expecting success without the chmod is a guest-visible failure, with xenstored's error.
    proc = start(board, 'extra="dom0=0 outside=ok"')
    out, err = proc.communicate(timeout=TIMEOUT)
    assert out.splitlines()[-1] == "Test result: FAILURE (write outside home: EACCES (-13))", out


def test_after_chmod_r_local_b_the_guest_writes_outside_its_home(board):
    # Last in the module: it opens every node under /local to every domain.
    r = xenstore(board, "chmod", "-r", "/local", "b")
    assert r.returncode == 0, r.stderr
    proc = start(board, 'extra="dom0=0 outside=ok"', 'name="xenbus-ok"', 'on_poweroff="preserve"')
    out, err = proc.communicate(timeout=TIMEOUT)
    lines = out.splitlines()
    assert lines[-1] == "Test result: SUCCESS", out + err
    (domid,) = [int(m.group(1)) for l in lines
                if (m := re.fullmatch(r"xenbus: domain path /local/domain/(\d+), domid \d+", l))]
    assert (f'xenbus: wrote /local/xenbus-test/{domid} = "written by a domU" outside the home'
            in lines)
    # Owned by its writer, the default access inherited from its parent.
    with xs_client(board) as xs:
        assert xs.read(f"/local/xenbus-test/{domid}") == b"written by a domU"
        assert xs.get_perms(f"/local/xenbus-test/{domid}") == [f"b{domid}"]
        # xenstored removes what a dead domain owned, wherever it is (Xen since XSA-322).
        assert xl("destroy", "xenbus-ok", env=board).returncode == 0
        assert wait_for(lambda: read_or_none(xs, f"/local/xenbus-test/{domid}") is None, 10)
        assert read_or_none(xs, "/local/xenbus-test") is None    # the parent it created too


def test_xl_shutdown_and_reboot_reach_a_guest_watching_control_shutdown(board):
    for verb, letters in (("shutdown", "---s--"), ("reboot", "---sr-")):
        proc = start(board, 'extra="dom0=0 control=1"', 'on_poweroff="preserve"',
                     'on_reboot="preserve"', 'name="ctl"')
        try:
            assert wait_for(lambda: domid_of("ctl", board) is not None, 30)
            domid = domid_of("ctl", board)
            with xs_client(board) as xs:
                assert wait_for(lambda: read_or_none(
                    xs, f"/local/domain/{domid}/control/feature-poweroff") == b"1", 30)
            r = xl(verb, "-w", "ctl", env=board)
            assert r.returncode == 0, r.stderr
            out, _ = proc.communicate(timeout=30)
            expected = "poweroff" if verb == "shutdown" else "reboot"
            assert f"xenbus: control/shutdown = {expected}: shutting down" in out
            row = [l.split() for l in xl("list", env=board).stdout.splitlines() if l.startswith("ctl ")]
            assert row and row[0][4] == letters
        finally:
            proc.kill()
            xl("destroy", "ctl", env=board)
