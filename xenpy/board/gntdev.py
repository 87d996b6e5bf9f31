"""Dom0's /dev/xen/gntdev: map a domU's grant into dom0 userspace.

Dom0 runs no kernel here, so this is both the device and the part of Linux's gntdev driver
behind it. Mapping a grant is a real GNTTABOP_map_grant_ref by dom0 (GNTMAP_host_map, plus
GNTMAP_readonly for a read-only mapping, as gntdev asks when the mmap is not PROT_WRITE): the
granter's entry gets GTF_reading/GTF_writing and dom0 holds a maptrack handle until the unmap.
What userspace receives is a file descriptor of the granting domain's RAM (or grant-table)
memfd and the page's offset in it; a read-only mapping's descriptor is opened read-only, so
userspace cannot map it writable. Userspace maps that page (zero copy) and drops its mapping
before asking for the unmap, as libxengnttab does.

Linux's split between the MAP ioctl (reserve an index) and mmap() (map the grant) collapses
into one request here; the index (a page-aligned offset, as the ioctl returns) names the mapping
in the unmap. Errors are Linux's: a grant that fails to map is EINVAL (the GNTST_* status rides
along for diagnosis), an unknown index ENOENT. Closing the device unmaps whatever it still holds.

Over privcmd: `handle(hv, req, session)` answers {"op": "gntdev", "cmd": "map" | "unmap", ...}
with one device per connection (session["gntdev"]).
"""
from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xenpy.common import grant_table as gnttab
from xenpy.public import errno
from xenpy.public.grant_table import GNTMAP_host_map, GNTMAP_readonly, GNTST_okay, gntst_message
from xenpy.public.xen import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from xenpy.common.domain import Domain
    from xenpy.common.hypervisor import Hypervisor


class GntdevError(OSError):
    """A failed request: errno as Linux's gntdev gives it, and the grant status if there is one."""

    def __init__(self, err: int, status: int = GNTST_okay) -> None:
        msg = os.strerror(err) + (f" ({gntst_message(status)})" if status else "")
        super().__init__(err, msg)
        self.status = status


class _Balloon:
    """Dom0's frames that grant mappings occupy (Linux takes them from the balloon). Only
    their numbers matter: dom0's grant p2m is bookkeeping, there is no dom0 memory map."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.free: list[int] = []
        self.next = gnttab.HOST_FRAME_BASE

    def take(self) -> int:
        with self.lock:
            if self.free:
                return self.free.pop()
            self.next += 1
            return self.next - 1

    def give(self, gfn: int) -> None:
        with self.lock:
            self.free.append(gfn)


_BALLOONS: "weakref.WeakKeyDictionary[Domain, _Balloon]" = weakref.WeakKeyDictionary()
_BALLOONS_LOCK = threading.Lock()


def _balloon(dom0: "Domain") -> _Balloon:
    with _BALLOONS_LOCK:
        b = _BALLOONS.get(dom0)
        if b is None:
            b = _BALLOONS[dom0] = _Balloon()
        return b


@dataclass(frozen=True)
class GrantMapping:
    index: int          # gntdev offset naming this mapping (page aligned)
    domid: int
    ref: int
    readonly: bool
    handle: int         # dom0's maptrack handle in the hypervisor
    gfn: int            # the dom0 frame it occupies
    fd: int             # the page's backing file (owned by the hypervisor's mapping)
    offset: int         # the page's offset in that file


class GntdevDevice:
    """One open of /dev/xen/gntdev."""

    def __init__(self, hv: "Hypervisor") -> None:
        self.dom0 = hv.domains[0]
        self._lock = threading.Lock()
        self._maps: dict[int, GrantMapping] = {}
        self._next_index = 0
        self._closed = False

    def map_grant_ref(self, domid: int, ref: int, writable: bool = True) -> GrantMapping:
        with self._lock:
            if self._closed:
                raise GntdevError(errno.EBADF)
        balloon = _balloon(self.dom0)
        gfn = balloon.take()
        flags = GNTMAP_host_map | (0 if writable else GNTMAP_readonly)
        r = gnttab.map_grant_ref(self.dom0, gfn << PAGE_SHIFT, flags, ref, domid)
        if r.status != GNTST_okay:
            balloon.give(gfn)
            raise GntdevError(errno.EINVAL, r.status)
        assert r.page is not None and r.page.fd is not None
        with self._lock:
            if not self._closed:
                index = self._next_index
                self._next_index += PAGE_SIZE
                m = self._maps[index] = GrantMapping(index, domid, ref, not writable, r.handle,
                                                     gfn, r.page.fd, r.page.offset)
                return m
        self._unmap_grant(r.handle, gfn)        # closed meanwhile: undo
        raise GntdevError(errno.EBADF)

    def unmap(self, index: int) -> None:
        with self._lock:
            m = self._maps.pop(index, None)
        if m is None:
            raise GntdevError(errno.ENOENT)
        self._unmap_grant(m.handle, m.gfn)

    def _unmap_grant(self, handle: int, gfn: int) -> None:
        st = gnttab.unmap_grant_ref(self.dom0, gfn << PAGE_SHIFT, 0, handle)
        if st != GNTST_okay:       # only a hypervisor bug gets here: dom0 owns its handles
            raise GntdevError(errno.EINVAL, st)
        _balloon(self.dom0).give(gfn)

    @property
    def mappings(self) -> list[GrantMapping]:
        with self._lock:
            return list(self._maps.values())

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            maps, self._maps = list(self._maps.values()), {}
        for m in maps:
            self._unmap_grant(m.handle, m.gfn)

    def __enter__(self) -> "GntdevDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def handle(hv: "Hypervisor", req: dict[str, Any], session: dict[str, Any]
           ) -> tuple[dict[str, Any], int | None]:
    """privcmd's op "gntdev": (reply, fd to pass). A map passes the page's backing descriptor."""
    dev = session.get("gntdev")
    if dev is None:
        dev = session["gntdev"] = GntdevDevice(hv)
    cmd = req.get("cmd")
    try:
        if cmd == "map":
            m = dev.map_grant_ref(int(req["domid"]), int(req["ref"]),
                                  bool(req.get("writable", True)))
            return {"ret": 0, "out": {"index": m.index, "offset": m.offset, "size": PAGE_SIZE,
                                      "readonly": m.readonly, "handle": m.handle}}, m.fd
        if cmd == "unmap":
            dev.unmap(int(req["index"]))
            return {"ret": 0, "out": {}}, None
    except GntdevError as e:
        return {"ret": -(e.errno or errno.EINVAL), "out": {"status": e.status}}, None
    except (KeyError, TypeError, ValueError):
        return {"ret": -errno.EINVAL, "out": {}}, None
    return {"ret": -errno.ENOSYS, "out": {}}, None
