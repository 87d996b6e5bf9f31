"""xenstored: request dispatch and the operations on the tree
(tools/xenstored/core.c, with domain.c's domain requests).

One lock serialises every request, as xenstored's single thread does. Callbacks
out of xenstored (a guest's `notify`, the board's `on_introduce`) are only ever
called with that lock released, so the board may hold its own locks while it
calls kick() or release_domain().
"""
from __future__ import annotations

import errno
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from xenpy import trace
from xenpy.public.io.xs_wire import (
    ERRNO_OF_NAME,
    NAME_OF_ERRNO,
    XENSTORE_ABS_PATH_MAX,
    XENSTORE_PAYLOAD_MAX,
    XENSTORE_RECONNECT,
    XENSTORE_SERVER_FEATURE_DOMID_ANY,
    XENSTORE_SERVER_FEATURE_WATCHDEPTH,
    XS_RING_CONNECTION_OFF,
    XsType,
)

from .connection import XENSTORE_FEATURES, BadClient, Connection, LocalConnection
from .domain import DomainInfo, RingConnection
from .persist import Persist
from .store import (
    DOMID_ANY,
    DOMID_SELF,
    PRIV_DOMID,
    XS_PERM_IGNORE,
    XS_PERM_NONE,
    XS_PERM_OWNER,
    XS_PERM_READ,
    XS_PERM_WRITE,
    Node,
    Perm,
    Quota,
    Store,
    XsErr,
    basename,
    child_name,
    domain_path,
    get_parent,
    parse_perm,
    quota_exceeded,
    valid_chars,
)
from .transaction import Access, Transaction, finalize
from .watch import Match, Watch

DOMID_FIRST_RESERVED = 0x7FF0
_ALL_PERMS = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER
_LOCAL_DOMAIN = re.compile(r"/local/domain/\d{1,5}/")
_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?\d+)")
_DOMID = re.compile(r"[ \t\n\v\f\r]*[+-]?\d+")
_SOFT_MEMORY = 2 * 1024 * 1024  # xenstored's default soft memory quota


