"""privcmd is dom0's door into the hypervisor, and dom0 userspace is buggy like any other: a
request that is not a request gets EINVAL on the same connection, which lives on; no request can
kill or park a server thread; descriptors a client passes are closed."""
from __future__ import annotations

import json
import math
import os
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenpy.board.privcmd import Privcmd
from xenpy.common.hypervisor import Hypervisor, HypervisorConfig
from xenpy.public import errno
from xenpy.public.sched import SCHEDOP_remote_shutdown

OPS = ["domctl", "sysctl", "memory_op", "sched_op", "xen_version", "mmap_foreign",
       "console_read", "console_write", "gntdev", "evtchn", "gnttab_seed", "event_channel_op",
       "devmem", "hvm_op"]


class Rig:
    def __init__(self, path) -> None:
        self.hv = Hypervisor(HypervisorConfig(nr_pcpus=1), sink=None)
        self.hv.start()
        self.shutdowns: list[int] = []
        self.pc = Privcmd(self.hv, on_host_shutdown=self.shutdowns.append)
        self.pc.serve(path)
        self.path = path

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(str(self.path))
        return s

    def close(self) -> None:
        self.pc.close()
        self.hv.shutdown()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("privcmd") / "privcmd")
    yield r
    r.close()


def frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def reply(s: socket.socket) -> dict:
    head = b""
    while len(head) < 4:
        more = s.recv(4 - len(head))
        assert more, "the board closed the connection"
        head += more
    (n,) = struct.unpack("<I", head)
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return json.loads(body)


def still_serves(s: socket.socket) -> None:
    s.sendall(frame(json.dumps({"op": "xen_version"}).encode()))
    r = reply(s)
    assert r["ret"] == 0 and r["out"]["major"] == 4


@pytest.mark.parametrize("body", [
    b"[1, 2, 3]", b"42", b'"domctl"', b"null", b"not json at all", b"\xff\xfe",
    b"[" * 100_000 + b"]" * 100_000,                          # nesting deeper than recursion
    json.dumps({"op": "no-such-request"}).encode(),
    json.dumps({"op": ["domctl"]}).encode(),
    json.dumps({"op": "domctl", "cmd": "createdomain", "domain": {}}).encode(),
    json.dumps({"op": "domctl", "cmd": 1, "domain": 0, "u": [1, 2]}).encode(),
    json.dumps({"op": "sched_op", "cmd": SCHEDOP_remote_shutdown, "domain_id": "x"}).encode(),
    json.dumps({"op": "evtchn", "cmd": "pending", "timeout": -1}).encode(),
    b'{"op": "evtchn", "cmd": "pending", "timeout": NaN}',
    b'{"op": "evtchn", "cmd": "pending", "timeout": Infinity}',
    b'{"op": "console_read", "domid": 0, "timeout": NaN}',
    b'{"op": "console_read", "domid": 0, "timeout": -5}',
    json.dumps({"op": "console_write", "domid": 0, "data": 17}).encode(),
    json.dumps({"op": "devmem", "addr": "zero"}).encode(),
], ids=lambda b: b[:30].decode("latin-1"))
def test_a_malformed_request_gets_einval_and_the_connection_lives_on(rig, body):
    with rig.connect() as s:
        s.sendall(frame(body))
        ret = reply(s)["ret"]
        # Domctls check the interface version first, as Xen does (EACCES when it is missing).
        assert ret == -errno.EINVAL or (b'"domctl"' in body and ret == -errno.EACCES)
        still_serves(s)


def test_a_frame_larger_than_privcmd_takes_is_refused_in_step(rig):
    with rig.connect() as s:
        s.sendall(frame(b" " * (2 << 20)))
        assert reply(s)["ret"] == -errno.EINVAL
        still_serves(s)


def test_descriptors_passed_by_a_client_are_closed(rig):
    before = len(os.listdir("/proc/self/fd"))
    r, w = os.pipe()
    try:
        with rig.connect() as s:
            for _ in range(20):
                socket.send_fds(s, [frame(json.dumps({"op": "xen_version"}).encode())], [r, w])
                assert reply(s)["ret"] == 0
    finally:
        os.close(r)
        os.close(w)
    # The board shares this process: had it kept them, 40 more descriptors would be open.
    assert len(os.listdir("/proc/self/fd")) <= before + 1


def test_remote_shutdown_of_domain_0_stops_the_machine_as_xen_does(tmp_path):
    lines: list[str] = []
    hv = Hypervisor(HypervisorConfig(nr_pcpus=1), sink=lines.append)
    hv.start()
    stopped: list[int] = []
    pc = Privcmd(hv, on_host_shutdown=stopped.append)
    try:
        r, _ = pc.call({"op": "sched_op", "cmd": SCHEDOP_remote_shutdown, "domain_id": 0,
                        "reason": 3})
        assert r["ret"] == 0 and stopped == [3]
        assert "(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds." in lines
        assert not hv.domains[0].is_shutdown     # not a domain left half-stopped
    finally:
        hv.shutdown()


# -- fuzzing: any JSON, any fields, any types --------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats() |
    st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
fields = st.sampled_from(["cmd", "domain", "domid", "u", "port", "ref", "index",
                          "reason", "domain_id", "offset", "data", "addr", "size", "remote_domid",
                          "virq", "nr_extents", "extent_start", "gpfns", "value", "writable",
                          "interface_version", "max_vcpus"])
# Timeouts: every kind of bad one, and short good ones (a valid wait is the request's right).
timeouts = st.sampled_from([0, 0.001, -1, math.nan, math.inf, -math.inf, "1", None, [], True])
requests = st.builds(lambda op, kv, t: {"op": op, **kv, **t},
                     st.sampled_from(OPS) | st.text(max_size=6),
                     st.dictionaries(fields, json_values | st.integers(-3, 70), max_size=6),
                     st.dictionaries(st.just("timeout"), timeouts))


@settings(max_examples=int(os.environ.get("XENPY_FUZZ_EXAMPLES", 100)), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(requests | json_values, min_size=1, max_size=5))
def test_fuzz_privcmd_every_request_is_answered_and_the_connection_survives(rig, reqs):
    with rig.connect() as s:
        for req in reqs:
            s.sendall(frame(json.dumps(req, allow_nan=True).encode()))
            r = reply(s)
            assert isinstance(r["ret"], int)
            if not isinstance(req, dict) or req.get("op") not in OPS:
                assert r["ret"] == -errno.EINVAL
        still_serves(s)
    assert all(t.is_alive() for t in threading.enumerate() if t.name == "privcmd")
