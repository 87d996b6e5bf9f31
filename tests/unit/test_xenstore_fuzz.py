"""Fuzzing xenstored's wire protocol over its Unix socket: whatever a client sends, each whole
request is answered (or, for a broken frame, the connection is closed), and the store goes on
serving everyone else."""
from __future__ import annotations

import os
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolstack.xs import XsClient
from xenpy.public.io.xs_wire import XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG, XSD_SOCKMSG_SIZE, XsType
from xenpy.xenstore import XenStored

SENTINEL = "/local/domain/0/data/sentinel"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("xs") / "socket"
    xs = XenStored(None, log=lambda _line: None)
    xs.serve_socket(path)
    yield path
    xs.close()


segments = st.sampled_from(["local", "domain", "0", "1", "data", "vm", "tool", "@introduceDomain",
                            "@releaseDomain", "", ".", "..", "a" * 300, "é", "x\x01y"])
paths = st.lists(segments, max_size=5).map(lambda p: "/" + "/".join(p)) | st.text(max_size=40)
words = paths | st.sampled_from(["n0", "r1", "b5", "w0", "x", "-1", "0", "1", "4294967295", "F"])
payloads = (st.lists(words, max_size=4).map(lambda ws: "\0".join(ws).encode("utf-8", "replace"))
            .map(lambda b: b + b"\0" if b and b[0] != 0 else b)
            | st.binary(max_size=64))
requests = st.tuples(st.sampled_from(list(XsType)) | st.integers(0, 0xFFFF),
                     st.integers(0, 3) | st.integers(0, 0xFFFFFFFF), payloads)


def recv_exact(s: socket.socket, n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def replies(s: socket.socket, want: int) -> int | None:
    """Read replies (skipping watch events) until `want` came; None if the store closed us."""
    got = 0
    while got < want:
        head = recv_exact(s, XSD_SOCKMSG_SIZE)
        if head is None:
            return None
        type_, _req, _tx, length = XSD_SOCKMSG.unpack(head)
        assert length <= XENSTORE_PAYLOAD_MAX
        if recv_exact(s, length) is None:
            return None
        if type_ != XsType.WATCH_EVENT:
            got += 1
    return got


@settings(max_examples=int(os.environ.get("XENPY_FUZZ_EXAMPLES", 150)), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(requests, min_size=1, max_size=8), st.booleans())
def test_fuzz_xenstore_wire_every_request_is_answered_and_the_store_serves_on(store, reqs,
                                                                            broken_tail):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(store))
    with s:
        for i, (type_, tx, payload) in enumerate(reqs):
            s.sendall(XSD_SOCKMSG.pack(type_, i, tx, len(payload)) + payload)
        assert replies(s, len(reqs)) == len(reqs)
        if broken_tail:       # a frame longer than the protocol allows: the store hangs up
            s.sendall(struct.pack("<IIII", XsType.READ, 99, 0, XENSTORE_PAYLOAD_MAX + 1))
            assert replies(s, 1) is None
    with XsClient(store) as c:          # the store serves a new client, reads and writes
        c.write(SENTINEL, "after")
        assert c.read(SENTINEL) == b"after"
