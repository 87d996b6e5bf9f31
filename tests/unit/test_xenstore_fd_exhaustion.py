"""A board out of file descriptors (about nine a domain: the usual limit of 1024 is reached near a
hundred domains) must not leave clients waiting forever nor spin: xenstored's socket refused the
client by failing accept() over and over, its loop at 100% CPU and `xl list` hung. Now the client
is accepted and closed at once (a spare descriptor is given up for it), so it gets an error, and
once descriptors are free again connections are served."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.daemon import ROOT

SCRIPT = textwrap.dedent(r'''
    import os, resource, sys, time
    from toolstack.xs import XsClient, XsError
    from xenpy.xenstore import XenStored

    logs = []
    xs = XenStored(None, log=logs.append)
    path = sys.argv[1]
    xs.serve_socket(path)
    first = XsClient(path)
    first.write("/a", "1")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
    hog = []
    try:
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    os.close(hog.pop())                  # room for the client's socket, none for xenstored's
    try:
        XsClient(path).read("/a")
        print("served without a descriptor?")
    except XsError as e:
        print("refused:", e.errno_name)
    c0 = time.process_time()
    time.sleep(1)
    print("cpu while refusing:", round(time.process_time() - c0, 2))
    for fd in hog:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print("after:", XsClient(path).read("/a"), first.read("/a"))
    print("logged:", [m.split(":")[1].strip()[:23] for m in logs])
''')


def test_a_client_is_refused_not_left_waiting_when_descriptors_run_out(tmp_path):
    try:
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "socket")], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"a client waited forever for xenstored: {e.stdout}") from None
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines[0] == "refused: EIO"
    assert float(lines[1].split(":")[1]) < 0.5, "xenstored's loop spins while out of descriptors"
    assert lines[2] == "after: b'1' b'1'"
    assert lines[3] == "logged: ['out of file descriptors', 'file descriptors availa']"
