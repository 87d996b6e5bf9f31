"""Node permissions: owner, default access, per-domain entries, inheritance."""
from __future__ import annotations

import pytest

from xenpy.public.io.xs_wire import XsType
from xenpy.xenstore import XenStored
from xenpy.xenstore.store import Perm, XsErr, parse_perm


def z(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


def call(conn, type_, payload: bytes) -> str | bytes:
    """Reply payload, or the error name."""
    t, p = conn.request(type_, payload)
    return p.rstrip(b"\0").decode() if t == XsType.ERROR else p


@pytest.fixture
def board():
    xs = XenStored(None)
    d0 = xs.connect_local()
    # What libxl sets up for a guest: its home is dom0's, readable by the guest,
    # with a writable data/ directory.
    for d in (1, 2):
        call(d0, XsType.MKDIR, z(f"/local/domain/{d}"))
        call(d0, XsType.SET_PERMS, z(f"/local/domain/{d}", "n0", f"r{d}"))
        call(d0, XsType.MKDIR, z(f"/local/domain/{d}/data"))
        call(d0, XsType.SET_PERMS, z(f"/local/domain/{d}/data", f"n{d}"))
    call(d0, XsType.WRITE, z("/local/domain/1/name") + b"guest1")
    return xs, d0, xs.connect_local(1), xs.connect_local(2)


def test_perm_strings_round_trip_as_xenstored_prints_them():
    assert str(parse_perm("b5")) == "b5"
    assert parse_perm("r0x10") == Perm(1, 16)  # strtol base 0
    assert str(parse_perm("n-1")) == "n-1"
    for bad in ("", "x1", "r", "r1a", "b 1x"):
        with pytest.raises(XsErr):
            parse_perm(bad)


def test_guest_reads_its_home_but_not_others(board):
    xs, d0, g1, g2 = board
    assert call(g1, XsType.READ, z("/local/domain/1/name")) == b"guest1"
    assert call(g2, XsType.READ, z("/local/domain/1/name")) == "EACCES"
    assert call(g1, XsType.DIRECTORY, z("/local/domain/1")) == z("data", "name")
    assert call(g1, XsType.WRITE, z("/local/domain/1/name") + b"x") == "EACCES"


def test_missing_nodes_leak_nothing_through_unreadable_parents(board):
    xs, d0, g1, g2 = board
    # g1 may read its home, so a missing child there is plainly ENOENT...
    assert call(g1, XsType.READ, z("/local/domain/1/nope")) == "ENOENT"
    # ...but below g2's home (which g1 cannot read) it is EACCES, exists or not.
    assert call(g1, XsType.READ, z("/local/domain/2/nope")) == "EACCES"
    assert call(g1, XsType.READ, z("/local/domain/2/data")) == "EACCES"


def test_new_nodes_inherit_parent_perms_and_guests_own_what_they_create(board):
    xs, d0, g1, g2 = board
    assert call(g1, XsType.WRITE, z("data/a/b") + b"v") == b"OK\0"
    assert call(g1, XsType.GET_PERMS, z("data/a/b")) == z("n1")
    assert call(g1, XsType.GET_PERMS, z("data/a")) == z("n1")
    # Under dom0's home of guest 1, a guest-created node is the guest's.
    call(d0, XsType.SET_PERMS, z("/local/domain/1", "n0", "b1"))
    call(g1, XsType.WRITE, z("made") + b"v")
    assert call(g1, XsType.GET_PERMS, z("made")) == z("n1", "b1")
    call(d0, XsType.WRITE, z("/local/domain/1/byd0") + b"v")
    assert call(d0, XsType.GET_PERMS, z("/local/domain/1/byd0")) == z("n0", "b1")
    call(d0, XsType.MKDIR, z("/tooldir/x"))
    assert call(d0, XsType.GET_PERMS, z("/tooldir/x")) == z("n0")


def test_only_owners_change_perms_and_only_dom0_gives_nodes_away(board):
    xs, d0, g1, g2 = board
    call(g1, XsType.WRITE, z("data/mine") + b"v")
    assert call(g1, XsType.SET_PERMS, z("data/mine", "n1", "r2")) == b"OK\0"
    assert call(g2, XsType.READ, z("/local/domain/1/data/mine")) == b"v"
    assert call(g1, XsType.SET_PERMS, z("data/mine", "n2")) == "EPERM"
    assert call(g1, XsType.SET_PERMS, z("name", "b1")) == "EACCES"  # dom0 owns it
    assert call(d0, XsType.SET_PERMS, z("/local/domain/1/name", "r1")) == b"OK\0"
    assert call(g1, XsType.GET_PERMS, z("name")) == z("r1")
    assert call(d0, XsType.SET_PERMS, z("/local/domain/1/name")) == "EINVAL"
    assert call(d0, XsType.SET_PERMS, z("/local/domain/1/name", "q1")) == "EINVAL"


def test_first_entry_is_the_default_for_domains_without_their_own(board):
    xs, d0, g1, g2 = board
    call(d0, XsType.WRITE, z("/pub") + b"hello")
    call(d0, XsType.SET_PERMS, z("/pub", "r0", "n2"))
    assert call(g1, XsType.READ, z("/pub")) == b"hello"
    assert call(g2, XsType.READ, z("/pub")) == "EACCES"
    call(d0, XsType.SET_PERMS, z("/pub", "n0", "r32757"))  # DOMID_ANY
    assert call(g2, XsType.READ, z("/pub")) == b"hello"


def test_special_node_perms_decide_who_may_watch_them(board):
    xs, d0, g1, g2 = board
    assert call(g1, XsType.GET_PERMS, z("@introduceDomain")) == "EACCES"
    call(d0, XsType.SET_PERMS, z("@introduceDomain", "n0", "r1"))
    assert call(g1, XsType.GET_PERMS, z("@introduceDomain")) == z("n0", "r1")
    assert call(g1, XsType.WATCH, z("@introduceDomain", "tok")) == b"OK\0"
    call(g2, XsType.WATCH, z("@introduceDomain", "tok"))
    g1.poll_events(), g2.poll_events()
    xs.connect_local(9)
    assert g1.poll_events() == [("@introduceDomain", "tok")]
    assert g2.poll_events() == []


def test_dead_domains_lose_their_nodes_and_acl_entries(board):
    xs, d0, g1, g2 = board
    call(g1, XsType.WRITE, z("data/owned/x") + b"v")
    call(d0, XsType.WRITE, z("/shared") + b"s")
    call(d0, XsType.SET_PERMS, z("/shared", "n0", "r1", "b2"))
    xs.release_domain(1)
    assert call(d0, XsType.READ, z("/local/domain/1/data/owned")) == "ENOENT"
    assert call(d0, XsType.READ, z("/local/domain/1/name")) == b"guest1"  # dom0's stays
    assert call(d0, XsType.GET_PERMS, z("/shared")) == z("n0", "b2")
    # A new domain 1 inherits none of the old one's rights.
    g1b = xs.connect_local(1)
    assert call(g1b, XsType.READ, z("/shared")) == "EACCES"
