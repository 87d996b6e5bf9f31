"""xenstore-* commands and the raw socket protocol against an in-process xenstored."""
from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from toolstack import xenstore_cli as cli
from toolstack.xs import XsClient, XsError
from xenpy.public.io.xs_wire import XsType, pack_msg
from xenpy.rundir import xenstored_path
from xenpy.xenstore import XenStored

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rundir(monkeypatch):
    # A short directory: Unix socket paths are limited to ~108 bytes.
    d = Path(tempfile.mkdtemp(prefix="xs-"))
    monkeypatch.setenv("XENPY_RUNDIR", str(d))
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def xenstored(rundir):
    logs: list[str] = []
    xs = XenStored(rundir / "xenstore.json", log=logs.append)
    xs.serve_socket(xenstored_path())
    xs.logs = logs
    yield xs
    xs.close()


def run(capsys, fn, *args: str) -> tuple[int, str, str]:
    code = fn(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_write_then_read_with_escapes(xenstored, capsys):
    assert run(capsys, cli.main_write, "/vm/a", "tab\\there", "/vm/b", "\\x01\\002\\\\end\\") == (0, "", "")
    with XsClient() as xs:
        assert xs.read("/vm/a") == b"tab\there"
        assert xs.read("/vm/b") == b"\x01\x02\\end\x00"
    assert run(capsys, cli.main_read, "/vm/a", "/vm/b") == (0, "tab\\there\n\\001\\002\\\\end\\000\n", "")
    assert run(capsys, cli.main_read, "-p", "/vm/a") == (0, "/vm/a: tab\\there\n", "")
    assert run(capsys, cli.main_write, "-R", "/vm/c", "\\n") == (0, "", "")
    assert run(capsys, cli.main_read, "-R", "/vm/c") == (0, "\\n", "")


def test_read_failure_message_and_exit_code(xenstored, capsys):
    run(capsys, cli.main_write, "/a", "1")
    code, out, err = run(capsys, cli.main_read, "/a", "/nope")
    assert (code, out, err) == (1, "1\n", "xenstore-read: couldn't read path /nope\n")
    code, out, err = run(capsys, cli.main_write, "/a/b", "1", "/bad//path", "x")
    assert code == 1 and err == "xenstore-write: could not write path /bad//path\n"
    with XsClient() as xs:  # the failed multi-key write ran in one transaction: nothing applied
        with pytest.raises(XsError):
            xs.read("/a/b")


def test_ls_tree_truncation_flat_and_perms(xenstored, capsys):
    run(capsys, cli.main_write, "/local/domain/1/name", "guest", "/local/domain/1/long", "x" * 100)
    code, out, err = run(capsys, cli.main_ls, "/local")
    assert code == 0 and err == ""
    assert out.splitlines() == [
        'domain = ""',
        ' 1 = ""',
        '  name = "guest"',
        '  long = "' + "x" * 66 + '\\..."',  # cut for 80 columns (not a terminal), as the C tool cuts
    ]
    code, out, _ = run(capsys, cli.main_ls, "-f", "/local/domain")
    assert out.splitlines() == ['/local/domain/1 = ""', '/local/domain/1/name = "guest"',
                                '/local/domain/1/long = "' + "x" * 100 + '"']
    run(capsys, cli.main_chmod, "/local/domain/1", "n0", "r1")
    code, out, _ = run(capsys, cli.main_ls, "-p", "/local/domain")
    assert out.splitlines()[:2] == [
        # dots on odd columns up to column 60, then the permissions
        '1 = "" ' + '. ' * 26 + '.  (n0,r1)',
        ' name = "guest" ' + ' .' * 22 + '  (n0)',
    ]
    assert run(capsys, cli.main_ls, "/nope") == (1, "", "xenstore-ls: xs_directory (/nope): No such file or directory\n")
    code, out, _ = run(capsys, cli.main_ls)
    assert out.startswith('tool = ""\n xenstored = ""\nlocal = ""\n')


def test_list_rm_exists(xenstored, capsys):
    run(capsys, cli.main_write, "/d/a/x", "", "/d/b", "")
    assert run(capsys, cli.main_list, "/d") == (0, "a\nb\n", "")
    assert run(capsys, cli.main_list, "-p", "/d", "/") == (0, "/d/a\n/d/b\n/tool\n/d\n", "")
    assert run(capsys, cli.main_list, "/nope")[2] == "xenstore-list: could not list path /nope\n"
    assert run(capsys, cli.main_exists, "/d/a")[0] == 0
    assert run(capsys, cli.main_exists, "/d/zz") == (1, "", "")
    assert run(capsys, cli.main_rm, "-t", "/d/a/x") == (0, "", "")  # empty /d/a goes too, /d keeps b
    assert run(capsys, cli.main_exists, "/d/a")[0] == 1
    assert run(capsys, cli.main_exists, "/d/b")[0] == 0
    assert run(capsys, cli.main_rm, "/d/a/gone") == (1, "", "xenstore-rm: could not remove path /d/a/gone\n")
    assert run(capsys, cli.main_rm, "/d") == (0, "", "")


def test_chmod_recursive_and_upwards(xenstored, capsys):
    run(capsys, cli.main_write, "/local/domain/1/a/b", "v")
    assert run(capsys, cli.main_chmod, "-r", "/local", "b") == (0, "", "")
    with XsClient() as xs:
        assert [xs.get_perms(p) for p in ("/local", "/local/domain/1/a/b")] == [["b0"], ["b0"]]
        assert xs.get_perms("/") == ["n0"]
    assert run(capsys, cli.main_chmod, "-u", "/local/domain/1", "n0", "r1") == (0, "", "")
    with XsClient() as xs:
        assert xs.get_perms("/local") == ["n0", "r1"] and xs.get_perms("/local/domain/1/a") == ["b0"]
    assert run(capsys, cli.main_chmod, "/local", "n0", "z1") == (
        1, "", "xenstore-chmod: Invalid permission specification: 'z'\n")
    code, _, err = run(capsys, cli.main_chmod, "/nope", "n0")
    assert code == 1 and err == "xenstore-chmod: Error occurred setting permissions on '/nope': No such file or directory\n"


def test_watch_prints_events(xenstored, capsys):
    def writer():
        with XsClient() as xs:
            time.sleep(0.2)
            xs.write("/w/a/b", "1")
            xs.write("/w/a/b/c", "1")  # 3 levels down: not reported with -d 2
            xs.write("/w/x", "1")

    t = threading.Thread(target=writer)
    t.start()
    watchdog = threading.Timer(10, xenstored.close)  # never hang the test run
    watchdog.start()
    code, out, err = run(capsys, cli.main_watch, "-n", "3", "-d", "2", "/w")
    watchdog.cancel()
    t.join()
    assert (code, out, err) == (0, "/w\n/w/a/b\n/w/x\n", "")


def test_watch_exits_on_lost_connection(xenstored, capsys):
    threading.Timer(0.2, xenstored.close).start()
    code, out, err = run(capsys, cli.main_watch, "/w")
    assert code == 1 and out == "/w\n" and "lost connection to xenstored" in err


def test_two_closes_at_once_stop_the_server_once(xenstored, monkeypatch):
    """The watch test's timer closes xenstored while the fixture's teardown does: the second
    close waits for the first and finds nothing to stop (it closed the acceptor's spare
    descriptor a second time: EBADF)."""
    from xenpy.xenstore.server import SocketServer
    real_stop, stops = SocketServer.stop, []

    def slow_stop(self):
        stops.append(self)
        time.sleep(0.2)                  # the other close arrives while this one stops
        real_stop(self)

    monkeypatch.setattr(SocketServer, "stop", slow_stop)
    errors = []

    def close():
        try:
            xenstored.close()
        except Exception as e:  # noqa: BLE001 - the failure under test
            errors.append(e)

    threads = [threading.Thread(target=close) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and len(stops) == 1, (errors, stops)


def test_multi_key_transaction_retries_on_eagain(xenstored, capsys, monkeypatch):
    run(capsys, cli.main_write, "/t/a", "old", "/t/b", "b")
    real_end = XsClient.transaction_end
    meddled = []

    def end_after_conflict(self, tx, abort=False):
        if not meddled:  # someone else changes /t/a while the command's transaction is open
            meddled.append(1)
            with XsClient() as other:
                other.write("/t/a", "new")
        return real_end(self, tx, abort)

    monkeypatch.setattr(XsClient, "transaction_end", end_after_conflict)
    assert run(capsys, cli.main_read, "/t/a", "/t/b") == (0, "new\nb\n", "")
    assert meddled


def test_usage_modes_and_options(xenstored, capsys):
    assert run(capsys, cli.main, "read") == (1, "", "xenstore: Usage: xenstore read [-h] [-p] [-R] key [...]\n")
    assert run(capsys, cli.main_read, "-h") == (0, "", "xenstore-read: Usage: xenstore-read [-h] [-p] [-R] key [...]\n")
    # errx(1, "unknown mode %s\n", m): errx's own newline leaves a blank line
    assert run(capsys, cli.main, "frob") == (1, "", "xenstore: unknown mode frob\n\n")
    assert run(capsys, cli.main) == (1, "", "xenstore: Usage: xenstore <mode> [-h] [...]\n")
    assert run(capsys, cli.main_write, "/a")[0] == 1  # a key without a value
    assert run(capsys, cli.main_rm, "-p", "/a") == (1, "", "xenstore-rm: Usage: xenstore-rm [-h] [-t] key [...]\n")
    code, out, err = run(capsys, cli.main, "write", "/m/k", "v", "--", "/m/j", "-v")
    assert code == 0 and err == ""
    assert run(capsys, cli.main, "read", "/m/k", "/m/j") == (0, "v\n-v\n", "")
    code, out, err = run(capsys, cli.main_read, "-x", "/m/k")
    assert (code, out) == (0, "v\n") and err == "xenstore-read: invalid option -- 'x'\n"
    assert run(capsys, cli.main_ls, "--flat", "/m")[1] == '/m/k = "v"\n/m/j = "-v"\n'


def test_no_xenstored_is_one_clear_line(rundir, capsys):
    code, out, err = run(capsys, cli.main_read, "/a")
    assert code == 1 and out == ""
    assert err == "xenstore-read: xs_open: No such file or directory\n"   # err(1, "xs_open")


def test_restarted_xenstored_keeps_the_store(xenstored, rundir, capsys):
    run(capsys, cli.main_write, "/keep", "me")
    xenstored.close()
    xs2 = XenStored(rundir / "xenstore.json")
    xs2.serve_socket(xenstored_path())
    try:
        assert run(capsys, cli.main_read, "/keep") == (0, "me\n", "")
    finally:
        xs2.close()


def test_as_a_program(xenstored, rundir):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "toolstack.xenstore_cli", "write", "/p", "v\\n"], env=env, check=True)
    res = subprocess.run([sys.executable, "-m", "toolstack.xenstore_cli", "ls", "/"], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.endswith('p = "v\\n"\n')


# -- the wire protocol, byte by byte --------------------------------------------------
def _connect() -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(xenstored_path()))
    s.settimeout(5)
    return s


