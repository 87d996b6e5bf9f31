"""What xenstored keeps per client connection, and the wire framing shared by
the socket and ring transports."""
from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from xenpy.public.io.xs_wire import (
    XENSTORE_ERROR_PROTO,
    XENSTORE_PAYLOAD_MAX,
    XENSTORE_SERVER_FEATURE_DOMID_ANY,
    XENSTORE_SERVER_FEATURE_ERROR,
    XENSTORE_SERVER_FEATURE_RECONNECTION,
    XENSTORE_SERVER_FEATURE_WATCHDEPTH,
    XSD_SOCKMSG,
    XSD_SOCKMSG_SIZE,
    XsType,
)

from .store import PRIV_DOMID, domain_path
from .transaction import Transaction
from .watch import Watch

if TYPE_CHECKING:
    from .core import XenStored
    from .domain import DomainInfo

# The ring protocol features this xenstored offers (xenstored's XENSTORE_FEATURES
# plus ring reconnection, which the ring transport implements).
XENSTORE_FEATURES = (XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR
                     | XENSTORE_SERVER_FEATURE_WATCHDEPTH | XENSTORE_SERVER_FEATURE_DOMID_ANY)


class BadClient(Exception):
    """The peer broke the framing; `err` is the ring error code to report."""

    def __init__(self, err: int, why: str) -> None:
        super().__init__(why)
        self.err = err


class Connection:
    """One client: a dom0 socket or a domain's ring. Only touched with the
    XenStored lock held."""

    kind = "connection"

    def __init__(self, xs: XenStored, domid: int, domain: DomainInfo | None = None) -> None:
        self.xs = xs
        self.id = domid
        self.domain = domain
        self.target: int | None = None  # SET_TARGET: acts for this domain too
        self.watches: list[Watch] = []
        self.transactions: dict[int, Transaction] = {}
        self.next_tx_id = 0
        self.inbuf = bytearray()
        self.out: deque[tuple[bytes, bool]] = deque()  # (message, is_watch_event)
        self.out_bytes = 0
        self.ignored = False  # stopped after a protocol error (rings wait for a reconnect)
        self.closed = False

    @property
    def privileged(self) -> bool:
        return self.id == PRIV_DOMID

    @property
    def features(self) -> int:
        return self.domain.features if self.domain else XENSTORE_FEATURES

    def implicit_path(self) -> str:
        """Base of relative paths: the domain's home; sockets belong to the store domain (0)."""
        return domain_path(self.domain.domid if self.domain else PRIV_DOMID)

    def describe(self) -> str:
        return f"{self.kind} of domain {self.id}"

    def outstanding(self) -> int:
        return sum(1 for _, event in self.out if not event)

    # -- framing ---------------------------------------------------------------
    def messages(self) -> Iterator[tuple[int, int, int, bytes]]:
        """Complete requests buffered in `inbuf`, removed as they are yielded."""
        while len(self.inbuf) >= XSD_SOCKMSG_SIZE and not self.closed and not self.ignored:
            type_, req_id, tx_id, length = XSD_SOCKMSG.unpack_from(self.inbuf)
            if length > XENSTORE_PAYLOAD_MAX:
                raise BadClient(XENSTORE_ERROR_PROTO, f"message of {length} bytes (limit {XENSTORE_PAYLOAD_MAX})")
            end = XSD_SOCKMSG_SIZE + length
            if len(self.inbuf) < end:
                return
            payload = bytes(self.inbuf[XSD_SOCKMSG_SIZE:end])
            del self.inbuf[:end]
            yield type_, req_id, tx_id, payload

    def has_message(self) -> bool:
        if len(self.inbuf) < XSD_SOCKMSG_SIZE:
            return False
        length = struct.unpack_from("<I", self.inbuf, 12)[0]
        return length > XENSTORE_PAYLOAD_MAX or len(self.inbuf) >= XSD_SOCKMSG_SIZE + length

    # -- output ----------------------------------------------------------------
    def send(self, type_: int, req_id: int, tx_id: int, payload: bytes) -> None:
        if self.closed:
            return
        msg = XSD_SOCKMSG.pack(type_, req_id, tx_id, len(payload)) + payload
        self.xs.trace_io(self, "OUT", type_, payload)
        self.out.append((msg, False))
        self.out_bytes += len(msg)
        self.flush()

    def send_event(self, payload: bytes, memory_limit: int) -> None:
        """Queue a WATCH_EVENT unless an identical one is still pending (not for
        special "@" events) or the domain is over its memory quota: xenstored
        drops the event in both cases."""
        if self.closed or self.ignored:
            return
        msg = XSD_SOCKMSG.pack(XsType.WATCH_EVENT, 0, 0, len(payload)) + payload
        if not payload.startswith(b"@") and any(m == msg for m, event in self.out if event):
            return
        if memory_limit and self.out_bytes + len(msg) >= memory_limit:
            return
        self.out.append((msg, True))
        self.out_bytes += len(msg)
        self.flush()

    def reset(self) -> None:
        """Forget watches, transactions and buffered data (XS_INTRODUCE, errors, reconnection)."""
        self.watches.clear()
        self.transactions.clear()
        self.inbuf.clear()
        self.out.clear()
        self.out_bytes = 0

    def flush(self) -> None:
        """Move queued output to the transport (overridden)."""

    def close(self) -> None:
        self.closed = True
        self.reset()


class LocalConnection(Connection):
    """An in-process client, used by tests and by dom0 code that lives in the
    board process. Replies and events wait in `out` until taken."""

    kind = "local connection"

    def __init__(self, xs: XenStored, domid: int, domain: DomainInfo | None = None) -> None:
        super().__init__(xs, domid, domain)
        self._req_id = 0
        self.events: list[tuple[str, str]] = []  # (path, token) of WATCH_EVENTs received

    def request(self, type_: int, payload: bytes = b"", tx_id: int = 0) -> tuple[int, bytes]:
        """Send one request; returns (reply type, reply payload). Watch events
        that arrive meanwhile are appended to `events`."""
        self._req_id += 1
        self.xs.handle_message(self, type_, self._req_id, tx_id, payload)
        reply = (int(XsType.ERROR), b"EIO\0")  # a closed connection answers nothing
        for t, _, _, p in self.take():
            if t != XsType.WATCH_EVENT:
                reply = (t, p)
        return reply

    def poll_events(self) -> list[tuple[str, str]]:
        """Watch events received so far (and forget them)."""
        self.take()
        events, self.events = self.events, []
        return events

    def take(self) -> list[tuple[int, int, int, bytes]]:
        """Everything queued for this connection; watch events also go to `events`."""
        with self.xs._serial:
            msgs = []
            while self.out:
                msg, _ = self.out.popleft()
                type_, req_id, tx_id, length = XSD_SOCKMSG.unpack_from(msg)
                payload = msg[XSD_SOCKMSG_SIZE:]
                if type_ == XsType.WATCH_EVENT:
                    path, token = payload.split(b"\0")[:2]
                    self.events.append((path.decode("latin-1"), token.decode("latin-1")))
                msgs.append((type_, req_id, tx_id, payload))
            self.out_bytes = 0
            return msgs