def atoi(text: str) -> int:
    """C atoi(): leading number of the string, 0 if none."""
    m = _ATOI.match(text)
    if not m:
        return 0
    value = int(m.group(1)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def parse_domid(text: str) -> int:
    """xenstored's parse_domid: the whole string is a decimal number <= 65535
    (strtoul, so "" is 0 and "-1" is out of range)."""
    if text == "":
        return 0
    if not _DOMID.fullmatch(text):
        raise XsErr("EINVAL")
    value = int(text.strip())
    if value < 0:
        value &= (1 << 64) - 1
    if value > 65535:
        raise XsErr("EINVAL")
    return value


def strings(payload: bytes) -> list[str]:
    """The NUL-terminated strings of a payload (bytes after the last NUL are ignored)."""
    return [s.decode("latin-1") for s in payload.split(b"\0")[:-1]]


def onearg(payload: bytes) -> str | None:
    """The payload as one string: exactly one NUL, at the end."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        return None
    return payload[:-1].decode("latin-1")


def _z(text: str) -> bytes:
    return text.encode("latin-1") + b"\0"


OK = b"OK\0"


@dataclass
class _Request:
    conn: Connection
    acc: Access
    payload: bytes
    events: list[tuple[Connection, bytes]] = field(default_factory=list)
    after_reply: list[tuple[Connection, bytes]] = field(default_factory=list)
    deferred: Callable[[], object] | None = None  # run with the lock released
    finish: Callable[[object], bytes] | None = None

    @property
    def tx(self) -> Transaction | None:
        return self.acc.tx


class _Serial:
    """The xenstored lock. Notifications requested while it is held run after
    the outermost holder releases it. `outer`: a lock taken first (a
    deterministic board's lock, so a request lands between two guest rounds)."""

    def __init__(self, outer=None) -> None:
        self._lock = threading.RLock()
        self._outer = outer
        self._depth = 0
        self._pending: dict[int, Callable[[], None]] = {}

    def __enter__(self) -> None:
        if self._outer is not None:
            self._outer.acquire()
        self._lock.acquire()
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth:
            self._lock.release()
            if self._outer is not None:
                self._outer.release()
            return
        todo = list(self._pending.values())
        self._pending.clear()
        self._lock.release()
        try:
            for fn in todo:
                fn()
        finally:
            if self._outer is not None:
                self._outer.release()

    def later(self, key: int, fn: Callable[[], None]) -> None:
        self._pending[key] = fn


class XenStored:
    """The XenStore daemon of one board.

    `state_path`: where the store is kept across restarts (None: memory only).
    `on_introduce(domid, gfn, port)`: called (without xenstored's lock) when dom0
    sends XS_INTRODUCE; the board maps the guest's ring page, calls connect_ring()
    and returns its result. Raising OSError (its errno), returning an errno name
    or a nonzero errno, or connecting nothing makes the request fail.
    """

    def __init__(self, state_path: Path | None, on_introduce: Callable[[int, int, int], object] | None = None,
                 quota: Quota | None = None, log: Callable[[str], None] = print,
                 board_lock=None) -> None:
        self.quota = quota or Quota()
        self.soft_memory = _SOFT_MEMORY
        self.on_introduce = on_introduce
        self.log = log
        self.store = Store()
        self.connections: list[Connection] = []
        self.domains: dict[int, DomainInfo] = {}
        self._serial = _Serial(board_lock)
        self._server = None
        self._closing = threading.Lock()     # close() from two threads: the second waits
        self._persist = Persist(Path(state_path), log) if state_path is not None else None
        self._save_failing = False
        loaded = self._persist.load() if self._persist else None
        if loaded is not None:
            self.store.load(*loaded)
        else:
            self.store.setup_structure()
        if self._persist:
            try:
                self._persist.snapshot(self.store)
            except OSError as exc:
                self.log(f"xenstored: cannot save state to {state_path}: {exc.strerror or exc}; "
                         "the store will not survive a restart")
                self._persist = None
        dom0 = self._domain(PRIV_DOMID)
        dom0.introduced = True  # the control domain is always connected
        # The trace log (xenstored -T FILE, `xenstore-control log|logfile`): C xenstored's
        # switches, "obj" and "io" on by default; nothing is written until a file is named.
        self.tracefile: Path | None = None
        self._tracefd = None
        self.trace_flags = {"obj", "io"}

    # == public API for the board ================================================
    def serve_socket(self, path: Path) -> None:
        """Serve dom0 clients on a Unix socket, in a background thread."""
        from .server import SocketServer

        if self._server is not None:
            raise RuntimeError(f"xenstored already serves {self._server.path}")
        self._server = SocketServer(self, Path(path))
        self._server.start()

    def connect_ring(self, domid: int, page: memoryview, notify: Callable[[], None]) -> RingConnection:
        """Connect domain `domid` through its ring page (what XS_INTRODUCE asks the
        board for; the board may also call it directly, e.g. for dom0less guests).
        The board calls .kick() on the result whenever the guest notifies."""
        if domid == PRIV_DOMID or domid >= DOMID_FIRST_RESERVED:
            raise ValueError(f"cannot connect a ring for domain {domid}")
        with self._serial:
            dom = self._domain(domid)
            ring = RingConnection(self, dom, page, notify)
            old = dom.conn
            if old is not None:
                # Re-introduction: same domain, new event channel/page.
                ring.watches, ring.transactions, ring.target = old.watches, old.transactions, old.target
                self.connections.remove(old)
                old.closed = True
            self.connections.append(ring)
            dom.conn = ring
            ring.advertise()
            if ring.reconnect_requested():
                ring.set_connected()
                self.want_notify(ring)
            self._mark_introduced(dom)
            return ring

    def _mark_introduced(self, dom: DomainInfo) -> None:
        if not dom.introduced:
            dom.introduced = True
            dom.shutdown = False
            self._fire_special("@introduceDomain", dom.domid, nodom=True, dom=True)

    def connect_local(self, domid: int = PRIV_DOMID) -> LocalConnection:
        """An in-process connection acting as domain `domid` (tests, board services)."""
        with self._serial:
            dom = self._domain(domid) if domid != PRIV_DOMID else None
            conn = LocalConnection(self, domid, dom)
            if dom is not None:
                if dom.conn is not None:
                    raise ValueError(f"domain {domid} is already connected")
                dom.conn = conn
            self.connections.append(conn)
            if dom is not None:
                self._mark_introduced(dom)
            return conn

    def release_domain(self, domid: int) -> None:
        """The domain died: drop its connection, remove the nodes it owned and its
        permission entries (xenstored's domain_tree_remove), fire @releaseDomain."""
        if domid == PRIV_DOMID:
            return
        with self._serial:
            # Even a never-introduced domain may own nodes (the toolstack creates
            # them before XS_INTRODUCE), so always clean up.
            self._destroy_domain(self._domain(domid))

    def domain_shutdown(self, domid: int) -> None:
        """The domain shut down (not yet destroyed): fire @releaseDomain once, as
        xenstored does on a shutdown state change; XS_RESUME re-arms it."""
        with self._serial:
            dom = self.domains.get(domid)
            if dom is None or not dom.introduced or dom.shutdown:
                return
            dom.shutdown = True
            self._fire_special("@releaseDomain", domid, nodom=True, dom=True)

    def is_domain_introduced(self, domid: int) -> bool:
        with self._serial:
            dom = self.domains.get(domid)
            return bool(dom and dom.introduced)

    def close(self) -> None:
        with self._closing:
            self._close()

    def _close(self) -> None:
        # A second close finds nothing left to stop (two at once both stopped the server, and
        # the later one closed the acceptor's spare descriptor after the first had: EBADF).
        if self._server is not None:
            self._server.stop()
            self._server = None
        with self._serial:
            for conn in list(self.connections):
                self._drop(conn)
            if self._persist:
                self._save()
                self._persist.close()
            self.close_log()

    # == the trace log ============================================================
    TRACE_SWITCHES = ("obj", "io", "wrl", "acc", "tdb")

    def reopen_log(self) -> None:
        self.close_log()
        if self.tracefile is not None:
            try:
                self._tracefd = open(self.tracefile, "a", buffering=1)
            except OSError as exc:
                self.log(f"xenstored: cannot open trace file {self.tracefile}: {exc.strerror}")

    def close_log(self) -> None:
        if self._tracefd is not None:
            self._tracefd.close()
            self._tracefd = None

    def trace(self, text: str) -> None:
        if self._tracefd is not None:
            self._tracefd.write(text)

    def trace_io(self, conn: Connection, direction: str, type_: int, payload: bytes) -> None:
        """xenstored's trace_io: `io: IN|OUT 0xID (dN) YYYYMMDD HH:MM:SS TYPE (payload)`,
        NULs shown as spaces."""
        if self._tracefd is None or "io" not in self.trace_flags:
            return
        try:
            name = XsType(type_).name
        except ValueError:
            name = "INVALID"
        body = payload.replace(b"\0", b" ").decode("utf-8", "replace")
        self.trace(f"io: {direction} {id(conn):#x} (d{conn.id}) "
                   f"{time.strftime('%Y%m%d %H:%M:%S')} {name} ({body})\n")

    def memreport(self) -> str:
        """What talloc_report_full tells about the store: per domain, nodes and bytes."""
        nodes = self.store.nodes
        lines = [f"full talloc report on 'xenstored' (total {len(nodes)} nodes)"]
        per: dict[int, list[int]] = {}
        for name, node in nodes.items():
            n = per.setdefault(node.owner, [0, 0])
            n[0] += 1
            n[1] += len(name) + len(node.value)
        for domid, (count, size) in sorted(per.items()):
            lines.append(f"    domain {domid:<5} nodes {count:6d}  bytes {size:8d}")
        lines.append(f"    connections {len(self.connections)}  domains {len(self.domains)}")
        return "\n".join(lines) + "\n"

    # == transports ===============================================================
    def handle_message(self, conn: Connection, type_: int, req_id: int, tx_id: int, payload: bytes) -> None:
        """Process one request from `conn`; call without the lock held."""
        if trace.ENABLED:
            trace.emit("xs_request", None, domid=conn.id, type=_type_name(type_), req_id=req_id,
                       tx_id=tx_id, path=payload.split(b"\0", 1)[0].decode("latin-1")[:256])
        with self._serial:
            if conn.closed or conn.ignored:
                return
            self.trace_io(conn, "IN", type_, payload)
            req = self._process(conn, type_, req_id, tx_id, payload)
        if req is None or req.deferred is None:
            return
        try:
            outcome: object = req.deferred()
        except Exception as exc:  # the board's callback failed: report, don't die
            outcome = exc
        with self._serial:
            assert req.finish is not None
            try:
                reply = req.finish(outcome)
            except XsErr as err:
                self._send_error(conn, req_id, tx_id, err.name)
            else:
                self._complete(req, type_, req_id, tx_id, reply)

    def ring_kick(self, ring: RingConnection) -> None:
        with self._serial:
            if ring.closed:
                return
            if ring.reconnect_requested():
                self._reset_connection(ring)
                ring.reset_ring()
                ring.clear_error()
                ring.set_connected()
                self.want_notify(ring)
                return
            if ring.ignored:
                return
            try:
                ring.flush()
                while not ring.closed and not ring.ignored:
                    limit = self._limit(ring, "outstanding")
                    if quota_exceeded(limit, ring.outstanding()):
                        break  # the guest must take replies before sending more
                    mem = self._limit(ring, "memory")
                    if quota_exceeded(mem, ring.out_bytes):
                        break
                    if not ring.has_message():
                        if ring.read_ring() == 0:
                            break
                        self.want_notify(ring)  # room freed in the request ring
                        continue
                    for type_, req_id, tx_id, payload in ring.messages():
                        self._process(ring, type_, req_id, tx_id, payload)
                        break  # re-check quotas between requests
            except BadClient as bad:
                self.bad_client(ring, bad)

    def bad_client(self, conn: Connection, bad: BadClient) -> None:
        """A protocol violation: stop talking to this connection only."""
        ring = isinstance(conn, RingConnection)
        self.log(f"xenstored: {conn.describe()}: {bad}; connection {'stopped' if ring else 'closed'}")
        if isinstance(conn, RingConnection):
            conn.set_error(bad.err)
            self._reset_connection(conn)
            conn.ignored = True
        else:
            self._drop(conn)

    def want_notify(self, ring: RingConnection) -> None:
        def notify() -> None:
            try:
                ring.notify()
            except Exception as exc:  # the board's callback: report, keep serving
                self.log(f"xenstored: signalling domain {ring.id} failed: {exc}")

        self._serial.later(id(ring), notify)

    def add_connection(self, conn: Connection) -> None:
        with self._serial:
            self.connections.append(conn)

    def drop_connection(self, conn: Connection) -> None:
        with self._serial:
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
        conn.close()
        if conn.domain is not None and conn.domain.conn is conn:
            conn.domain.conn = None

    def _reset_connection(self, conn: Connection) -> None:
        conn.reset()

    # == request processing =======================================================
    _PRIV_ONLY = {XsType.CONTROL, XsType.INTRODUCE, XsType.RELEASE, XsType.IS_DOMAIN_INTRODUCED,
                  XsType.RESUME, XsType.SET_TARGET, XsType.SET_FEATURE, XsType.GET_QUOTA, XsType.SET_QUOTA}
    _NO_TX = {XsType.WATCH, XsType.UNWATCH}

    def _process(self, conn: Connection, type_: int, req_id: int, tx_id: int, payload: bytes) -> _Request | None:
        handler = self._handlers.get(type_)
        if handler is None:
            self._send_error(conn, req_id, tx_id, "ENOSYS")
            return None
        if type_ in self._PRIV_ONLY and not conn.privileged:
            self._send_error(conn, req_id, tx_id, "EACCES")
            return None
        tx = None
        if type_ not in self._NO_TX and tx_id != 0:
            tx = conn.transactions.get(tx_id)
            if tx is None:
                self._send_error(conn, req_id, tx_id, "ENOENT")
                return None
        acc = Access(self.store, tx, self._limit(conn, "transaction-nodes"))
        req = _Request(conn, acc, payload)
        try:
            reply = handler(self, req)
        except XsErr as err:
            if self._save(undo=True) is None:
                self._deliver(req.events)
            self._send_error(conn, req_id, tx_id, err.name)
            return None
        except Exception:  # a bug here must not take the board's xenstored down
            self.log(f"xenstored: internal error in {XsType(type_).name} from {conn.describe()}:\n"
                     + traceback.format_exc().rstrip())
            self._save()
            self._send_error(conn, req_id, tx_id, "EIO")
            return None
        if req.deferred is not None:
            return req
        self._complete(req, type_, req_id, tx_id, reply)
        return req

    def _complete(self, req: _Request, type_: int, req_id: int, tx_id: int, reply: bytes) -> None:
        # Make the change durable before anyone can see it acknowledged; one that cannot be
        # is undone and refused, and nobody hears of it.
        err = self._save(undo=True)
        if err is not None:
            self._send_error(req.conn, req_id, tx_id, err)
            return
        self._deliver(req.events)
        if len(reply) > XENSTORE_PAYLOAD_MAX:
            self._send_error(req.conn, req_id, tx_id, "E2BIG")
        else:
            req.conn.send(type_, req_id, tx_id, reply)
        self._deliver(req.after_reply)

    def _send_error(self, conn: Connection, req_id: int, tx_id: int, name: str) -> None:
        if name not in ERRNO_OF_NAME:
            self.log(f"xenstored: error {name} untranslatable")
            name = "EINVAL"
        conn.send(XsType.ERROR, req_id, tx_id, _z(name))

    def _save(self, undo: bool = False) -> str | None:
        """Persist the changes made since the last save. If that fails (a full disk) and
        `undo`, they are undone and the error to answer is returned (ENOSPC for a full disk);
        otherwise (the store's own bookkeeping) they stay, in memory only. Reads never save,
        so they go on being served; the first save that works again ends the episode."""
        if self._persist is None or not self.store.dirty:
            self.store.commit()
            return None
        try:
            self._persist.save(self.store)
        except OSError as exc:
            if not self._save_failing:
                self.log(f"xenstored: cannot save state to {self._persist.path}: "
                         f"{exc.strerror or exc}; refusing changes until it can")
            self._save_failing = True
            if undo:
                self.store.rollback()
                return "ENOSPC" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "EIO"
            self.store.commit()
            return None
        if self._save_failing:
            self._save_failing = False
            self.log(f"xenstored: state saved to {self._persist.path} again")
        return None

    def _deliver(self, events: list[tuple[Connection, bytes]]) -> None:
        for conn, payload in events:
            if conn in self.connections:
                conn.send_event(payload, self._limit(conn, "memory"))

    # -- helpers -------------------------------------------------------------------
    def _domain(self, domid: int) -> DomainInfo:
        dom = self.domains.get(domid)
        if dom is None:
            dom = self.domains[domid] = DomainInfo(domid, self.quota.copy())
        return dom

    def _limit(self, conn: Connection, name: str) -> int:
        """The quota `name` binding `conn`, 0 for none (privileged connections)."""
        if conn.privileged:
            return 0
        dom = conn.domain or self.domains.get(conn.id)
        return (dom.quota if dom else self.quota).get(name)

    def _canonicalize(self, conn: Connection, path: str | None, allow_special: bool) -> str:
        if path is None or not valid_chars(path) or (path.startswith("@") and not allow_special):
            raise XsErr("EINVAL")
        name = path if path.startswith(("/", "@")) else f"{conn.implicit_path()}/{path}"
        if (name.endswith("/") and name != "/") or "//" in name or len(name) > XENSTORE_ABS_PATH_MAX:
            raise XsErr("EINVAL")
        limit = self._limit(conn, "path-max")
        if limit:                   # counted below /local/domain/<domid>/ (none for dom0)
            m = _LOCAL_DOMAIN.match(name)
            if quota_exceeded(limit, len(name) - (m.end() if m else 0)):
                raise XsErr("EINVAL")
        return name

    @staticmethod
    def _allows(conn: Connection, perm: Perm) -> bool:
        return perm.domid == conn.id or perm.domid == conn.target or perm.domid == DOMID_ANY

    def perm_for_conn(self, conn: Connection, perms: tuple[Perm, ...]) -> int:
        """Owners and the control domain get everything; others the first ACL entry
        naming them, else the owner entry's default."""
        if conn.privileged or self._allows(conn, perms[0]):
            return _ALL_PERMS
        for p in perms[1:]:
            if not p.bits & XS_PERM_IGNORE and self._allows(conn, p):
                return p.bits & _ALL_PERMS
        return perms[0].bits & _ALL_PERMS

    def _ask_parents(self, acc: Access, conn: Connection, name: str) -> int:
        while name != "/":
            name = get_parent(name)
            node = acc.read(name)
            if node is not None:
                return self.perm_for_conn(conn, node.perms)
        return XS_PERM_NONE

    def _get_node(self, acc: Access, conn: Connection, name: str, perm: int) -> Node:
        """Read a node the connection has `perm` on. A missing node is ENOENT only
        if the nearest existing parent grants `perm`; otherwise EACCES, so that
        nothing leaks about nodes the caller may not see."""
        node = acc.read(name)
        if node is not None and self.perm_for_conn(conn, node.perms) & perm == perm:
            return node
        err = "EACCES" if node is not None else "ENOENT"
        if self._ask_parents(acc, conn, name) & perm:
            raise XsErr(err)
        raise XsErr("EACCES")

    def _write_node(self, acc: Access, conn: Connection, name: str, node: Node, check_size: bool = True) -> None:
        limit = self._limit(conn, "node-size") if check_size else 0
        if limit and quota_exceeded(limit, node.acc_size()):   # no size to add up without a quota
            if acc.tx:
                acc.tx.fail = True  # xenstored cannot undo a half-done change in a transaction
            raise XsErr("ENOSPC")
        acc.write(name, node)

    def _create_node(self, acc: Access, conn: Connection, name: str, value: bytes) -> Node:
        """Create `name` and any missing parents; new nodes inherit their parent's
        permissions, and an unprivileged creator becomes their owner."""
        missing = [name]  # bottom-up
        while True:
            parent_name = get_parent(missing[-1])
            parent = acc.read(parent_name)
            if parent is not None:
                break
            if parent_name == "/":
                raise XsErr("ENOENT")
            missing.append(parent_name)
        if acc.tx:
            acc.tx.node_created = True
        perms = parent.perms
        if not conn.privileged:
            perms = (Perm(perms[0].bits, conn.id),) + perms[1:]
        top = parent.copy()
        chain: dict[str, Node] = {}
        above = top
        for nm in reversed(missing):
            above.children.append(basename(nm))
            above = chain[nm] = Node(b"", perms, [])
        chain[name].value = value
        nodes_limit = self._limit(conn, "nodes")
        written: list[str] = []
        try:
            for nm in missing:
                if quota_exceeded(nodes_limit, acc.count_owned(conn.id) + 1):
                    raise XsErr("ENOSPC")
                self._write_node(acc, conn, nm, chain[nm])
                written.append(nm)
            self._write_node(acc, conn, parent_name, top)
        except XsErr:
            for nm in written:
                acc.delete(nm)
            if acc.tx:
                acc.tx.fail = True
            raise
        return chain[name]

    def _rm_node(self, req: _Request, name: str) -> None:
        acc = req.acc
        parent_name = get_parent(name)
        parent = acc.read(parent_name)
        if parent is None:
            raise XsErr("EINVAL")
        for path, node in self._walk_post_order(acc, name):
            acc.delete(path)
            # The removed node itself fires its watches and those of its parents;
            # nodes below it only fire watches set exactly on them.
            self._fire(req, path, node, Match.SUBTREE if path == name else Match.EXACT)
        top = parent.copy()
        if basename(name) in top.children:
            top.children.remove(basename(name))
        self._write_node(acc, req.conn, parent_name, top, check_size=False)

    def _walk_post_order(self, acc: Access, root: str) -> Iterator[tuple[str, Node]]:
        node = acc.read(root)
        if node is None:
            return
        stack: list[tuple[str, Node, int]] = [(root, node, 0)]
        while stack:
            path, node, idx = stack[-1]
            if idx < len(node.children):
                stack[-1] = (path, node, idx + 1)
                child = child_name(path, node.children[idx])
                child_node = acc.read(child)
                if child_node is not None:
                    stack.append((child, child_node, 0))
                continue
            stack.pop()
            yield path, node

    # -- watches -------------------------------------------------------------------
    def _watch_permitted(self, conn: Connection, name: str, node: Node | None,
                         old_perms: tuple[Perm, ...] | None) -> bool:
        """The watcher must be able to read the node (before or after a permission
        change) or its parent."""
        if old_perms and self.perm_for_conn(conn, old_perms) & XS_PERM_READ:
            return True
        if node is None:
            node = self.store.get(name)
            if node is None:
                return False
        if self.perm_for_conn(conn, node.perms) & XS_PERM_READ:
            return True
        parent = self.store.get(get_parent(name))
        return parent is not None and bool(self.perm_for_conn(conn, parent.perms) & XS_PERM_READ)

    def _match_watches(self, name: str, node: Node | None, match: Match,
                       old_perms: tuple[Perm, ...] | None = None) -> list[tuple[Connection, bytes]]:
        events = []
        for conn in self.connections:
            if not conn.watches or conn.ignored:
                continue
            # Which watches match is cheaper to find than whether the watcher may see the node:
            # most writes match no watch of most connections.
            hits = [w for w in conn.watches if w.matches(name, match)]
            if not hits or not self._watch_permitted(conn, name, node, old_perms):
                continue
            for w in hits:
                payload = _z(w.event_path(name)) + _z(w.token)
                if len(payload) <= XENSTORE_PAYLOAD_MAX:
                    events.append((conn, payload))
        return events

    def _fire(self, req: _Request, name: str, node: Node | None, match: Match,
              old_perms: tuple[Perm, ...] | None = None) -> None:
        if req.tx is not None:
            req.acc.queue_watch(name, match)
        else:
            req.events.extend(self._match_watches(name, node, match, old_perms))

    def _fire_special(self, name: str, domid: int, nodom: bool, dom: bool) -> None:
        node = self.store.get(name)
        if node is None:
            self.log(f"xenstored: special node {name} not found")
            return
        events = []
        if nodom:
            events += self._match_watches(name, node, Match.NODEPTH)
        if dom:
            events += self._match_watches(f"{name}/{domid}", node, Match.DEPTH)
        self._deliver(events)

    # -- domains -------------------------------------------------------------------
    def _destroy_domain(self, dom: DomainInfo) -> None:
        was_introduced = dom.introduced
        if dom.conn is not None:
            self._drop(dom.conn)
        dom.introduced = False
        self._domain_tree_remove(dom.domid)
        del self.domains[dom.domid]
        if was_introduced:
            self._fire_special("@releaseDomain", dom.domid, nodom=True, dom=True)

    def _domain_tree_remove(self, domid: int) -> None:
        """Remove nodes owned by a dead domain (with their children) and its
        permission entries elsewhere, so a new domain reusing the id inherits nothing."""
        admin = self._admin
        req = _Request(admin, Access(self.store, None), b"")
        stack = ["/", "@releaseDomain", "@introduceDomain"]
        while stack:
            path = stack.pop()
            node = self.store.get(path)
            if node is None:
                continue
            if node.owner == domid and path != "/":
                self._rm_node(req, path)
                continue
            kept = (node.perms[0],) + tuple(p for p in node.perms[1:] if p.domid != domid)
            if kept != node.perms:
                new = node.copy()
                new.perms = kept
                self.store.put(path, new)
            stack.extend(child_name(path, c) for c in reversed(node.children))
        self._save()
        self._deliver(req.events)

    @property
    def _admin(self) -> Connection:
        """Stand-in for xenstored's internal (privileged, connection-less) changes."""
        return Connection(self, PRIV_DOMID)

    def _introduced_domain(self, text: str | None) -> DomainInfo:
        """onearg_domain(): a connected guest named by the request."""
        if text is None:
            raise XsErr("EINVAL")
        domid = parse_domid(text)
        if domid == PRIV_DOMID:
            raise XsErr("EINVAL")
        dom = self.domains.get(domid)
        if dom is None or not dom.introduced:
            raise XsErr("ENOENT")
        return dom

    # == handlers (one per message type) ===========================================
    def _do_read(self, req: _Request) -> bytes:
        name = self._canonicalize(req.conn, onearg(req.payload), False)
        return self._get_node(req.acc, req.conn, name, XS_PERM_READ).value

    def _do_write(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if not args:
            raise XsErr("EINVAL")
        value = req.payload[len(args[0]) + 1:]
        name = self._canonicalize(req.conn, args[0], False)
        try:
            node = self._get_node(req.acc, req.conn, name, XS_PERM_WRITE)
        except XsErr as err:
            if err.name != "ENOENT":
                raise
            node = self._create_node(req.acc, req.conn, name, value)
        else:
            node = node.copy()
            node.value = value
            self._write_node(req.acc, req.conn, name, node)
        self._fire(req, name, node, Match.SUBTREE)
        return OK

    def _do_mkdir(self, req: _Request) -> bytes:
        name = self._canonicalize(req.conn, onearg(req.payload), False)
        try:
            self._get_node(req.acc, req.conn, name, XS_PERM_WRITE)
        except XsErr as err:
            if err.name != "ENOENT":
                raise
            node = self._create_node(req.acc, req.conn, name, b"")
            self._fire(req, name, node, Match.SUBTREE)
        return OK

    def _do_rm(self, req: _Request) -> bytes:
        name = self._canonicalize(req.conn, onearg(req.payload), False)
        try:
            self._get_node(req.acc, req.conn, name, XS_PERM_WRITE)
        except XsErr as err:
            if err.name == "ENOENT" and req.acc.read(get_parent(name)) is not None:
                return OK  # already gone, and its parent exists: fine
            raise
        if name == "/":
            raise XsErr("EINVAL")
        self._rm_node(req, name)
        return OK

    def _do_directory(self, req: _Request) -> bytes:
        name = self._canonicalize(req.conn, onearg(req.payload), False)
        node = self._get_node(req.acc, req.conn, name, XS_PERM_READ)
        return b"".join(_z(c) for c in node.children)

    def _do_directory_part(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if len(args) != 2:
            raise XsErr("EINVAL")
        name = self._canonicalize(req.conn, args[0], False)
        node = self._get_node(req.acc, req.conn, name, XS_PERM_READ)
        off = max(atoi(args[1]), 0)
        children = b"".join(_z(c) for c in node.children)
        gen = _z(str(node.generation))
        if off >= len(children):
            return gen + b"\0"
        maxlen = XENSTORE_PAYLOAD_MAX - len(gen) - 1
        length = 0
        while True:
            nul = children.find(b"\0", off + length)
            if length + (nul - off - length) >= maxlen:
                break
            length = nul + 1 - off
            if off + length == len(children):
                break
        data = gen + children[off:off + length]
        if off + length == len(children):
            data += b"\0"
        return data

    def _do_get_perms(self, req: _Request) -> bytes:
        name = self._canonicalize(req.conn, onearg(req.payload), True)
        node = self._get_node(req.acc, req.conn, name, XS_PERM_READ)
        return b"".join(_z(str(p)) for p in node.perms)

    def _do_set_perms(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if len(args) < 2:
            raise XsErr("EINVAL")
        if quota_exceeded(self._limit(req.conn, "node-permissions"), len(args) - 1):
            raise XsErr("ENOSPC")
        perms = tuple(parse_perm(s) for s in args[1:])
        if not req.conn.features & XENSTORE_SERVER_FEATURE_DOMID_ANY:
            perms = tuple(Perm(p.bits | XS_PERM_IGNORE, p.domid) if p.domid == DOMID_ANY else p for p in perms)
        if perms[0].bits & XS_PERM_IGNORE:
            raise XsErr("ENOENT")
        name = self._canonicalize(req.conn, args[0], True)
        node = self._get_node(req.acc, req.conn, name, XS_PERM_WRITE | XS_PERM_OWNER)
        if not req.conn.privileged and perms[0].domid != node.owner:
            raise XsErr("EPERM")  # only the control domain may give a node away
        new = node.copy()
        new.perms = perms
        self._write_node(req.acc, req.conn, name, new)
        self._fire(req, name, new, Match.SUBTREE, node.perms)
        return OK

    def _do_watch(self, req: _Request) -> bytes:
        conn = req.conn
        args = strings(req.payload)
        depth = -1
        if len(args) == 3 and conn.features & XENSTORE_SERVER_FEATURE_WATCHDEPTH:
            depth = atoi(args[2])
            if depth < 0:
                raise XsErr("EINVAL")
        elif len(args) != 2:
            raise XsErr("EINVAL")
        relative = not args[0].startswith(("/", "@"))
        name = self._canonicalize(conn, args[0], True)
        token = args[1]
        if any(w.node == name and w.token == token for w in conn.watches):
            raise XsErr("EEXIST")
        if quota_exceeded(self._limit(conn, "watches"), len(conn.watches) + 1):
            raise XsErr("ENOSPC")
        watch = Watch(name, token, depth, len(conn.implicit_path()) + 1 if relative else 0)
        conn.watches.append(watch)
        # A new watch fires once straight away, after the reply.
        req.after_reply.append((conn, _z(watch.event_path(name)) + _z(token)))
        return OK

    def _do_unwatch(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if len(args) != 2:
            raise XsErr("EINVAL")
        name = self._canonicalize(req.conn, args[0], True)
        for w in req.conn.watches:
            if w.node == name and w.token == args[1]:
                req.conn.watches.remove(w)
                return OK
        raise XsErr("ENOENT")

    def _do_transaction_start(self, req: _Request) -> bytes:
        conn = req.conn
        if req.tx is not None:
            raise XsErr("EBUSY")  # no nested transactions
        if quota_exceeded(self._limit(conn, "transactions"), len(conn.transactions) + 1):
            raise XsErr("ENOSPC")
        while True:
            tx_id = conn.next_tx_id
            conn.next_tx_id = (conn.next_tx_id + 1) & 0xFFFFFFFF
            if tx_id != 0 and tx_id not in conn.transactions:
                break
        conn.transactions[tx_id] = Transaction(tx_id, self.store.next_generation())
        return _z(str(tx_id))

    def _do_transaction_end(self, req: _Request) -> bytes:
        arg = onearg(req.payload)
        if arg not in ("T", "F"):
            raise XsErr("EINVAL")
        tx = req.tx
        if tx is None:
            raise XsErr("ENOENT")
        del req.conn.transactions[tx.id]
        if arg == "F":
            return OK
        if tx.fail:
            raise XsErr("ENOMEM")
        if tx.node_created and not req.conn.privileged:
            for domid, delta in tx.node_delta.items():
                if delta > 0 and domid != PRIV_DOMID:
                    dom = self.domains.get(domid)
                    limit = (dom.quota if dom else self.quota).nodes
                    if quota_exceeded(limit, self.store.owned[domid] + delta):
                        raise XsErr("ENOSPC")
        for name, match, old_perms in finalize(self.store, tx):
            req.events.extend(self._match_watches(name, None, match, old_perms))
        return OK

    def _do_introduce(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if len(args) < 3:
            raise XsErr("EINVAL")
        domid = parse_domid(args[0])
        gfn = atoi(args[1])
        port = atoi(args[2])
        if port <= 0 or domid == PRIV_DOMID or domid >= DOMID_FIRST_RESERVED:
            raise XsErr("EINVAL")
        callback = self.on_introduce
        if callback is None:
            self.log(f"xenstored: cannot introduce domain {domid}: no board to map its ring page")
            raise XsErr("EINVAL")
        req.deferred = lambda: callback(domid, gfn, port)
        req.finish = lambda outcome: self._finish_introduce(domid, outcome)
        return OK

    def _finish_introduce(self, domid: int, outcome: object) -> bytes:
        if isinstance(outcome, BaseException):
            err = NAME_OF_ERRNO.get(getattr(outcome, "errno", None) or 0, "EINVAL")
            self.log(f"xenstored: introducing domain {domid} failed: {outcome}")
            raise XsErr(err)
        if isinstance(outcome, str) and outcome in ERRNO_OF_NAME:
            raise XsErr(outcome)
        if isinstance(outcome, int) and not isinstance(outcome, bool) and outcome:
            raise XsErr(NAME_OF_ERRNO.get(abs(outcome), "EINVAL"))
        dom = self.domains.get(domid)
        ring = dom.conn if dom else None
        if not isinstance(ring, RingConnection):
            self.log(f"xenstored: introducing domain {domid}: the board connected no ring")
            raise XsErr("EINVAL")
        # domain_conn_reset(): a (re)introduced domain starts from empty rings.
        was_reconnecting = ring.modern and ring._get(XS_RING_CONNECTION_OFF) == XENSTORE_RECONNECT
        ring.reset()
        ring.reset_ring()
        if was_reconnecting:
            ring.set_connected()
            self.want_notify(ring)
        return OK

    def _do_release(self, req: _Request) -> bytes:
        dom = self._introduced_domain(onearg(req.payload))
        if dom.conn is not None:
            dom.conn.watches.clear()  # no events for the nodes it is about to lose
        self._destroy_domain(dom)
        return OK

    def _do_resume(self, req: _Request) -> bytes:
        self._introduced_domain(onearg(req.payload)).shutdown = False
        return OK

    def _do_set_target(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if len(args) < 2:
            raise XsErr("EINVAL")
        domid, tdomid = parse_domid(args[0]), parse_domid(args[1])
        dom, tdom = self.domains.get(domid), self.domains.get(tdomid)
        if dom is None or not dom.introduced or tdom is None or not tdom.introduced:
            raise XsErr("ENOENT")
        if dom.conn is None:
            raise XsErr("EINVAL")
        dom.conn.target = tdomid
        return OK

    def _do_get_domain_path(self, req: _Request) -> bytes:
        arg = onearg(req.payload)
        if arg is None:
            raise XsErr("EINVAL")
        return _z(domain_path(parse_domid(arg)))

    def _do_is_domain_introduced(self, req: _Request) -> bytes:
        arg = onearg(req.payload)
        if arg is None:
            raise XsErr("EINVAL")
        domid = parse_domid(arg)
        dom = self.domains.get(domid)
        return b"T\0" if domid == DOMID_SELF or (dom and dom.introduced) else b"F\0"

    def _do_reset_watches(self, req: _Request) -> bytes:
        req.conn.watches.clear()
        req.conn.transactions.clear()
        return OK

    def _do_get_feature(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if not args:
            return _z(str(req.conn.features))
        if not req.conn.privileged:
            raise XsErr("EACCES")
        if len(args) > 1:
            raise XsErr("EINVAL")
        domid = parse_domid(args[0])
        dom = self.domains.get(domid)
        return _z(str(dom.features if dom else XENSTORE_FEATURES))

    def _do_set_feature(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if len(args) != 2:
            raise XsErr("EINVAL")
        domid = parse_domid(args[0])
        features = atoi(args[1])
        dom = self._domain(domid)
        if dom.introduced:
            raise XsErr("EBUSY")  # features are fixed once the guest may have seen them
        if features & ~XENSTORE_FEATURES:
            raise XsErr("EINVAL")
        dom.features = features
        return OK

    def _quota_slot(self, args: list[str]) -> tuple[Quota | dict[str, int], str]:
        """(where the value lives, its key) for GET_QUOTA/SET_QUOTA names."""
        if len(args) == 1:
            target_quota, extra, name = self.quota, None, args[0]
        else:
            dom = self._domain(parse_domid(args[0]))
            target_quota, extra, name = dom.quota, dom.extra, args[1]
        if name == "soft-memory":
            if extra is None:
                return {"soft-memory": self.soft_memory}, name
            extra.setdefault(name, self.soft_memory)
            return extra, name
        if name not in Quota.NAMES:
            raise XsErr("EINVAL")
        return target_quota, name

    def _do_get_quota(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if len(args) > 2:
            raise XsErr("EINVAL")
        if not args:
            names = list(Quota.NAMES)
            names.insert(names.index("memory") + 1, "soft-memory")
            return _z(" ".join(names))
        slot, name = self._quota_slot(args)
        value = slot[name] if isinstance(slot, dict) else slot.get(name)
        return _z(str(value))

    def _do_set_quota(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if len(args) not in (2, 3):
            raise XsErr("EINVAL")
        value = atoi(args[-1])
        if value < 0:
            raise XsErr("EINVAL")
        slot, name = self._quota_slot(args[:-1])
        if isinstance(slot, dict):
            if len(args) == 2:
                self.soft_memory = value
            else:
                slot[name] = value
        else:
            slot.set(name, value)
        return OK

    def _do_control(self, req: _Request) -> bytes:
        args = strings(req.payload)
        if not args:
            raise XsErr("EINVAL")
        cmd, params = args[0], args[1:]
        if cmd == "check" and not params:
            for problem in self._check_store():
                self.log(f"xenstored: check: {problem}")
            return OK
        if cmd == "print" and len(params) == 1:
            self.log(f"control: {params[0]}")
            return OK
        if cmd == "log":             # do_control_log
            if not params:
                return _z("Log switch settings:\n" + "".join(
                    f"{n:<8}: {'on' if n in self.trace_flags else 'off'}\n"
                    for n in self.TRACE_SWITCHES))
            if len(params) != 1:
                raise XsErr("EINVAL")
            arg = params[0]
            if arg == "on":
                self.reopen_log()
            elif arg == "off":
                self.close_log()
            elif arg[:1] in "+-" and arg[1:] in self.TRACE_SWITCHES:
                (self.trace_flags.add if arg[0] == "+" else self.trace_flags.discard)(arg[1:])
            else:
                raise XsErr("EINVAL")
            return OK
        if cmd == "logfile":         # do_control_logfile: relative to xenstored's directory
            if len(params) != 1:
                raise XsErr("EINVAL")
            self.close_log()
            self.tracefile = Path(params[0]).absolute()
            self.reopen_log()
            return OK
        if cmd == "memreport":       # do_control_memreport: to FILE, else to the trace file
            if len(params) > 1:
                raise XsErr("EINVAL")
            target = Path(params[0]).absolute() if params else self.tracefile
            if target is None:
                raise XsErr("EBADF")
            try:
                with open(target, "a") as f:
                    f.write(self.memreport())
            except OSError:
                raise XsErr("EBADF") from None
            return OK
        if cmd == "help" and not params:
            # xenstored built without live update (NO_LIVE_UPDATE): "live-update" is unknown
            return _z("".join(f"{c:<15} {p}\n" for c, p in (
                ("check", ""), ("log", "[on|off|+<switch>|-<switch>]"), ("logfile", "<file>"),
                ("memreport", "[<file>]"), ("print", "<string>"),
                ("quota", "[set <name> <val>]"),
                ("quota-soft", "[set <name> <val>]"), ("help", ""))))
        if cmd in ("quota", "quota-soft"):
            soft = cmd == "quota-soft"
            if not params:
                if soft:
                    lines = [f"{'memory':<17}: {self.soft_memory:8d} Total Xenstore memory per domain\n"]
                else:
                    lines = [f"{n:<17}: {self.quota.get(n):8d} {d}\n" for n, d in zip(Quota.NAMES, Quota.DESCR)]
                return _z("Quota settings:\n" + "".join(lines))
            if params[0] == "set" and len(params) == 3:
                value = atoi(params[2])
                if value < 1:
                    raise XsErr("EINVAL")
                if soft and params[1] == "memory":
                    self.soft_memory = value
                    return OK
                if not soft and params[1] in Quota.NAMES:
                    self.quota.set(params[1], value)
                    return OK
        raise XsErr("EINVAL")

    def _check_store(self) -> list[str]:
        problems = []
        for name, node in self.store.nodes.items():
            for c in node.children:
                if child_name(name, c) not in self.store.nodes:
                    problems.append(f"{name} lists missing child {c}")
            if name not in ("/",) and not name.startswith("@"):
                parent = self.store.nodes.get(get_parent(name))
                if parent is None or basename(name) not in parent.children:
                    problems.append(f"{name} is not listed by its parent")
        return problems

    _handlers: dict[int, Callable[[XenStored, _Request], bytes]] = {
        XsType.CONTROL: _do_control,
        XsType.DIRECTORY: _do_directory,
        XsType.READ: _do_read,
        XsType.GET_PERMS: _do_get_perms,
        XsType.WATCH: _do_watch,
        XsType.UNWATCH: _do_unwatch,
        XsType.TRANSACTION_START: _do_transaction_start,
        XsType.TRANSACTION_END: _do_transaction_end,
        XsType.INTRODUCE: _do_introduce,
        XsType.RELEASE: _do_release,
        XsType.GET_DOMAIN_PATH: _do_get_domain_path,
        XsType.WRITE: _do_write,
        XsType.MKDIR: _do_mkdir,
        XsType.RM: _do_rm,
        XsType.SET_PERMS: _do_set_perms,
        XsType.IS_DOMAIN_INTRODUCED: _do_is_domain_introduced,
        XsType.RESUME: _do_resume,
        XsType.SET_TARGET: _do_set_target,
        XsType.RESET_WATCHES: _do_reset_watches,
        XsType.DIRECTORY_PART: _do_directory_part,
        XsType.GET_FEATURE: _do_get_feature,
        XsType.SET_FEATURE: _do_set_feature,
        XsType.GET_QUOTA: _do_get_quota,
        XsType.SET_QUOTA: _do_set_quota,
    }


def _type_name(type_: int) -> str:
    try:
        return XsType(type_).name
    except ValueError:
        return str(type_)
