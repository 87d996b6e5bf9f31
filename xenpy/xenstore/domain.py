"""Domains and their ring connections (tools/xenstored/domain.c).

A guest talks to xenstored through one shared page, struct
xenstore_domain_interface: a 1024-byte request ring the guest produces into, a
1024-byte response ring xenstored produces into, four free-running indexes
(byte offsets modulo 2^32, masked with MASK_XENSTORE_IDX to index the rings),
and, since Xen 4.5, the server_features/connection/error fields. The page is
guest memory: every index read from it is checked before use.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenpy.public.io.xs_wire import (
    MASK_XENSTORE_IDX,
    XENSTORE_CONNECTED,
    XENSTORE_ERROR_NONE,
    XENSTORE_ERROR_RINGIDX,
    XENSTORE_RECONNECT,
    XENSTORE_RING_SIZE,
    XENSTORE_SERVER_FEATURE_ERROR,
    XENSTORE_SERVER_FEATURE_RECONNECTION,
    XS_RING_CONNECTION_OFF,
    XS_RING_ERROR_OFF,
    XS_RING_INTERFACE_SIZE,
    XS_RING_LEGACY_SIZE,
    XS_RING_REQ_CONS_OFF,
    XS_RING_REQ_OFF,
    XS_RING_REQ_PROD_OFF,
    XS_RING_RSP_CONS_OFF,
    XS_RING_RSP_OFF,
    XS_RING_RSP_PROD_OFF,
    XS_RING_SERVER_FEATURES_OFF,
)

from .connection import XENSTORE_FEATURES, BadClient, Connection
from .store import Quota

if TYPE_CHECKING:
    from .core import XenStored

_U32 = struct.Struct("<I")
_MASK32 = 0xFFFFFFFF


@dataclass
class DomainInfo:
    """What xenstored knows of a domain, introduced or not (struct domain)."""

    domid: int
    quota: Quota
    features: int = XENSTORE_FEATURES
    introduced: bool = False
    shutdown: bool = False  # @releaseDomain already sent for its shutdown
    conn: Connection | None = None
    extra: dict[str, int] = field(default_factory=dict)  # soft quotas


class RingConnection(Connection):
    """A guest's connection through its xenstore_domain_interface page.

    The board calls kick() when the guest signals the store event channel;
    `notify` is called (never with xenstored's lock held) to signal it back."""

    kind = "ring"

    def __init__(self, xs: XenStored, domain: DomainInfo, page: memoryview, notify: Callable[[], None]) -> None:
        super().__init__(xs, domain.domid, domain)
        page = page.cast("B") if page.format != "B" or page.ndim != 1 else page
        if len(page) < XS_RING_LEGACY_SIZE:
            raise ValueError(f"xenstore ring page of domain {domain.domid} is {len(page)} bytes, "
                             f"need at least {XS_RING_LEGACY_SIZE}")
        if page.readonly:
            raise ValueError(f"xenstore ring page of domain {domain.domid} is read-only")
        self.page = page
        self.notify = notify
        self.modern = len(page) >= XS_RING_INTERFACE_SIZE  # has features/connection/error

    # -- page fields -----------------------------------------------------------
    def _get(self, off: int) -> int:
        return _U32.unpack_from(self.page, off)[0]

    def _set(self, off: int, value: int) -> None:
        _U32.pack_into(self.page, off, value & _MASK32)

    def advertise(self) -> None:
        if self.modern:
            self._set(XS_RING_SERVER_FEATURES_OFF, self.features)

    def reconnect_requested(self) -> bool:
        return (self.modern and bool(self.features & XENSTORE_SERVER_FEATURE_RECONNECTION)
                and self._get(XS_RING_CONNECTION_OFF) == XENSTORE_RECONNECT)

    def set_connected(self) -> None:
        if self.modern:
            self._set(XS_RING_CONNECTION_OFF, XENSTORE_CONNECTED)

    def set_error(self, err: int) -> None:
        if self.modern and self.features & XENSTORE_SERVER_FEATURE_ERROR:
            self._set(XS_RING_ERROR_OFF, err)

    def reset_ring(self) -> None:
        """Empty both rings (XS_INTRODUCE and reconnection do this)."""
        for off in (XS_RING_REQ_CONS_OFF, XS_RING_REQ_PROD_OFF, XS_RING_RSP_CONS_OFF, XS_RING_RSP_PROD_OFF):
            self._set(off, 0)

    def clear_error(self) -> None:
        self.ignored = False
        self.set_error(XENSTORE_ERROR_NONE)

    # -- byte streams ----------------------------------------------------------
    def read_ring(self) -> int:
        """Move all request bytes the guest produced into inbuf; returns the count."""
        cons = self._get(XS_RING_REQ_CONS_OFF)
        prod = self._get(XS_RING_REQ_PROD_OFF)
        avail = (prod - cons) & _MASK32
        if avail > XENSTORE_RING_SIZE:
            raise BadClient(XENSTORE_ERROR_RINGIDX, f"request ring indexes cons={cons:#x} prod={prod:#x}")
        got = 0
        while got < avail:
            start = MASK_XENSTORE_IDX(cons + got)
            chunk = min(avail - got, XENSTORE_RING_SIZE - start)
            self.inbuf += self.page[XS_RING_REQ_OFF + start:XS_RING_REQ_OFF + start + chunk]
            got += chunk
        if got:
            self._set(XS_RING_REQ_CONS_OFF, cons + got)
        return got

    def flush(self) -> None:
        """Write as much queued output as the response ring has room for."""
        if self.closed or self.ignored or not self.out:
            return
        cons = self._get(XS_RING_RSP_CONS_OFF)
        prod = self._get(XS_RING_RSP_PROD_OFF)
        used = (prod - cons) & _MASK32
        if used > XENSTORE_RING_SIZE:
            self.xs.bad_client(self, BadClient(XENSTORE_ERROR_RINGIDX,
                                               f"response ring indexes cons={cons:#x} prod={prod:#x}"))
            return
        space = XENSTORE_RING_SIZE - used
        written = 0
        while self.out and space:
            msg, event = self.out[0]
            n = min(space, len(msg))
            pos = 0
            while pos < n:
                start = MASK_XENSTORE_IDX(prod + written + pos)
                chunk = min(n - pos, XENSTORE_RING_SIZE - start)
                self.page[XS_RING_RSP_OFF + start:XS_RING_RSP_OFF + start + chunk] = msg[pos:pos + chunk]
                pos += chunk
            written += n
            space -= n
            self.out_bytes -= n
            if n == len(msg):
                self.out.popleft()
            else:
                self.out[0] = (msg[n:], event)
        if written:
            self._set(XS_RING_RSP_PROD_OFF, prod + written)
            self.xs.want_notify(self)

    def kick(self) -> None:
        """The guest signalled the store event channel."""
        self.xs.ring_kick(self)
