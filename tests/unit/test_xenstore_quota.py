"""Quotas bind guests, never dom0, and fail the way xenstored 4.22 fails."""
from __future__ import annotations

from xenpy.public.io.xs_wire import XsType
from xenpy.xenstore import Quota, XenStored


def z(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


def call(conn, type_, payload: bytes, tx: int = 0) -> str | bytes:
    t, p = conn.request(type_, payload, tx)
    return p.rstrip(b"\0").decode() if t == XsType.ERROR else p


def board(**quota: int):
    xs = XenStored(None, quota=Quota(**quota))
    d0 = xs.connect_local()
    call(d0, XsType.MKDIR, z("/local/domain/3"))
    call(d0, XsType.SET_PERMS, z("/local/domain/3", "n3"))  # the guest owns its home
    return xs, d0, xs.connect_local(3)


def test_nodes_per_domain():
    xs, d0, g = board(nodes=4)
    # The home counts: it is owned by dom3. A quota of 4 allows 3 nodes (value >= quota fails).
    assert call(g, XsType.WRITE, z("a") + b"") == b"OK\0"
    assert call(g, XsType.WRITE, z("b") + b"") == b"OK\0"
    assert call(g, XsType.WRITE, z("c") + b"") == "ENOSPC"
    assert call(g, XsType.WRITE, z("a") + b"rewrite is fine") == b"OK\0"
    call(g, XsType.RM, z("b"))
    assert call(g, XsType.WRITE, z("c") + b"") == b"OK\0"
    for i in range(10):
        call(d0, XsType.WRITE, z(f"/local/domain/3/dom0-{i}") + b"")  # dom0 is never limited


def test_nodes_quota_is_checked_at_commit():
    xs, d0, g = board(nodes=4)
    tx = int(call(g, XsType.TRANSACTION_START, z("")).rstrip(b"\0"))
    assert call(g, XsType.WRITE, z("a") + b"", tx) == b"OK\0"
    assert call(g, XsType.WRITE, z("b") + b"", tx) == b"OK\0"
    call(g, XsType.WRITE, z("x") + b"")  # outside: now the transaction would exceed
    assert call(g, XsType.TRANSACTION_END, z("T"), tx) == "ENOSPC"


def test_node_size():
    xs, d0, g = board(node_size=100)
    # 16 header + 8 per permission + value + children: 16 + 8 + 76 = 100 >= 100.
    assert call(g, XsType.WRITE, z("v") + b"x" * 75) == b"OK\0"
    assert call(g, XsType.WRITE, z("v") + b"x" * 76) == "ENOSPC"
    assert call(g, XsType.READ, z("v")) == b"x" * 75
    assert call(d0, XsType.WRITE, z("/local/domain/3/v") + b"x" * 1000) == b"OK\0"


def test_a_failed_change_spoils_the_transaction():
    xs, d0, g = board(node_size=100)
    tx = int(call(g, XsType.TRANSACTION_START, z("")).rstrip(b"\0"))
    assert call(g, XsType.WRITE, z("v") + b"x" * 200, tx) == "ENOSPC"
    assert call(g, XsType.TRANSACTION_END, z("T"), tx) == "ENOMEM"


def test_watches_transactions_permissions_path_length():
    xs, d0, g = board(watches=3, transactions=3, node_permissions=3, path_max=20)
    assert call(g, XsType.WATCH, z("/a", "1")) == b"OK\0"
    assert call(g, XsType.WATCH, z("/a", "2")) == b"OK\0"
    assert call(g, XsType.WATCH, z("/a", "3")) == "ENOSPC"
    assert call(g, XsType.TRANSACTION_START, z("")) == b"1\0"
    assert call(g, XsType.TRANSACTION_START, z("")) == b"2\0"
    assert call(g, XsType.TRANSACTION_START, z("")) == "ENOSPC"
    call(g, XsType.WRITE, z("p") + b"")
    assert call(g, XsType.SET_PERMS, z("p", "n3", "r1")) == b"OK\0"
    assert call(g, XsType.SET_PERMS, z("p", "n3", "r1", "r2")) == "ENOSPC"
    assert call(g, XsType.WRITE, z("x" * 19) + b"") == b"OK\0"  # relative part below the home
    assert call(g, XsType.WRITE, z("x" * 20) + b"") == "EINVAL"
    for i in range(5):
        assert call(d0, XsType.WATCH, z("/a", str(i))) == b"OK\0"


def test_quotas_over_the_wire():
    xs, d0, g = board()
    assert call(d0, XsType.GET_QUOTA, b"") == (
        b"nodes watches outstanding memory soft-memory transactions transaction-nodes "
        b"node-permissions path-max node-size\0")
    assert call(d0, XsType.GET_QUOTA, z("nodes")) == b"1000\0"
    assert call(d0, XsType.SET_QUOTA, z("3", "nodes", "2")) == b"OK\0"
    assert call(d0, XsType.GET_QUOTA, z("3", "nodes")) == b"2\0"
    assert call(d0, XsType.GET_QUOTA, z("nodes")) == b"1000\0"  # the global default is unchanged
    assert call(g, XsType.WRITE, z("a") + b"") == "ENOSPC"
    assert call(d0, XsType.GET_QUOTA, z("bogus")) == "EINVAL"
    assert call(g, XsType.GET_QUOTA, z("nodes")) == "EACCES"