def _recv_msg(s: socket.socket) -> tuple[int, int, int, bytes]:
    hdr = b""
    while len(hdr) < 16:
        hdr += s.recv(16 - len(hdr))
    t, req_id, tx, length = struct.unpack("<IIII", hdr)
    body = b""
    while len(body) < length:
        body += s.recv(length - len(body))
    return t, req_id, tx, body


def test_raw_messages(xenstored):
    s = _connect()
    s.sendall(pack_msg(XsType.WRITE, 0xABCD, 0, b"/raw\0value"))
    assert _recv_msg(s) == (XsType.WRITE, 0xABCD, 0, b"OK\0")
    s.sendall(pack_msg(XsType.READ, 2, 0, b"/raw\0"))
    assert _recv_msg(s) == (XsType.READ, 2, 0, b"value")
    s.sendall(pack_msg(XsType.READ, 3, 77, b"/raw\0"))
    assert _recv_msg(s) == (XsType.ERROR, 3, 77, b"ENOENT\0")  # no transaction 77
    s.sendall(pack_msg(1234, 4, 0, b"whatever"))
    assert _recv_msg(s) == (XsType.ERROR, 4, 0, b"ENOSYS\0")
    s.sendall(pack_msg(XsType.WATCH, 5, 0, b"/raw\0tok\0"))
    assert _recv_msg(s) == (XsType.WATCH, 5, 0, b"OK\0")
    assert _recv_msg(s) == (XsType.WATCH_EVENT, 0, 0, b"/raw\0tok\0")
    # A request split into single bytes is still one request.
    for b in pack_msg(XsType.GET_DOMAIN_PATH, 6, 0, b"3\0"):
        s.sendall(bytes([b]))
    assert _recv_msg(s) == (XsType.GET_DOMAIN_PATH, 6, 0, b"/local/domain/3\0")
    s.close()


