"""Our xenstore-* tools against Debian's xenstore-utils (Xen's C clients) on the same store: the
board's xenstored, reached by both through XENSTORED_PATH. Each case runs both programs from
the same store contents and compares exit status, stdout and stderr byte for byte.

Debian ships Xen 4.17's clients; where Xen's current sources (our specification) changed a
message since then, the case is left out here and checked against the source instead
(test_xenstore_cli.py): usage lines lost their `[-s]`, and `list -p /` no longer prints `//`.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.daemon import ROOT, booted, env_for

DEBIAN = "/usr/bin/xenstore"
OURS = [sys.executable, "-c", "import sys; from toolstack.xenstore_cli import dispatch; "
        "sys.exit(dispatch(sys.argv[1:]))"]

pytestmark = pytest.mark.skipif(not os.path.exists(DEBIAN + "-read"),
                                reason="Debian's xenstore-utils are not installed")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    yield from booted(env_for(tmp_path_factory), "--pcpus", "1")


@pytest.fixture(scope="module")
def xsenv(board):
    env = {**board, "XENSTORED_PATH": os.path.join(board["XENPY_RUNDIR"], "xenstored", "socket"),
           "PYTHONPATH": str(ROOT)}
    return env


def _run(argv, env, ours: bool):
    cmd = OURS + argv if ours else argv
    r = subprocess.run(cmd, env=env, capture_output=True, timeout=30, cwd=ROOT)
    return r.returncode, r.stdout, r.stderr


def _reset(env) -> None:
    """/deb: a (a tab, a backslash), b (bytes below 0x20), c/d (long), e (empty); c is n0 r1."""
    from toolstack.xs import XsClient, XsError
    with XsClient(env["XENSTORED_PATH"]) as xs:
        try:
            xs.rm("/deb")
        except XsError:
            pass
        for key, value in (("a", b"tab\there\\"), ("b", b"\x01\x02"), ("c/d", b"x" * 90),
                           ("e", b"")):
            xs.write(f"/deb/{key}", value)
        xs.set_perms("/deb/c", ["n0", "r1"])


def _ls(env) -> bytes:
    return subprocess.run([DEBIAN + "-ls", "-p", "/deb"], env=env, capture_output=True).stdout


CASES = [
    ["xenstore-read", "/deb/a", "/deb/b"], ["xenstore-read", "-p", "/deb/a"],
    ["xenstore-read", "-R", "/deb/b"], ["xenstore-read", "/nope"],
    ["xenstore-read", "/deb/a", "/nope"],
    ["xenstore-ls", "/deb"], ["xenstore-ls", "-f", "/deb"], ["xenstore-ls", "-p", "/deb"],
    ["xenstore-ls", "/nope"],
    ["xenstore-list", "/deb"], ["xenstore-list", "-p", "/deb", "/deb/c"],
    ["xenstore-list", "/nope"], ["xenstore-list", "-x", "/deb"],
    ["xenstore-exists", "/deb/a"], ["xenstore-exists", "/nope"],
    ["xenstore-write", "/deb/new", "v\\n", "/deb/a", "\\x41"], ["xenstore-write", "-R", "/deb/r", "\\n"],
    ["xenstore-write", "/deb//bad", "x"],
    ["xenstore-rm", "/deb/b"], ["xenstore-rm", "-t", "/deb/c/d"], ["xenstore-rm", "/nope/x"],
    ["xenstore-chmod", "/deb/a", "n0", "r1"], ["xenstore-chmod", "-r", "/deb", "b0"],
    ["xenstore-chmod", "/deb/a", "z1"], ["xenstore-chmod", "/nope", "n0"],
    ["xenstore-watch", "-n", "1", "/deb"],
    ["xenstore", "read", "/deb/a"], ["xenstore", "ls", "/deb/c"], ["xenstore", "read", "-x", "/deb/a"],
    ["xenstore", "frob"], ["xenstore"], ["xenstore-frob", "x"],
]


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c) for c in CASES])
def test_same_output_as_debian(xsenv, tmp_path, case):
    name, *args = case
    path = DEBIAN + name[len("xenstore"):]
    if not os.path.exists(path):          # a mode Xen has no binary for: a link to the single one
        path = str(tmp_path / name)
        os.symlink(DEBIAN, path)
    _reset(xsenv)
    theirs = _run([path, *args], xsenv, ours=False)
    after_theirs = _ls(xsenv)
    _reset(xsenv)
    mine = _run([path, *args], xsenv, ours=True)
    assert mine == theirs
    assert _ls(xsenv) == after_theirs        # the same change to the store


def test_xs_open_failure_is_the_same(xsenv):
    env = {**xsenv, "XENSTORED_PATH": "/nonexistent/socket"}
    argv = [DEBIAN + "-read", "/a"]
    theirs = _run(argv, env, ours=False)
    assert theirs == (1, b"", b"xenstore-read: xs_open: No such file or directory\n")
    assert _run(argv, env, ours=True) == theirs
