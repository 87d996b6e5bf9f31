"""toolstack.xs.XsClient against a real xenstored socket: the thread that waits reads the socket,
and whatever arrives for another thread (a reply, a watch event) reaches it."""
from __future__ import annotations

import threading

import pytest

from toolstack.xs import XsClient, XsError
from xenpy.xenstore import XenStored


@pytest.fixture
def sock(tmp_path):
    xs = XenStored(None, log=lambda _m: None)
    path = tmp_path / "socket"
    xs.serve_socket(path)
    yield path
    xs.close()


def test_requests_while_another_thread_waits_for_watch_events(sock):
    with XsClient(sock) as c:
        c.watch("/w", "tok")
        assert c.read_watch(5) == ("/w", "tok")          # the initial event
        got: list[tuple[str, str] | None] = []
        waiter = threading.Thread(target=lambda: got.append(c.read_watch(10)))
        waiter.start()                                    # it holds the socket reader now
        for i in range(200):                              # our replies pass through it
            c.write("/other", str(i))
            assert c.read("/other") == str(i).encode()
        c.write("/w/x", "1")
        waiter.join(10)
        assert got == [("/w/x", "tok")]


def test_watch_event_arriving_during_a_request_is_kept(sock):
    with XsClient(sock) as c, XsClient(sock) as other:
        c.watch("/a", "t")
        assert c.read_watch(5) == ("/a", "t")
        other.write("/a", "v")
        c.write("/b", "1")            # the event may come in before this reply
        assert c.read_watch(5) == ("/a", "t")
        assert c.read_watch(0.05) is None


def test_lost_connection_is_an_error_not_a_hang(tmp_path):
    xs = XenStored(None, log=lambda _m: None)
    path = tmp_path / "socket"
    xs.serve_socket(path)
    c = XsClient(path)
    c.write("/k", "v")
    xs.close()
    with pytest.raises(XsError):
        c.read("/k")
    with pytest.raises(XsError):
        c.read_watch(1)
    c.close()


def test_read_many_answers_each_path_in_order_with_watch_events_kept(sock):
    # xl list reads every domain's name in one round trip: 600 reads (more than one batch),
    # missing nodes answered with their error, a watch event in the middle left for read_watch.
    with XsClient(sock) as c, XsClient(sock) as other:
        for i in range(0, 600, 2):
            c.write(f"/n/{i}", f"v{i}")
        c.watch("/n/5", "tok")
        assert c.read_watch(5) == ("/n/5", "tok")
        other.write("/n/5", "late")                       # fires while our reads are queued
        got = c.read_many(f"/n/{i}" for i in range(600))
        assert [g for i, g in enumerate(got) if i % 2 == 0] == \
               [f"v{i}".encode() for i in range(0, 600, 2)]
        odd = [g for i, g in enumerate(got) if i % 2 and i != 5]
        assert all(isinstance(g, XsError) and g.errno_name == "ENOENT" for g in odd)
        assert got[5] == b"late"
        assert c.read_watch(5) == ("/n/5", "tok")
        assert c.read("/n/0") == b"v0"                    # the connection carries on
        assert c.read_many([]) == []
