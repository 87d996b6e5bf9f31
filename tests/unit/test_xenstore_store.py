"""The XenStore tree and the request semantics xenstored gives it."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.public.io.xs_wire import XENSTORE_PAYLOAD_MAX, XsType
from xenpy.xenstore import XenStored


def z(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


def ok(conn, type_, payload: bytes, tx: int = 0) -> bytes:
    t, p = conn.request(type_, payload, tx)
    assert t == type_, p
    return p


def err(conn, type_, payload: bytes, tx: int = 0) -> str:
    t, p = conn.request(type_, payload, tx)
    assert t == XsType.ERROR, (t, p)
    return p.rstrip(b"\0").decode()


def write(conn, path: str, value: bytes | str = b"", tx: int = 0) -> None:
    value = value.encode() if isinstance(value, str) else value
    assert ok(conn, XsType.WRITE, z(path) + value, tx) == b"OK\0"


def ls(conn, path: str) -> list[str]:
    return [s.decode() for s in ok(conn, XsType.DIRECTORY, z(path)).split(b"\0")[:-1]]


def test_initial_tree_is_xenstoreds():
    d0 = XenStored(None).connect_local()
    assert ls(d0, "/") == ["tool"]
    assert ls(d0, "/tool") == ["xenstored"]
    assert ok(d0, XsType.GET_PERMS, z("@releaseDomain")) == z("n0", "r32757")
    assert ok(d0, XsType.GET_PERMS, z("@introduceDomain")) == z("n0")


def test_write_creates_parents_with_empty_values_and_keeps_binary_values():
    d0 = XenStored(None).connect_local()
    write(d0, "/a/b/c", b"\x00\xffbin\0ary")
    assert ok(d0, XsType.READ, z("/a/b/c")) == b"\x00\xffbin\0ary"
    assert ok(d0, XsType.READ, z("/a/b")) == b""
    assert ls(d0, "/") == ["tool", "a"]  # children keep creation order


def test_mkdir_keeps_existing_value():
    d0 = XenStored(None).connect_local()
    write(d0, "/a", "v")
    ok(d0, XsType.MKDIR, z("/a"))
    ok(d0, XsType.MKDIR, z("/a/x/y"))
    assert ok(d0, XsType.READ, z("/a")) == b"v"
    assert ls(d0, "/a/x") == ["y"]


def test_rm_is_recursive_and_tolerates_a_missing_node_but_not_a_missing_parent():
    d0 = XenStored(None).connect_local()
    write(d0, "/a/b/c", "1")
    ok(d0, XsType.RM, z("/a/b"))
    assert err(d0, XsType.READ, z("/a/b/c")) == "ENOENT"
    assert ls(d0, "/a") == []
    assert ok(d0, XsType.RM, z("/a/gone")) == b"OK\0"
    assert err(d0, XsType.RM, z("/nope/gone")) == "ENOENT"
    assert err(d0, XsType.RM, z("/")) == "EINVAL"


def test_invalid_paths_are_einval():
    d0 = XenStored(None).connect_local()
    for bad in ("/a//b", "/a/", "/a b", "/a\tb", "@releaseDomain", "", "/é"):
        assert err(d0, XsType.READ, bad.encode() + b"\0") == "EINVAL", bad
    assert err(d0, XsType.WRITE, b"/" + b"x" * 3072 + b"\0v") == "EINVAL"


def test_malformed_payloads_are_einval_and_unknown_types_enosys():
    d0 = XenStored(None).connect_local()
    write(d0, "/a", "v")
    assert err(d0, XsType.READ, b"/a") == "EINVAL"  # no NUL
    assert err(d0, XsType.READ, b"/a\0/b\0") == "EINVAL"  # two strings
    assert err(d0, XsType.WRITE, b"/a") == "EINVAL"
    assert err(d0, XsType.DIRECTORY_PART, z("/a")) == "EINVAL"
    for t in (20, XsType.WATCH_EVENT, XsType.ERROR, 27, 0xFFFF):
        assert err(d0, t, z("/a")) == "ENOSYS"


def test_relative_paths_are_below_the_callers_home():
    xs = XenStored(None)
    d0 = xs.connect_local()
    write(d0, "x", "dom0's")
    assert ok(d0, XsType.READ, z("/local/domain/0/x")) == b"dom0's"
    ok(d0, XsType.MKDIR, z("/local/domain/3"))
    ok(d0, XsType.SET_PERMS, z("/local/domain/3", "n0", "b3"))
    g = xs.connect_local(3)
    write(g, "data/k", "guest")
    assert ok(d0, XsType.READ, z("/local/domain/3/data/k")) == b"guest"
    assert ok(g, XsType.GET_DOMAIN_PATH, z("7")) == z("/local/domain/7")
    assert err(g, XsType.GET_DOMAIN_PATH, z("65536")) == "EINVAL"


def test_long_directories_come_in_parts():
    d0 = XenStored(None).connect_local()
    names = [f"child-with-a-long-name-{i:04d}" for i in range(200)]
    for n in names:
        ok(d0, XsType.MKDIR, z(f"/big/{n}"))
    assert err(d0, XsType.DIRECTORY, z("/big")) == "E2BIG"
    got, off, gen = b"", 0, None
    while True:
        reply = ok(d0, XsType.DIRECTORY_PART, z("/big", str(off)))
        g, _, rest = reply.partition(b"\0")
        assert len(reply) <= XENSTORE_PAYLOAD_MAX
        assert gen in (None, g)
        gen = g
        got += rest
        off = len(got)
        if got.endswith(b"\0\0"):
            break
    assert got[:-1].split(b"\0")[:-1] == [n.encode() for n in names]
    assert ok(d0, XsType.DIRECTORY_PART, z("/big", "999999")) == gen + b"\0\0"


def test_domain_requests():
    xs = XenStored(None)
    d0 = xs.connect_local()
    assert ok(d0, XsType.IS_DOMAIN_INTRODUCED, z("0")) == z("T")
    assert ok(d0, XsType.IS_DOMAIN_INTRODUCED, z("4")) == z("F")
    assert err(d0, XsType.RELEASE, z("4")) == "ENOENT"
    assert err(d0, XsType.RELEASE, z("0")) == "EINVAL"
    assert err(d0, XsType.INTRODUCE, z("4", "100", "1")) == "EINVAL"  # no board to map the ring
    g = xs.connect_local(4)
    assert ok(d0, XsType.IS_DOMAIN_INTRODUCED, z("4")) == z("T")
    for t, p in ((XsType.INTRODUCE, z("5", "1", "1")), (XsType.RELEASE, z("4")),
                 (XsType.IS_DOMAIN_INTRODUCED, z("4")), (XsType.CONTROL, z("check")),
                 (XsType.SET_QUOTA, z("nodes", "5"))):
        assert err(g, t, p) == "EACCES"
    assert ok(d0, XsType.RELEASE, z("4")) == b"OK\0"
    assert not xs.is_domain_introduced(4)


def test_features_follow_the_ring_protocol():
    xs = XenStored(None)
    d0 = xs.connect_local()
    assert int(ok(d0, XsType.GET_FEATURE, b"").rstrip(b"\0")) == 15
    ok(d0, XsType.SET_FEATURE, z("6", "2"))
    assert ok(d0, XsType.GET_FEATURE, z("6")) == z("2")
    assert err(d0, XsType.SET_FEATURE, z("6", "64")) == "EINVAL"
    g = xs.connect_local(6)
    assert ok(g, XsType.GET_FEATURE, b"") == z("2")
    assert err(g, XsType.GET_FEATURE, z("0")) == "EACCES"
    assert err(d0, XsType.SET_FEATURE, z("6", "2")) == "EBUSY"  # fixed once introduced
    # Without WATCHDEPTH a third WATCH argument is a protocol error.
    assert err(g, XsType.WATCH, z("/a", "t", "1")) == "EINVAL"


def test_control():
    d0 = XenStored(None, log=lambda s: None).connect_local()
    assert ok(d0, XsType.CONTROL, z("check")) == b"OK\0"
    assert b"quota" in ok(d0, XsType.CONTROL, z("help"))
    assert ok(d0, XsType.CONTROL, z("quota", "set", "nodes", "50")) == b"OK\0"
    assert b"nodes            :       50 Nodes per domain" in ok(d0, XsType.CONTROL, z("quota"))
    assert err(d0, XsType.CONTROL, z("frobnicate")) == "EINVAL"


_names = st.sampled_from(["a", "b", "c"])
_paths = st.lists(_names, min_size=1, max_size=3).map(lambda p: "/t/" + "/".join(p))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["write", "rm", "mkdir"]), _paths, st.binary(max_size=4)), max_size=25))
def test_tree_matches_a_model_after_any_sequence(ops):
    """Reads answer what a dict model says and every node's parent lists it."""
    xs = XenStored(None)
    d0 = xs.connect_local()
    ok(d0, XsType.MKDIR, z("/t"))
    model: dict[str, bytes] = {"/t": b""}
    for op, path, value in ops:
        parts = path.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(3, len(parts))]
        if op == "write":
            write(d0, path, value)
            for a in ancestors:
                model.setdefault(a, b"")
            model[path] = value
        elif op == "mkdir":
            ok(d0, XsType.MKDIR, z(path))
            for a in ancestors + [path]:
                model.setdefault(a, b"")
        else:
            parent = path.rsplit("/", 1)[0]
            if parent in model:
                ok(d0, XsType.RM, z(path))
                for k in [k for k in model if k == path or k.startswith(path + "/")]:
                    del model[k]
            else:
                assert err(d0, XsType.RM, z(path)) == "ENOENT"
    for path, value in model.items():
        assert ok(d0, XsType.READ, z(path)) == value
        kids = sorted(k.rsplit("/", 1)[1] for k in model if k.rsplit("/", 1)[0] == path)
        assert sorted(ls(d0, path)) == kids
    assert xs._check_store() == []