def test_an_overlong_message_kills_only_its_connection(xenstored):
    good, bad = _connect(), _connect()
    bad.sendall(struct.pack("<IIII", XsType.READ, 1, 0, 4097) + b"x" * 64)
    assert bad.recv(100) == b""  # closed by xenstored
    good.sendall(pack_msg(XsType.GET_DOMAIN_PATH, 1, 0, b"0\0"))
    assert _recv_msg(good) == (XsType.GET_DOMAIN_PATH, 1, 0, b"/local/domain/0\0")
    assert any("4097" in line for line in xenstored.logs)
    garbage = _connect()
    garbage.sendall(os.urandom(15))  # not even a header: just waits for more
    good.sendall(pack_msg(XsType.READ, 2, 0, b"/tool/xenstored\0"))
    assert _recv_msg(good) == (XsType.READ, 2, 0, b"")
    for s in (good, bad, garbage):
        s.close()


def test_concurrent_transactions_lose_no_update(xenstored):
    """Clients racing read-modify-write transactions: EAGAIN and retry keep every increment."""
    with XsClient() as xs:
        xs.write("/counter", "0")

    def bump(n: int) -> None:
        with XsClient() as xs:
            for _ in range(n):
                xs.transact(lambda tx: xs.write("/counter", str(int(xs.read("/counter", tx)) + 1), tx))

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with XsClient() as xs:
        assert xs.read("/counter") == b"100"


