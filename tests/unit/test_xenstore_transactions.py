"""Transactions: isolation, Xen's conflict rule (EAGAIN), watch events at commit."""
from __future__ import annotations

from xenpy.public.io.xs_wire import XsType
from xenpy.xenstore import XenStored


def z(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


def call(conn, type_, payload: bytes, tx: int = 0) -> str | bytes:
    t, p = conn.request(type_, payload, tx)
    return p.rstrip(b"\0").decode() if t == XsType.ERROR else p


def start(conn) -> int:
    reply = call(conn, XsType.TRANSACTION_START, z(""))
    return int(reply.rstrip(b"\0"))


def end(conn, tx: int, commit: bool = True) -> str | bytes:
    return call(conn, XsType.TRANSACTION_END, z("T" if commit else "F"), tx)


def setup():
    xs = XenStored(None)
    a, b = xs.connect_local(), xs.connect_local()
    call(a, XsType.WRITE, z("/x") + b"1")
    call(a, XsType.WRITE, z("/y") + b"1")
    return xs, a, b


def test_changes_are_invisible_until_commit():
    xs, a, b = setup()
    tx = start(a)
    assert tx == 1 and start(a) == 2  # per-connection ids from 1
    call(a, XsType.WRITE, z("/x") + b"2", tx)
    call(a, XsType.WRITE, z("/new/deep") + b"n", tx)
    assert call(a, XsType.READ, z("/x"), tx) == b"2"
    assert call(b, XsType.READ, z("/x")) == b"1"
    assert call(b, XsType.READ, z("/new/deep")) == "ENOENT"
    assert end(a, tx) == b"OK\0"
    assert call(b, XsType.READ, z("/x")) == b"2"
    assert call(b, XsType.READ, z("/new/deep")) == b"n"


def test_abort_discards():
    xs, a, b = setup()
    tx = start(a)
    call(a, XsType.RM, z("/x"), tx)
    assert call(a, XsType.READ, z("/x"), tx) == "ENOENT"
    assert end(a, tx, commit=False) == b"OK\0"
    assert call(a, XsType.READ, z("/x")) == b"1"
    assert end(a, tx) == "ENOENT"  # the id is gone


def test_conflicting_change_to_a_read_node_gives_eagain():
    xs, a, b = setup()
    tx = start(a)
    assert call(a, XsType.READ, z("/x"), tx) == b"1"
    call(a, XsType.WRITE, z("/y") + b"from-tx", tx)
    call(b, XsType.WRITE, z("/x") + b"other")
    assert end(a, tx) == "EAGAIN"
    assert call(b, XsType.READ, z("/y")) == b"1"  # nothing of the transaction applied


def test_concurrent_change_to_a_written_node_gives_eagain():
    xs, a, b = setup()
    tx = start(a)
    call(a, XsType.WRITE, z("/x") + b"tx", tx)
    call(b, XsType.WRITE, z("/x") + b"other")
    assert end(a, tx) == "EAGAIN"
    assert call(b, XsType.READ, z("/x")) == b"other"


def test_creation_of_a_node_read_as_missing_conflicts():
    xs, a, b = setup()
    tx = start(a)
    assert call(a, XsType.READ, z("/flag"), tx) == "ENOENT"
    call(a, XsType.WRITE, z("/y") + b"2", tx)
    call(b, XsType.WRITE, z("/flag") + b"set")
    assert end(a, tx) == "EAGAIN"


def test_unrelated_changes_do_not_conflict():
    xs, a, b = setup()
    tx = start(a)
    call(a, XsType.READ, z("/x"), tx)
    call(b, XsType.WRITE, z("/y") + b"other")
    call(b, XsType.WRITE, z("/z/q") + b"other")
    assert end(a, tx) == b"OK\0"


def test_bad_transaction_use():
    xs, a, b = setup()
    tx = start(a)
    assert call(b, XsType.READ, z("/x"), tx) == "ENOENT"  # ids are per connection
    assert call(a, XsType.TRANSACTION_START, z(""), tx) == "EBUSY"
    assert call(a, XsType.TRANSACTION_END, z("X"), tx) == "EINVAL"
    assert call(a, XsType.TRANSACTION_END, z("T")) == "ENOENT"
    assert call(a, XsType.READ, z("/x"), 99) == "ENOENT"
    # WATCH ignores the transaction id.
    assert call(a, XsType.WATCH, z("/x", "t"), 99) == b"OK\0"


def test_watches_fire_only_on_commit():
    xs, a, b = setup()
    call(b, XsType.WATCH, z("/x", "w"))
    b.poll_events()
    tx = start(a)
    call(a, XsType.WRITE, z("/x/child") + b"v", tx)
    assert b.poll_events() == []
    end(a, tx)
    assert b.poll_events() == [("/x/child", "w")]
    tx = start(a)
    call(a, XsType.WRITE, z("/x") + b"v", tx)
    end(a, tx, commit=False)
    assert b.poll_events() == []


def test_reset_watches_drops_transactions():
    xs, a, b = setup()
    tx = start(a)
    assert call(a, XsType.RESET_WATCHES, z("")) == b"OK\0"
    assert end(a, tx) == "ENOENT"
