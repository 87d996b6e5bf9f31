"""Grant-table protocols between real guests and dom0, on a board daemon.

gntcmd: the ERIKA port's synchronous command protocol. The guest grants dom0 a page as ref 2 and
publishes an event channel in XenStore; dom0 (this test, through libxengnttab and libxenevtchn
over privcmd) maps the page zero copy, writes commands, notifies and waits for the answer.
ivshmem: two domUs share a page (one maps the other's grant over a frame of its own RAM) and
exchange counters with doorbells, each printing a state table.
"""
from __future__ import annotations

import errno
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import ROOT, TIMEOUT, run, wait_for, xl
from tests.guest.test_irq_guests import domid_of, state_of
from toolstack.xc import SocketTransport
from toolstack.xenevtchn import Xenevtchn
from toolstack.xengnttab import GnttabError, Xengnttab
from toolstack.xs import XsClient, XsError
from xenpy.public.grant_table import GNTST_bad_gntref, GNTST_general_error

EXAMPLES = ROOT / "examples"
CMD_PING, CMD_ADD, CMD_UPPER, CMD_STATS, CMD_STOP = 1, 2, 3, 4, 5
TEXT = 32


def rundir(env: dict[str, str]) -> Path:
    return Path(env["XENPY_RUNDIR"])


def xs_read(env: dict[str, str], path: str) -> bytes | None:
    with XsClient(rundir(env) / "xenstored" / "socket") as xs:
        try:
            return xs.read(path)
        except XsError:
            return None


class Dom0Side:
    """What the ERIKA port's dom0 tool does: bind the published port, map grant 2, call."""

    def __init__(self, env: dict[str, str], domid: int) -> None:
        self.remote_port = int(xs_read(env, f"/local/domain/{domid}/data/cmd-port"))
        self.evt = Xenevtchn(SocketTransport(rundir(env) / "privcmd"))
        self.gnt = Xengnttab(SocketTransport(rundir(env) / "privcmd"))
        self.port = self.evt.bind_interdomain(domid, self.remote_port)
        # Xen raises the binder's end once at bind time: that event is no answer.
        assert self.evt.pending(timeout=5) == self.port
        self.evt.unmask(self.port)
        self.page, self.handle = self.gnt.map_grant_ref(domid, 2, writable=True)
        self.seq = 0

    def call(self, cmd: int, a: int = 0, b: int = 0, text: bytes | None = None
             ) -> tuple[int, int, bytes]:
        self.seq += 1
        if text is not None:
            self.page[TEXT:TEXT + len(text) + 1] = text + b"\0"
        struct.pack_into("<III", self.page, 4, cmd, a, b)
        struct.pack_into("<I", self.page, 0, self.seq)       # seq last: the command is complete
        self.evt.notify(self.port)
        assert self.evt.pending(timeout=20) == self.port, f"no answer to command #{self.seq}"
        self.evt.unmask(self.port)
        done, status, result = struct.unpack_from("<IiI", self.page, 16)
        assert done == self.seq
        end = bytes(self.page[TEXT:]).index(b"\0") + TEXT
        return status, result, bytes(self.page[TEXT:end])

    def unmap(self) -> None:
        self.page = None                # no view of the page may outlive the unmap
        self.gnt.unmap(self.handle)

    def close(self) -> None:
        self.gnt.close()
        self.evt.close()