# -- xenstore-control (xenstore_control.c) and xenstored's control commands -----------------
def test_control_log_logfile_memreport(xenstored, rundir, capsys):
    # do_control_log: "Log switch settings:\n" then "%-8s: %s\n" per switch
    assert run(capsys, cli.main_control, "log") == (0, (
        "Log switch settings:\nobj     : on\nio      : on\nwrl     : off\nacc     : off\n"
        "tdb     : off\n\n"), "")
    trace = rundir / "trace.log"
    # send_ack: the reply is "OK", which xenstore-control prints ("%s\n")
    assert run(capsys, cli.main_control, "logfile", str(trace)) == (0, "OK\n", "")
    run(capsys, cli.main_write, "/traced", "yes")
    text = trace.read_text()
    # trace_io: "io: %s %p (d%u) %04d%02d%02d %02d:%02d:%02d %s (" payload ")\n"
    assert re.search(r"^io: IN 0x[0-9a-f]+ \(d0\) \d{8} \d\d:\d\d:\d\d WRITE \(/traced yes\)$",
                     text, re.M), text
    assert re.search(r"^io: OUT 0x[0-9a-f]+ \(d0\) \d{8} \d\d:\d\d:\d\d WRITE \(OK \)$", text, re.M)
    assert run(capsys, cli.main_control, "log", "-io") == (0, "OK\n", "")
    assert "io      : off" in run(capsys, cli.main_control, "log")[1]
    size = trace.stat().st_size
    run(capsys, cli.main_write, "/quiet", "1")
    assert trace.stat().st_size == size                 # io tracing switched off
    assert run(capsys, cli.main_control, "log", "off") == (0, "OK\n", "")
    report = rundir / "mem.txt"
    assert run(capsys, cli.main_control, "memreport", str(report)) == (0, "OK\n", "")
    assert "nodes" in report.read_text() and "domain 0" in report.read_text()
    assert run(capsys, cli.main_control, "memreport") == (0, "OK\n", "")   # into the trace file
    assert "full talloc report" in trace.read_text()


def test_control_unknown_command_usage_and_live_update(xenstored, rundir, capsys):
    code, out, err = run(capsys, cli.main_control, "frob")
    # "Command not supported. Valid commands are:\n%s\n" with xenstored's help
    assert code == 3 and err.startswith("Command not supported. Valid commands are:\n")
    assert "logfile         <file>\n" in err and "memreport       [<file>]\n" in err
    assert "live-update" not in err                     # a xenstored built without it
    # "Usage:\n%s <command> [<arg>...]\n", rc 2
    assert run(capsys, cli.main_control) == (2, "", "Usage:\nxenstore-control <command> [<arg>...]\n")
    # live_update_daemon: "Setting update binary failed:\n%s\n" (xenstored: EINVAL), rc 3
    assert run(capsys, cli.main_control, "live-update", "/bin/xenstored") == (
        3, "", "Setting update binary failed:\nInvalid argument\n")
    assert run(capsys, cli.main_control, "live-update", "-t") == (2, "", "Missing timeout value\n")
    assert run(capsys, cli.main_control, "live-update") == (2, "", "Missing binary specification\n")


def test_control_without_xenstored(rundir, capsys):
    assert run(capsys, cli.main_control, "log") == (1, "", "Failed to contact Xenstored.\n")
