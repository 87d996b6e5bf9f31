"""The store survives a restart of xenstored, and a crash loses nothing acknowledged."""
from __future__ import annotations

import shutil

from xenpy.public.io.xs_wire import XsType
from xenpy.xenstore import XenStored
from xenpy.xenstore import persist as persist_mod


def z(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


def read(xs: XenStored, path: str) -> bytes | str:
    t, p = xs.connect_local().request(XsType.READ, z(path))
    return p.rstrip(b"\0").decode() if t == XsType.ERROR else p


def test_restart_keeps_values_perms_and_order(tmp_path):
    state = tmp_path / "xenstore.json"
    xs = XenStored(state)
    d0 = xs.connect_local()
    d0.request(XsType.WRITE, z("/local/domain/1/name") + b"\x00bin\xff")
    d0.request(XsType.WRITE, z("/local/domain/1/b") + b"")
    d0.request(XsType.WRITE, z("/local/domain/1/a") + b"")
    d0.request(XsType.SET_PERMS, z("/local/domain/1", "n0", "r1"))
    d0.request(XsType.WRITE, z("/gone") + b"x")
    d0.request(XsType.RM, z("/gone"))
    xs.close()
    xs = XenStored(state)
    d0 = xs.connect_local()
    assert read(xs, "/local/domain/1/name") == b"\x00bin\xff"
    assert d0.request(XsType.DIRECTORY, z("/local/domain/1")) == (XsType.DIRECTORY, z("name", "b", "a"))
    assert d0.request(XsType.GET_PERMS, z("/local/domain/1")) == (XsType.GET_PERMS, z("n0", "r1"))
    assert read(xs, "/gone") == "ENOENT"


def test_acknowledged_changes_survive_a_crash(tmp_path):
    state = tmp_path / "xenstore.json"
    xs = XenStored(state)
    d0 = xs.connect_local()
    for i in range(5):
        d0.request(XsType.WRITE, z(f"/k{i}") + str(i).encode())
    # Crash: no close(). Whatever was acknowledged is on disk already.
    snapshot = tmp_path / "crashed"
    snapshot.mkdir()
    for f in tmp_path.glob("xenstore.json*"):
        shutil.copy(f, snapshot / f.name)
    with open(snapshot / "xenstore.json.journal", "ab") as j:
        j.write(b'{"seq": 99, "g": 99, "set": {"/torn": {"v": ""')  # an append cut short
    xs2 = XenStored(snapshot / "xenstore.json")
    assert [read(xs2, f"/k{i}") for i in range(5)] == [str(i).encode() for i in range(5)]
    assert read(xs2, "/torn") == "ENOENT"


def test_crash_between_snapshot_rename_and_journal_truncation(tmp_path, monkeypatch):
    monkeypatch.setattr(persist_mod, "_COMPACT_RECORDS", 3)
    state = tmp_path / "xenstore.json"
    xs = XenStored(state)
    d0 = xs.connect_local()
    d0.request(XsType.WRITE, z("/a") + b"1")
    d0.request(XsType.WRITE, z("/a") + b"2")
    d0.request(XsType.WRITE, z("/b") + b"1")
    old_journal = (tmp_path / "xenstore.json.journal").read_bytes()
    d0.request(XsType.WRITE, z("/a") + b"3")  # compacts: new snapshot, empty journal
    assert (tmp_path / "xenstore.json.journal").read_bytes() == b""
    # Pretend the truncation never reached the disk: replaying old records over
    # the newer snapshot must not bring old values back.
    (tmp_path / "xenstore.json.journal").write_bytes(old_journal)
    xs2 = XenStored(state)
    assert read(xs2, "/a") == b"3" and read(xs2, "/b") == b"1"


def test_unreadable_state_is_set_aside_with_a_message(tmp_path):
    state = tmp_path / "xenstore.json"
    state.write_text("{not json")
    logged = []
    xs = XenStored(state, log=logged.append)
    assert len(logged) == 1 and "unusable" in logged[0]
    assert (tmp_path / "xenstore.json.corrupt").read_text() == "{not json"
    assert read(xs, "/tool/xenstored") == b""


def test_writes_are_acknowledged_without_fsync(tmp_path, monkeypatch):
    # The store does not outlive the host, so no write waits for the disk; what was
    # acknowledged is in the journal file (the kernel's page cache) at once.
    import os

    def no_fsync(fd):
        raise AssertionError("xenstored must not fsync")
    monkeypatch.setattr(os, "fsync", no_fsync)
    xs = XenStored(tmp_path / "xenstore.json")
    d0 = xs.connect_local()
    d0.request(XsType.WRITE, z("/k") + b"v")
    assert b'"/k"' in (tmp_path / "xenstore.json.journal").read_bytes()


def test_journal_records_are_the_json_of_the_nodes():
    import json

    from xenpy.xenstore.store import Node, parse_perm
    plain = Node(b"\x00\xffvalue", (parse_perm("n0"), parse_perm("r5")), ["a", "b-c"], 7)
    odd = Node(b"x", (parse_perm("n0"),), ['we"ird\\'], 1)
    for changed, removed in (({"/local/domain/5": plain}, []), ({}, ["/gone", "@x"]),
                             ({"/x": odd}, []), ({'/q"': plain}, ["/r"])):
        line = persist_mod._record_line(3, 9, changed, removed)
        assert json.loads(line) == {"seq": 3, "g": 9, "del": removed,
                                    "set": {n: persist_mod._node_record(v) for n, v in changed.items()}}
