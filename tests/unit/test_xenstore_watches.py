"""Watches: what fires, with which path and token, for whom."""
from __future__ import annotations

from xenpy.public.io.xs_wire import XsType
from xenpy.xenstore import XenStored


def z(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


def call(conn, type_, payload: bytes, tx: int = 0) -> str | bytes:
    t, p = conn.request(type_, payload, tx)
    return p.rstrip(b"\0").decode() if t == XsType.ERROR else p


def watching(conn, *args: str) -> None:
    assert call(conn, XsType.WATCH, z(*args)) == b"OK\0"


def test_a_new_watch_fires_once_at_once():
    xs = XenStored(None)
    d0 = xs.connect_local()
    watching(d0, "/nothing/yet", "tok")
    assert d0.poll_events() == [("/nothing/yet", "tok")]
    assert call(d0, XsType.WATCH, z("/nothing/yet", "tok")) == "EEXIST"
    watching(d0, "/nothing/yet", "other-token")


def test_watch_fires_for_the_node_and_below_not_above():
    xs = XenStored(None)
    d0, w = xs.connect_local(), xs.connect_local()
    watching(w, "/a/b", "t")
    w.poll_events()
    call(d0, XsType.WRITE, z("/a/b/c/d") + b"v")  # creates /a, /a/b, /a/b/c too
    call(d0, XsType.WRITE, z("/a/b") + b"v")
    call(d0, XsType.WRITE, z("/a") + b"v")
    call(d0, XsType.WRITE, z("/a/bb") + b"v")  # a sibling that shares the prefix
    call(d0, XsType.SET_PERMS, z("/a/b/c", "n0"))
    assert w.poll_events() == [("/a/b/c/d", "t"), ("/a/b", "t"), ("/a/b/c", "t")]
    call(d0, XsType.MKDIR, z("/a/b/c"))  # exists already: no change, no event
    assert w.poll_events() == []


def test_rm_fires_for_the_removed_node_and_watched_nodes_below():
    xs = XenStored(None)
    d0, w = xs.connect_local(), xs.connect_local()
    call(d0, XsType.WRITE, z("/a/b/c") + b"v")
    call(d0, XsType.WRITE, z("/a/x") + b"v")
    for path in ("/", "/a", "/a/b/c", "/a/b/c/never"):
        watching(w, path, path)
    w.poll_events()
    call(d0, XsType.RM, z("/a"))
    assert sorted(w.poll_events()) == sorted([("/a/b/c", "/a/b/c"), ("/a", "/a"), ("/a", "/")])


def test_depth_limits_matching():
    xs = XenStored(None)
    d0, w = xs.connect_local(), xs.connect_local()
    watching(w, "/a", "d0", "0")
    watching(w, "/a", "d1", "1")
    w.poll_events()
    call(d0, XsType.WRITE, z("/a") + b"v")
    call(d0, XsType.WRITE, z("/a/b") + b"v")
    call(d0, XsType.WRITE, z("/a/b/c") + b"v")
    assert w.poll_events() == [("/a", "d0"), ("/a", "d1"), ("/a/b", "d1")]
    assert call(w, XsType.WATCH, z("/q", "t", "-1")) == "EINVAL"


def test_relative_watches_report_relative_paths():
    xs = XenStored(None)
    d0 = xs.connect_local()
    call(d0, XsType.MKDIR, z("/local/domain/4"))
    call(d0, XsType.SET_PERMS, z("/local/domain/4", "n0", "b4"))
    g = xs.connect_local(4)
    watching(g, "control/shutdown", "ctl")
    assert g.poll_events() == [("control/shutdown", "ctl")]
    call(d0, XsType.WRITE, z("/local/domain/4/control/shutdown") + b"poweroff")
    assert g.poll_events() == [("control/shutdown", "ctl")]
    assert call(g, XsType.UNWATCH, z("control/shutdown", "ctl")) == b"OK\0"
    assert call(g, XsType.UNWATCH, z("control/shutdown", "ctl")) == "ENOENT"
    call(d0, XsType.WRITE, z("/local/domain/4/control/shutdown") + b"reboot")
    assert g.poll_events() == []


def test_guests_only_hear_about_nodes_they_can_read():
    xs = XenStored(None)
    d0 = xs.connect_local()
    g = xs.connect_local(5)
    watching(g, "/secret", "t")
    g.poll_events()
    call(d0, XsType.WRITE, z("/secret/x") + b"v")  # n0: unreadable for dom5
    assert g.poll_events() == []
    call(d0, XsType.SET_PERMS, z("/secret/x", "n0", "r5"))  # now readable: this change is reported
    assert g.poll_events() == [("/secret/x", "t")]
    call(d0, XsType.SET_PERMS, z("/secret/x", "n0"))  # losing access is reported too
    assert g.poll_events() == [("/secret/x", "t")]


def test_identical_pending_events_are_merged():
    xs = XenStored(None)
    d0, w = xs.connect_local(), xs.connect_local()
    watching(w, "/a", "t")
    w.poll_events()
    for _ in range(3):
        call(d0, XsType.WRITE, z("/a") + b"v")
    assert w.poll_events() == [("/a", "t")]


def test_introduce_and_release_domain_watches():
    xs = XenStored(None)
    d0 = xs.connect_local()
    watching(d0, "@introduceDomain", "in")
    watching(d0, "@releaseDomain", "out")
    watching(d0, "@releaseDomain/7", "out7")
    watching(d0, "@releaseDomain", "anyout", "1")
    assert len(d0.poll_events()) == 4
    g = xs.connect_local(7)
    assert d0.poll_events() == [("@introduceDomain", "in")]
    # Guests may watch @releaseDomain (r for DOMID_ANY) but not @introduceDomain.
    watching(g, "@releaseDomain", "g")
    assert call(g, XsType.GET_PERMS, z("@introduceDomain")) == "EACCES"
    xs.connect_local(8)
    xs.release_domain(8)
    assert g.poll_events() == [("@releaseDomain", "g"), ("@releaseDomain", "g")]
    assert d0.poll_events() == [("@introduceDomain", "in"), ("@releaseDomain", "out"),
                                ("@releaseDomain/8", "anyout")]
    xs.domain_shutdown(7)
    xs.domain_shutdown(7)  # reported once until XS_RESUME
    assert d0.poll_events() == [("@releaseDomain", "out"), ("@releaseDomain/7", "out7"),
                                ("@releaseDomain/7", "anyout")]
    call(d0, XsType.RESUME, z("7"))
    call(d0, XsType.RELEASE, z("7"))
    assert ("@releaseDomain/7", "out7") in d0.poll_events()
    assert not xs.is_domain_introduced(7)
