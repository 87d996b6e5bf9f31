"""libxengnttab for xenpy: map other domains' grants into dom0 userspace (/dev/xen/gntdev).

Each Xengnttab is one open of the device: its mappings are unmapped when it is closed. A mapping
is the granted page itself (zero copy): the board passes the page's backing file descriptor and
offset, and this side maps it, read-only when the grant mapping is.
"""
from __future__ import annotations

import mmap
import os
from typing import Any

from toolstack.xc import SocketTransport, Transport, XcError
from xenpy.public.grant_table import gntst_message

PAGE_SIZE = 4096


class GnttabError(XcError):
    """A failed gntdev request; `status` is the grant status (GNTST_*) when a map was refused."""

    def __init__(self, what: str, ret: int, status: int = 0) -> None:
        super().__init__(what, ret)
        self.status = status
        if status:
            self.args = (f"{self.args[0]}: {gntst_message(status)} ({status})",)


class Xengnttab:
    def __init__(self, transport: Transport | None = None) -> None:
        self.t = transport or SocketTransport()
        # handle -> (the mmap holding the page, the view given to the caller)
        self._maps: dict[int, tuple[mmap.mmap, memoryview | mmap.mmap]] = {}

    def _call(self, cmd: str, **args: Any) -> tuple[dict[str, Any], int | None]:
        reply, fd = self.t.call({"op": "gntdev", "cmd": cmd, **args})
        if reply["ret"] < 0:
            if fd is not None:
                os.close(fd)
            raise GnttabError(f"gntdev {cmd}", reply["ret"],
                              int(reply.get("out", {}).get("status", 0)))
        return reply["out"], fd

    def map_grant_ref(self, domid: int, ref: int, writable: bool = True
                      ) -> tuple[mmap.mmap | memoryview, int]:
        """Map grant `ref` of domain `domid`: (the page, 4096 bytes; handle for unmap)."""
        out, fd = self._call("map", domid=domid, ref=ref, writable=writable)
        assert fd is not None
        offset = int(out["offset"])
        gran = mmap.ALLOCATIONGRANULARITY
        base = offset - offset % gran
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        try:
            mm = mmap.mmap(fd, max(gran, PAGE_SIZE), mmap.MAP_SHARED, prot, offset=base)
        except OSError:
            self._call("unmap", index=out["index"])
            raise
        finally:
            os.close(fd)
        # With 4 KiB host pages the mapping is the page; otherwise a view of it.
        view: mmap.mmap | memoryview = mm if base == offset and gran == PAGE_SIZE else \
            memoryview(mm)[offset - base:offset - base + PAGE_SIZE]
        handle = int(out["index"])
        self._maps[handle] = (mm, view)
        return view, handle

    def unmap(self, handle: int) -> None:
        """Drop the mapping `handle` (the caller must have released any views of it)."""
        entry = self._maps.get(handle)
        if entry is not None:
            mm, view = entry
            if isinstance(view, memoryview):
                view.release()
            mm.close()              # BufferError while views remain: the mapping stays
            del self._maps[handle]
        self._call("unmap", index=handle)

    def close(self) -> None:
        for handle in list(self._maps):
            try:
                self.unmap(handle)
            except (XcError, BufferError):
                pass
        self.t.close()  # type: ignore[attr-defined]

    def __enter__(self) -> "Xengnttab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
