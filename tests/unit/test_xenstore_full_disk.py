"""xenstored on a full disk: a change it cannot make durable is undone and refused with ENOSPC
(the client sees a clear error, watchers see nothing), reads go on, and writes work again as
soon as there is space. The disk is a small tmpfs when this host lets us mount one, else the
store's fsync is made to fail with ENOSPC, as a full disk makes it fail."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from toolstack.xs import XsClient, XsError
from xenpy.xenstore import XenStored
from xenpy.xenstore import persist as persist_mod


class TmpfsDisk:
    def __init__(self, where: Path) -> None:
        self.where = where
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                           capture_output=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
        self.filler = where / "filler"

    def fill(self) -> None:
        with open(self.filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC

    def free(self) -> None:
        self.filler.unlink()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.where)], capture_output=True)


class SeamDisk:
    def __init__(self, where: Path, monkeypatch) -> None:
        self.where = where
        where.mkdir()
        self.full = False

        def fsync(fd: int) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        monkeypatch.setattr(persist_mod.Persist, "fsync", staticmethod(fsync))

    def fill(self) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False

    def close(self) -> None:
        pass


@pytest.fixture(params=["tmpfs", "seam"])
def disk(request, tmp_path, monkeypatch):
    d = TmpfsDisk(tmp_path / "disk") if request.param == "tmpfs" else \
        SeamDisk(tmp_path / "disk", monkeypatch)
    yield d
    d.close()


def test_a_full_disk_refuses_writes_with_enospc_serves_reads_and_recovers(disk, tmp_path):
    lines: list[str] = []
    state = disk.where / "xenstored" / "state.json"
    xs = XenStored(state, log=lines.append)
    sock = tmp_path / "socket"
    xs.serve_socket(sock)
    try:
        with XsClient(sock) as c, XsClient(sock) as watcher:
            c.write("/local/domain/0/data/kept", "before")
            disk.fill()
            # The journal's last page may still take a few records; then the disk is full.
            accepted = []
            for i in range(1000):
                try:
                    c.write(f"/local/domain/0/data/n{i}", "x" * 200)
                except XsError as e:
                    assert e.errno_name == "ENOSPC" and "No space left on device" in str(e)
                    break
                accepted.append(f"n{i}")
            else:
                pytest.fail("1000 writes went to a full disk")
            watcher.watch("/local/domain/0/data", "tok")
            assert watcher.read_watch(5) == ("/local/domain/0/data", "tok")   # the first fire
            for attempt in range(3):
                with pytest.raises(XsError) as e:
                    c.write("/local/domain/0/data/new", f"refused {attempt}")
                assert e.value.errno_name == "ENOSPC"
            with pytest.raises(XsError, match="ENOSPC"):
                c.rm("/local/domain/0/data/kept")
            # Nothing of the refused changes is in the store, and nobody was told of them.
            assert c.read("/local/domain/0/data/kept") == b"before"
            assert c.directory("/local/domain/0/data") == ["kept", *accepted]
            assert watcher.read_watch(0.2) is None
            cannot = [ln for ln in lines if "cannot save state" in ln]
            assert len(cannot) == 1 and "refusing changes until it can" in cannot[0]
            disk.free()
            c.write("/local/domain/0/data/new", "after")
            assert watcher.read_watch(5) == ("/local/domain/0/data/new", "tok")
            assert any("saved to" in ln and "again" in ln for ln in lines)
    finally:
        xs.close()
    again = XenStored(state, log=lines.append)      # what was acknowledged is on the disk
    try:
        c = again.connect_local()
        from xenpy.public.io.xs_wire import XsType
        assert c.request(XsType.READ, b"/local/domain/0/data/new\0") == (XsType.READ, b"after")
    finally:
        again.close()