def test_dom0_drives_the_guest_through_a_granted_page(board):
    proc = subprocess.Popen([sys.executable, "-m", "toolstack.xl", "create", "-c",
                             str(EXAMPLES / "gntcmd/gntcmd.cfg")], cwd=ROOT, env=board,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: domid_of("gntcmd", board) is not None, 30)
        domid = domid_of("gntcmd", board)
        assert wait_for(lambda: xs_read(board, f"/local/domain/{domid}/data/cmd-port"), 30)
        d0 = Dom0Side(board, domid)
        try:
            assert d0.call(CMD_PING) == (0, 0, b"")
            assert d0.call(CMD_ADD, 40, 2)[:2] == (0, 42)
            assert d0.call(CMD_ADD, 0xFFFFFFFF, 2)[:2] == (0, 1)          # u32 arithmetic
            assert d0.call(CMD_UPPER, text=b"hello, erika") == (0, 12, b"HELLO, ERIKA")
            assert d0.call(99)[:2] == (-errno.ENOSYS, 0)                  # unknown command
            status, upcalls, summary = d0.call(CMD_STATS)
            assert status == 0 and upcalls >= 6
            assert summary.startswith(b"answered 5, notifications ")
            assert d0.call(CMD_PING)[:2] == (0, 6)

            # Ref 3 is granted read-only. Xen refuses to write-pin it with GNTST_general_error
            # ("Attempt to write-pin a r/o grant entry"), which gntdev reports as EINVAL; the
            # refusal leaves the entry usable for a read-only map.
            with pytest.raises(GnttabError) as e:
                d0.gnt.map_grant_ref(domid, 3, writable=True)
            assert e.value.status == GNTST_general_error
            assert str(e.value) == "gntdev map failed: Invalid argument (EINVAL): undefined error (-1)"
            ro, h = d0.gnt.map_grant_ref(domid, 3, writable=False)
            assert bytes(ro[:40]).split(b"\0")[0] == f"read-only page of domain {domid}".encode()
            del ro
            d0.gnt.unmap(h)
            # A ref the guest never granted (within the table): the same refusal.
            with pytest.raises(GnttabError) as e:
                d0.gnt.map_grant_ref(domid, 9, writable=False)
            assert e.value.status == GNTST_general_error
            # A ref beyond the guest's one frame of entries.
            with pytest.raises(GnttabError) as e:
                d0.gnt.map_grant_ref(domid, 512 * 64, writable=False)
            assert e.value.status == GNTST_bad_gntref

            assert d0.call(CMD_STOP)[:2] == (0, 0)
            d0.unmap()
            d0.evt.notify(d0.port)                # "unmapped": the guest revokes its grants
        finally:
            d0.close()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    lines = out.splitlines()
    assert lines[-1] == "Test result: SUCCESS", out + err
    assert any(re.fullmatch(r"gntcmd: page 0x8[0-9a-f]{4} granted to dom0 as ref 2 \(ref 3 "
                            r"read-only\); port \d+ at data/cmd-port", l) for l in lines), out
    assert "gntcmd: #2 ADD(40, 2) -> status 0, result 42" in lines
    assert "gntcmd: #5 ?(0, 0) -> status -38, result 0" in lines
    # While dom0 held the pages the guest saw only the entries' own flags once unmapped.
    assert "gntcmd: dom0 is done; ref 2 flags 0x1, ref 3 flags 0x5" in lines
    assert "gntcmd: answered 8 commands; grants revoked" in lines


TABLE_ROW = r"ivshmem\[{me}\]:\s+{peer}\s+(\d+) (\w+)\s+(\d+)\s+(\d+)(  \(me\))?"


def final_rows(lines: list[str], me: int) -> dict[int, tuple[int, str, int, int]]:
    start = lines.index(f"ivshmem[{me}]: --- final ---")
    rows = {}
    for peer in (0, 1):
        m = next(m for l in lines[start:start + 4]
                 if (m := re.fullmatch(TABLE_ROW.format(me=me, peer=peer), l)))
        rows[peer] = (int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)))
    return rows


def test_two_domains_share_a_page_and_ring_doorbells(board):
    rounds = 12
    xenstore = ["toolstack.xenstore_cli"]
    run(*xenstore, "rm", "/local/ivshmem", env=board)
    assert run(*xenstore, "write", "/local/ivshmem", "", env=board).returncode == 0
    assert run(*xenstore, "chmod", "/local/ivshmem", "b0", env=board).returncode == 0
    r = xl("create", str(EXAMPLES / "ivshmem/ivshmem.cfg"), f'extra="id=0 rounds={rounds}"',
           env=board)
    assert r.returncode == 0, r.stderr
    r = xl("create", "-c", str(EXAMPLES / "ivshmem/ivshmem.cfg"), 'name="ivshmem1"',
           f'extra="id=1 rounds={rounds}"', env=board)
    assert r.returncode == 0, r.stderr
    one = r.stdout.splitlines()
    assert wait_for(lambda: state_of("ivshmem0", board) == "---s--", 30)
    zero = xl("console", "ivshmem0", env=board, timeout=30).stdout.splitlines()
    xl("destroy", "ivshmem0", env=board)
    xl("destroy", "ivshmem1", env=board)
    assert zero[-1] == "Test result: SUCCESS", "\n".join(zero)
    assert one[-1] == "Test result: SUCCESS", "\n".join(one)

    d0 = int(re.fullmatch(r"ivshmem\[0\]: domain (\d+), meeting in /local/ivshmem", zero[0])[1])
    d1 = int(re.fullmatch(r"ivshmem\[1\]: domain (\d+), meeting in /local/ivshmem", one[0])[1])
    assert f"ivshmem[0]: page granted to domain {d1} as ref 8, doorbell port " in zero[1]
    assert re.fullmatch(rf"ivshmem\[1\]: mapped ref 8 of domain {d0} at 0x8[0-9a-f]{{7}} "
                        rf"\(own RAM\), doorbell port \d+", one[1])
    # Both tables end with both counters at N; each peer's row as the other read it.
    for me, lines in ((0, zero), (1, one)):
        rows = final_rows(lines, me)
        assert rows[0][:3] == (d0, "DONE", rounds) and rows[1][:3] == (d1, "DONE", rounds)
        assert 1 <= rows[me][3] <= rounds + 2          # doorbells may merge, never invent
    assert any(re.fullmatch(r"ivshmem\[1\]: unmapped; frame 0x8[0-9a-f]{4} is our own RAM again",
                            l) for l in one)
    assert f"ivshmem[0]: {rounds} rounds; peer 1 unmapped, grant revoked" in zero
