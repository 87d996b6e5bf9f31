"""XenStore client library for dom0 userspace, like libxenstore (tools/libs/store/xs.c).

Talks the XenStore wire protocol to xenstored's Unix socket. Whichever thread
is waiting (for a reply or a watch event) reads the socket itself and sorts
what arrives into replies and watch events; other waiting threads take theirs
from those queues. So a request costs no thread switch in the client, and a
client can still wait for watch events while other threads make requests.
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from xenpy.public.io.xs_wire import (
    ERRNO_OF_NAME,
    XENSTORE_PAYLOAD_MAX,
    XSD_SOCKMSG,
    XSD_SOCKMSG_SIZE,
    XsType,
)
from xenpy.rundir import board_died_message, xenstored_path

T = TypeVar("T")
XBT_NULL = 0
_READ_BATCH = 256     # reads sent together by read_many()


class XsError(Exception):
    """A XenStore request failed with `errno_name` (e.g. "ENOENT")."""

    def __init__(self, errno_name: str, message: str | None = None) -> None:
        self.errno_name = errno_name
        self.errno = ERRNO_OF_NAME.get(errno_name, ERRNO_OF_NAME["EINVAL"])
        super().__init__(message or f"{errno_name}: {os.strerror(self.errno)}")

    @property
    def strerror(self) -> str:
        return os.strerror(self.errno)


class XsConnectError(XsError):
    """No xenstored is listening where we looked."""

    def __init__(self, path: Path, reason: OSError) -> None:
        self.path = path
        died = board_died_message()
        super().__init__("EIO", died or f"could not connect to xenstored at {path}: is the "
                                        "board running? (start it with 'xenpy boot')")
        self.reason = reason


def _enc(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def _dec(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _z(*parts: str | bytes) -> bytes:
    return b"".join(_enc(p) + b"\0" for p in parts)


def _split(payload: bytes) -> list[str]:
    return [_dec(s) for s in payload.split(b"\0")[:-1]]


class XsClient:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else xenstored_path()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise XsConnectError(self.path, exc) from None
        self._sock = sock
        self._request_lock = threading.Lock()   # one request on the wire at a time
        self._io_lock = threading.Lock()        # held by the thread reading the socket
        self._cv = threading.Condition()        # guards the queues below
        self._replies: deque[tuple[int, bytes]] = deque()
        self._events: deque[tuple[str, str]] = deque()
        self._buf = bytearray()
        self._closed = False
        self._waiters = 0                       # threads waiting on _cv for another's read
        self._req_id = 0

    # -- plumbing ------------------------------------------------------------------
    def _lost(self) -> XsError:
        return XsError("EIO", f"lost connection to xenstored at {self.path}")

    def _pump(self, timeout: float | None) -> None:
        """With _io_lock held: read what the socket has (waiting up to `timeout` s for it)
        and queue the complete messages."""
        if timeout is not None:
            try:
                ready, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
            except (OSError, ValueError):
                ready = [self._sock]            # closed under us: recv says so
            if not ready:
                return
        try:
            data = self._sock.recv(65536)
        except OSError:
            data = b""
        buf = self._buf
        with self._cv:
            if not data:
                self._closed = True
            buf += data
            while len(buf) >= XSD_SOCKMSG_SIZE:
                type_, _, _, length = XSD_SOCKMSG.unpack_from(buf)
                if len(buf) < XSD_SOCKMSG_SIZE + length:
                    break
                payload = bytes(buf[XSD_SOCKMSG_SIZE:XSD_SOCKMSG_SIZE + length])
                del buf[:XSD_SOCKMSG_SIZE + length]
                if type_ == XsType.WATCH_EVENT:
                    fields = _split(payload)
                    if len(fields) >= 2:
                        self._events.append((fields[0], fields[1]))
                else:
                    self._replies.append((type_, payload))
            if self._waiters:
                self._cv.notify_all()

    def _wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Until ready() (checked with _cv held) or the timeout; reads the socket when no
        other thread does. Returns ready()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cv:
                if ready():
                    return True
                if self._closed:
                    return False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self._io_lock.acquire(blocking=False):
                try:
                    self._pump(left)
                finally:
                    self._io_lock.release()
                if self._waiters:
                    with self._cv:
                        self._cv.notify_all()   # a waiter may take over the reading
            else:
                with self._cv:
                    if not ready() and not self._closed:
                        # Bounded: the reader may have stopped just before we waited.
                        self._waiters += 1
                        try:
                            self._cv.wait(0.05 if left is None else min(left, 0.05))
                        finally:
                            self._waiters -= 1

    def request(self, type_: XsType, payload: bytes = b"", tx: int = XBT_NULL) -> bytes:
        """Send one request and wait for its reply payload; raises XsError."""
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            raise XsError("E2BIG")
        with self._request_lock:
            with self._cv:
                if self._closed:
                    raise self._lost()
            self._req_id = (self._req_id + 1) & 0xFFFFFFFF
            try:
                self._sock.sendall(XSD_SOCKMSG.pack(type_, self._req_id, tx, len(payload)) + payload)
            except OSError:
                raise self._lost() from None
            if not self._wait(lambda: bool(self._replies), None):
                raise self._lost()
            with self._cv:
                rtype, rpayload = self._replies.popleft()
        if rtype == XsType.ERROR:
            name = rpayload.split(b"\0")[0].decode("ascii", "replace")
            raise XsError(name if name in ERRNO_OF_NAME else "EINVAL")
        if rtype != type_:
            raise XsError("EBADF", f"xenstored answered {rtype} to a request of type {int(type_)}")
        return rpayload

    def read_many(self, paths: Iterable[str], tx: int = XBT_NULL) -> list[bytes | XsError]:
        """Read several nodes in one round trip: the requests go out together and xenstored
        answers a connection's requests in order (each reply carries its request's id). Each
        result is the node's value or the XsError its read got (ENOENT for a missing node).
        `xl list` reads every domain's name this way instead of one round trip a domain."""
        paths = list(paths)
        results: list[bytes | XsError] = []
        for at in range(0, len(paths), _READ_BATCH):
            results += self._read_batch(paths[at:at + _READ_BATCH], tx)
        return results

    def _read_batch(self, paths: list[str], tx: int) -> list[bytes | XsError]:
        if not paths:
            return []
        msgs, ids = [], []
        with self._request_lock:
            with self._cv:
                if self._closed:
                    raise self._lost()
            for path in paths:
                payload = _z(path)
                self._req_id = (self._req_id + 1) & 0xFFFFFFFF
                ids.append(self._req_id)
                msgs.append(XSD_SOCKMSG.pack(XsType.READ, self._req_id, tx, len(payload)) + payload)
            try:
                self._sock.sendall(b"".join(msgs))
            except OSError:
                raise self._lost() from None
            if not self._wait(lambda: len(self._replies) >= len(paths), None):
                raise self._lost()
            with self._cv:
                replies = [self._replies.popleft() for _ in paths]
        out: list[bytes | XsError] = []
        for rtype, rpayload in replies:
            if rtype == XsType.ERROR:
                name = rpayload.split(b"\0")[0].decode("ascii", "replace")
                out.append(XsError(name if name in ERRNO_OF_NAME else "EINVAL"))
            elif rtype != XsType.READ:
                out.append(XsError("EBADF", f"xenstored answered {rtype} to a read"))
            else:
                out.append(rpayload)
        return out

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._sock.close()

    def __enter__(self) -> XsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the store ------------------------------------------------------------------
    def read(self, path: str, tx: int = XBT_NULL) -> bytes:
        return self.request(XsType.READ, _z(path), tx)

    def write(self, path: str, value: bytes | str, tx: int = XBT_NULL) -> None:
        self.request(XsType.WRITE, _z(path) + _enc(value), tx)

    def mkdir(self, path: str, tx: int = XBT_NULL) -> None:
        self.request(XsType.MKDIR, _z(path), tx)

    def rm(self, path: str, tx: int = XBT_NULL) -> None:
        self.request(XsType.RM, _z(path), tx)

    def directory(self, path: str, tx: int = XBT_NULL) -> list[str]:
        try:
            return _split(self.request(XsType.DIRECTORY, _z(path), tx))
        except XsError as err:
            if err.errno_name != "E2BIG":
                raise
        return self._directory_part(path, tx)

    def _directory_part(self, path: str, tx: int) -> list[str]:
        """Children lists too long for one reply come in parts; restart if the
        node changed (its generation count differs) between parts."""
        while True:
            data = b""
            gen = None
            while True:
                reply = self.request(XsType.DIRECTORY_PART, _z(path, str(len(data))), tx)
                part_gen, _, rest = reply.partition(b"\0")
                if gen is not None and part_gen != gen:
                    break
                gen = part_gen
                data += rest
                if len(data) <= 1 or data[-2:-1] == b"\0":
                    if len(data) > 1:
                        data = data[:-1]
                    return _split(data) if data not in (b"", b"\0") else []

    def get_perms(self, path: str, tx: int = XBT_NULL) -> list[str]:
        return _split(self.request(XsType.GET_PERMS, _z(path), tx))

    def set_perms(self, path: str, perms: Iterable[str], tx: int = XBT_NULL) -> None:
        self.request(XsType.SET_PERMS, _z(path, *perms), tx)

    # -- watches --------------------------------------------------------------------
    def watch(self, path: str, token: str, depth: int | None = None) -> None:
        args = (path, token) if depth is None else (path, token, str(depth))
        self.request(XsType.WATCH, _z(*args))

    def unwatch(self, path: str, token: str) -> None:
        self.request(XsType.UNWATCH, _z(path, token))

    def read_watch(self, timeout: float | None = None) -> tuple[str, str] | None:
        """The next (path, token) watch event; None on timeout. Raises XsError
        once the connection is gone and no events are left."""
        self._wait(lambda: bool(self._events), timeout)
        with self._cv:
            if self._events:
                return self._events.popleft()
            if self._closed:
                raise self._lost()
            return None

    def reset_watches(self) -> None:
        self.request(XsType.RESET_WATCHES, _z(""))

    # -- transactions ---------------------------------------------------------------
    def transaction_start(self) -> int:
        return int(self.request(XsType.TRANSACTION_START, _z("")).rstrip(b"\0"))

    def transaction_end(self, tx: int, abort: bool = False) -> None:
        """Commit (or abort) `tx`; XsError("EAGAIN") means a conflict: retry."""
        self.request(XsType.TRANSACTION_END, _z("F" if abort else "T"), tx)

    def transact(self, fn: Callable[[int], T]) -> T:
        """Run fn(tx) in a transaction, retrying it from scratch on EAGAIN."""
        while True:
            tx = self.transaction_start()
            try:
                result = fn(tx)
            except BaseException:
                try:
                    self.transaction_end(tx, abort=True)
                except XsError:
                    pass
                raise
            try:
                self.transaction_end(tx)
            except XsError as err:
                if err.errno_name == "EAGAIN":
                    continue
                raise
            return result

    # -- domains --------------------------------------------------------------------
    def introduce(self, domid: int, gfn: int, port: int) -> None:
        self.request(XsType.INTRODUCE, _z(str(domid), str(gfn), str(port)))

    def release(self, domid: int) -> None:
        self.request(XsType.RELEASE, _z(str(domid)))

    def resume(self, domid: int) -> None:
        self.request(XsType.RESUME, _z(str(domid)))

    def set_target(self, domid: int, target: int) -> None:
        self.request(XsType.SET_TARGET, _z(str(domid), str(target)))

    def get_domain_path(self, domid: int) -> str:
        return _dec(self.request(XsType.GET_DOMAIN_PATH, _z(str(domid))).rstrip(b"\0"))

    def is_domain_introduced(self, domid: int) -> bool:
        return self.request(XsType.IS_DOMAIN_INTRODUCED, _z(str(domid))).startswith(b"T")

    # -- features, quotas, control --------------------------------------------------
    def get_features(self, domid: int | None = None) -> int:
        args = () if domid is None else (str(domid),)
        return int(self.request(XsType.GET_FEATURE, _z(*args)).rstrip(b"\0"))

    def set_features(self, domid: int, features: int) -> None:
        self.request(XsType.SET_FEATURE, _z(str(domid), str(features)))

    def get_quota(self, name: str | None = None, domid: int | None = None) -> str:
        args = [] if name is None else [name] if domid is None else [str(domid), name]
        return _dec(self.request(XsType.GET_QUOTA, _z(*args)).rstrip(b"\0"))

    def set_quota(self, name: str, value: int, domid: int | None = None) -> None:
        args = [name, str(value)] if domid is None else [str(domid), name, str(value)]
        self.request(XsType.SET_QUOTA, _z(*args))

    def control(self, *args: str) -> str:
        return _dec(self.request(XsType.CONTROL, _z(*args)).rstrip(b"\0"))
