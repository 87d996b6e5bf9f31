"""xenstored's Unix socket: dom0 clients (the toolstack, xenstore-* commands).

One thread runs a selectors loop over the listening socket and every client.
Sockets are non-blocking: a client that stops reading gets its output queued
(up to a limit) instead of stalling xenstored for everyone else.
"""
from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from xenpy.public.io.xs_wire import XSD_SOCKMSG

from .connection import BadClient, Connection
from .store import PRIV_DOMID

if TYPE_CHECKING:
    from .core import XenStored

_MAX_QUEUED = 16 << 20  # bytes queued for one client before we give up on it
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Acceptor:
    """accept() that survives running out of file descriptors. With none left, accept()
    fails and the client stays queued: a level-triggered loop spins on it and the client
    waits forever. A descriptor kept spare is given up for a moment instead, the client
    accepted and closed at once (it sees its connection end and says so), and the spare
    taken back. `log` hears of each episode once."""

    def __init__(self, sock: socket.socket, name: str, log) -> None:
        self.sock, self.name, self.log = sock, name, log
        self._spare = self._open_spare()
        self._refusing = False

    @staticmethod
    def _open_spare() -> int:
        try:
            return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return -1

    def accept(self) -> socket.socket | None:
        """A new client, or None (none waiting, or one refused for want of descriptors).
        Raises OSError for anything else (the listener was closed)."""
        try:
            sock, _ = self.sock.accept()
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno not in _OUT_OF_FDS:
                raise
            self._refuse(e)
            return None
        if self._refusing:
            self._refusing = False
            self.log(f"{self.name}: file descriptors available again, accepting connections")
        if self._spare < 0:
            self._spare = self._open_spare()
        return sock

    def _refuse(self, e: OSError) -> None:
        if not self._refusing:
            self._refusing = True
            self.log(f"{self.name}: out of file descriptors ({os.strerror(e.errno)}): "
                     "refusing connections until some are free")
        if self._spare >= 0:
            os.close(self._spare)
            self._spare = -1
        try:
            sock, _ = self.sock.accept()
            sock.close()
        except OSError:
            time.sleep(0.01)                # not even the spare was enough: do not spin
        self._spare = self._open_spare()

    def close(self) -> None:
        if self._spare >= 0:
            os.close(self._spare)
            self._spare = -1


class SocketConnection(Connection):
    kind = "socket connection"

    def __init__(self, xs: XenStored, sock: socket.socket, server: SocketServer) -> None:
        super().__init__(xs, PRIV_DOMID)  # socket clients are dom0 userspace: privileged
        self.sock = sock
        self.server = server
        self.sel_events = 0               # what the selector waits for on this socket

    def send(self, type_: int, req_id: int, tx_id: int, payload: bytes) -> None:
        if self.out or self.closed or self.xs._tracefd is not None:
            super().send(type_, req_id, tx_id, payload)
            return
        # Nothing queued ahead of it (the usual case): straight to the socket, no queue.
        msg = XSD_SOCKMSG.pack(type_, req_id, tx_id, len(payload)) + payload
        try:
            n = self.sock.send(msg)
        except BlockingIOError:
            n = 0
        except OSError:
            self.xs._drop(self)
            return
        if n < len(msg):
            self.out.append((msg[n:], False))
            self.out_bytes += len(msg) - n
            self.flush()

    def flush(self) -> None:
        while self.out and not self.closed:
            msg, event = self.out[0]
            try:
                n = self.sock.send(msg)
            except BlockingIOError:
                break
            except OSError:
                self.xs._drop(self)
                return
            self.out_bytes -= n
            if n < len(msg):
                self.out[0] = (msg[n:], event)
                break
            self.out.popleft()
        if self.out and not self.closed:
            if self.out_bytes > _MAX_QUEUED:
                self.xs.log(f"xenstored: {self.describe()} does not read its replies; connection closed")
                self.xs._drop(self)
                return
            self.server.wake()  # let the loop wait for the socket to drain

    def close(self) -> None:
        super().close()
        self.server.retire(self)


class SocketServer:
    def __init__(self, xs: XenStored, path: Path) -> None:
        self.xs = xs
        self.path = path
        self._sel = selectors.DefaultSelector()
        self._conns: list[SocketConnection] = []
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._listener = self._bind(path)
        self._acceptor = Acceptor(self._listener, "xenstored", xs.log)
        self._thread = threading.Thread(target=self._run, name="xenstored-socket", daemon=True)

    @staticmethod
    def _bind(path: Path) -> socket.socket:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # stale socket of a xenstored that is gone
            else:
                raise RuntimeError(f"xenstored is already running at {path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"cannot create xenstored socket {path}: {exc.strerror or exc}") from None
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        return sock

    def start(self) -> None:
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()

    def wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # already awake (buffer full) or shutting down

    def stop(self) -> None:
        self._stop = True
        self.wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for conn in list(self._conns):
            self.xs.drop_connection(conn)
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()
        self._acceptor.close()
        self._sel.close()
        try:
            self.path.unlink()
        except OSError:
            pass

    def retire(self, conn: SocketConnection) -> None:
        """Close a client's socket. Only the loop thread may unregister it from the
        selector (and only then may its descriptor be reused), so other threads
        just shut it down and wake the loop."""
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            self._forget(conn)
            return
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.wake()

    def _forget(self, conn: SocketConnection) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        conn.sock.close()

    # -- the loop ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._sync_registrations()
            for key, mask in self._sel.select():
                if self._stop:
                    break
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except OSError:
                        pass
                else:
                    conn: SocketConnection = key.data
                    if mask & selectors.EVENT_WRITE:
                        with self.xs._serial:
                            conn.flush()
                    if mask & selectors.EVENT_READ and not conn.closed:
                        self._read(conn)

    def _sync_registrations(self) -> None:
        for conn in list(self._conns):
            if conn.closed:
                self._forget(conn)
                continue
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
            if conn.sel_events != events:     # cheaper than asking the selector every loop
                self._sel.modify(conn.sock, events, conn)
                conn.sel_events = events

    def _accept(self) -> None:
        try:
            sock = self._acceptor.accept()
        except OSError:
            return
        if sock is None:
            return
        sock.setblocking(False)
        conn = SocketConnection(self.xs, sock, self)
        self._conns.append(conn)
        self.xs.add_connection(conn)
        self._sel.register(sock, selectors.EVENT_READ, conn)
        conn.sel_events = selectors.EVENT_READ

    def _read(self, conn: SocketConnection) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.xs.drop_connection(conn)
            return
        msgs: list[tuple[int, int, int, bytes]] = []
        bad: BadClient | None = None
        with self.xs._serial:
            conn.inbuf += data
            try:
                msgs.extend(conn.messages())     # every complete request, in one go
            except BadClient as e:               # ... up to a broken frame
                bad = e
        for msg in msgs:
            if conn.closed:
                return
            try:
                self.xs.handle_message(conn, *msg)   # skips a connection stopped meanwhile
            except Exception as exc:  # keep serving everyone else
                self.xs.log(f"xenstored: dropping {conn.describe()} after an internal error: {exc!r}")
                self.xs.drop_connection(conn)
                return
        if bad is not None:
            self.xs.bad_client(conn, bad)
