"""A GDB remote stub per domain: dom0's gdbsx, as a service in the board process.

`xl gdbserver DOMAIN` asks privcmd ({"op": "gdbserver", "cmd": "start"}) for a TCP listener on
localhost; gdb connects to it with `target remote HOST:PORT` and speaks the remote serial
protocol. The listener lives in the board because that is where the vCPUs are: a stop has to
happen inside a Unicorn hook on the pCPU thread, and relaying every packet through xl and the
privcmd socket would add a hop without adding anything.

The model is gdb's all-stop mode: a stop (attach, a breakpoint or watchpoint hit, a step, Ctrl-C)
pauses the whole domain with one pause reference of the stub's own (xl list shows it paused),
and continuing releases it. Other domains never notice. Each vCPU is a thread (id = vCPU + 1).
A domain that is already paused when gdb attaches (`xl create -p`) is taken over as it is: the
stub adopts that pause, so gdb's first `continue` starts the guest.

A step runs one instruction of the selected vCPU on the stub's thread (ArmVcpu.run with
emu_count = 1) while the others stay stopped.
"""
from __future__ import annotations

import select
import socket
import threading
from typing import TYPE_CHECKING, Any

from xenpy.arch.arm import debug
from xenpy.arch.arm.domain import sample_timers
from xenpy.arch.arm.p2m import current_vcpu
from xenpy.arch.arm.vcpu import Exit
from xenpy.common import event_channel, grant_table
from xenpy.public import errno

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu
    from xenpy.common.hypervisor import Hypervisor

SIGINT, SIGTRAP = 2, 5
_WATCH_NAME = {debug.WRITE_WATCH: "watch", debug.READ_WATCH: "rwatch",
               debug.ACCESS_WATCH: "awatch"}
MAX_PACKET = 0x4000

_stubs: dict[int, "GdbStub"] = {}        # domid -> its stub, while one listens or serves
_stubs_lock = threading.Lock()


def start(hv: "Hypervisor", domid: int, host: str, port: int) -> tuple[int, dict[str, Any]]:
    """privcmd's gdbserver start: listen for one gdb session on (host, port)."""
    d = hv.domains.get(domid)
    if d is None:
        return -errno.ESRCH, {}
    if d.privileged or d.ram is None:
        return -errno.EINVAL, {}     # dom0 runs no guest code here; a domain without RAM has no CPU
    with _stubs_lock:
        if domid in _stubs:
            return -errno.EBUSY, {"port": _stubs[domid].port}
        try:
            stub = GdbStub(hv, d, host, port)
        except OverflowError:
            return -errno.EINVAL, {}
        except OSError as e:       # a negative errno is getaddrinfo's: no such host
            return -(e.errno if e.errno and e.errno > 0 else errno.EADDRNOTAVAIL), {}
        _stubs[domid] = stub
    stub.start()
    return 0, {"host": host, "port": stub.port}


def status(domid: int) -> tuple[int, dict[str, Any]]:
    stub = _stubs.get(domid)
    if stub is None:
        return -errno.ENOENT, {}
    return 0, {"port": stub.port, "connected": stub.connected, "peer": stub.peer}


def stop(domid: int) -> tuple[int, dict[str, Any]]:
    stub = _stubs.get(domid)
    if stub is None:
        return -errno.ENOENT, {}
    stub.close()
    return 0, {}


class GdbStub:
    def __init__(self, hv: "Hypervisor", d: "Domain", host: str, port: int) -> None:
        self.hv, self.d = hv, d
        self.srv = socket.create_server((host, port), reuse_port=False)
        self.port = self.srv.getsockname()[1]
        self.conn: socket.socket | None = None
        self.connected = False
        self.peer = ""
        self.lock = threading.Lock()
        self.hit = threading.Event()
        self.running = False          # the domain runs for gdb (between c/s and the stop reply)
        self.holding = False          # the stub holds one pause reference of the domain
        self.stop_reply = f"T{SIGTRAP:02x}thread:1;"
        self.g_thread = self.c_thread = 1
        self.dbg = {v.vcpu_id: debug.VcpuDebug(v.arch, self._on_hit)
                    for v in d.vcpus if v.arch is not None}
        self.points: set[tuple[int, int, int]] = set()
        # Write watchpoints' guest-physical bytes, to notice writes no vCPU of this domain made:
        # another domain's or dom0's, through a grant. (kind, va, len) -> (chunks, last bytes)
        self.watched: dict[tuple[int, int, int], tuple[list[tuple[int, int]], bytes]] = {}
        self.no_ack = self._no_ack_next = False
        self._buf = b""
        self._closed = False

    def start(self) -> None:
        threading.Thread(target=self._serve, daemon=True, name=f"gdbstub-d{self.d.domid}").start()

    def close(self) -> None:
        self._closed = True
        for s in (self.srv, self.conn):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    # -- the domain ---------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        d = self.d
        return self.hv.domains.get(d.domid) is d and not d.is_dying

    def _on_hit(self, arch, kind: int, addr: int) -> None:
        """From inside a vCPU's hook (its pCPU thread): the vCPU has already been told to stop."""
        with self.lock:
            if not self.running:
                return                     # the domain is stopping already
            self.running = False
            self.d.pause_count += 1        # before run() returns, so no pCPU picks it up again
            self.holding = True
            tid = arch.vcpu_id + 1
            what = f"{_WATCH_NAME[kind]}:{addr:x};" if kind in _WATCH_NAME else ""
            self.stop_reply = f"T{SIGTRAP:02x}{what}thread:{tid:x};"
            self.g_thread = self.c_thread = tid
        for v in self.d.vcpus:
            if v.arch is not None:
                v.arch.stop()
        self.hit.set()

    def _pause(self, adopt: bool = False) -> None:
        """Stop the domain (attach, Ctrl-C); waits until no vCPU of it runs. On attach, a domain
        someone already paused is taken over with that pause (adopt)."""
        with self.lock:
            self.running = False
            if not self.holding:
                self.holding = True
                if not (adopt and self.d.pause_count):
                    self.d.pause_count += 1
        self.hv.scheduler.deschedule(self.d.vcpus)

    def _resume(self) -> None:
        with self.lock:
            if not self.holding:
                return
            for key, (chunks, _old) in self.watched.items():
                self.watched[key] = (chunks, self._phys_bytes(chunks))
            self.holding = False
            self.running = True
            self.hit.clear()
        self.hv.domain_unpause(self.d)

    def _phys_bytes(self, chunks: list[tuple[int, int]]) -> bytes:
        arch = self.dbg[0].arch
        return b"".join(arch.read_phys(ipa, n) or b"" for ipa, n in chunks)

    def on_event(self, _port: int) -> None:
        """An event for the domain (from the sender's thread): a peer that wrote a watched word
        through a grant notifies after writing, so look before the guest can take the upcall."""
        if self.watched and self.running:
            self._external_write()

    def _external_write(self) -> None:
        """A watched range changed with no vCPU hook seeing it: someone else wrote it (another
        domain through a grant, or dom0). Stops the domain as a hit would; gdb compares the
        values and reports the change. Checked when an event arrives and every 50 ms."""
        for (kind, va, _len), (chunks, old) in list(self.watched.items()):
            if self._phys_bytes(chunks) != old:
                with self.lock:
                    if not self.running:
                        return
                    self.running = False
                    self.d.pause_count += 1
                    self.holding = True
                    tid = self.g_thread if self.g_thread > 0 else 1
                    self.stop_reply = f"T{SIGTRAP:02x}{_WATCH_NAME[kind]}:{va:x};thread:{tid:x};"
                for v in self.d.vcpus:
                    if v.arch is not None:
                        v.arch.stop()
                self.hit.set()
                return

    def _vcpu(self, tid: int) -> "Vcpu | None":
        n = tid - 1 if tid > 0 else 0
        if 0 <= n < len(self.d.vcpus) and self.d.vcpus[n].arch is not None:
            return self.d.vcpus[n]
        return None

    def _step(self, tid: int) -> str:
        """One instruction of one vCPU, the others stopped: run() on this thread, count 1."""
        v = self._vcpu(tid)
        if v is None or v.arch is None:
            return "E03"
        sched = self.hv.scheduler
        with sched.cond:
            v.running_on = v.processor        # others treat it as running: p2m queues, kicks stop
        if v.domain.p2m is not None:
            v.domain.p2m.restore_state(v)
        if v.domain.vgic is not None:
            sample_timers(v)
        with self.lock:
            self.running = True               # a watchpoint hit during the step reports itself
            self.hit.clear()
            self.stop_reply = f"T{SIGTRAP:02x}thread:{tid:x};"
        current_vcpu.v = v
        v.arch.emu_count = 1
        try:
            why = v.arch.run() if v.online else Exit.DOWN
        except Exception as e:  # noqa: BLE001 - a guest must not take the stub down
            self.hv.log(f"{v}: single step failed: {e!r}")
            why = Exit.DOWN
        finally:
            v.arch.emu_count = 0
            current_vcpu.v = None
        with self.lock:
            self.running = False
            if self.hit.is_set():              # _on_hit took a pause reference of its own
                self.d.pause_count -= 1
        with sched.cond:
            v.running_on = None
            # Blocked only if this instruction was a WFI with nothing to wake it: a step out of
            # a WFI left the vCPU running code again.
            v.blocked = why is Exit.WFI and not (v.wake_pending or self.hv.has_pending_interrupt(v))
            v.wake_pending = False
            sched.notify(v)
        return self.stop_reply

    def _wait_stop(self) -> str | None:
        """While the domain runs: a hit, Ctrl-C from gdb, or the domain's end. None: gdb left."""
        assert self.conn is not None
        while True:
            if self.watched:
                self._external_write()
            if self.hit.wait(0.05):
                self.hv.scheduler.deschedule(self.d.vcpus)
                return self.stop_reply
            if not self.alive or self.d.is_shutdown:
                return self._exit_reply()
            r, _, _ = select.select([self.conn], [], [], 0)
            if r:
                data = self.conn.recv(4096)
                if not data:
                    return None
                if b"\x03" in data:
                    self._pause()
                    if self.hit.is_set():
                        return self.stop_reply
                    tid = self.c_thread if self.c_thread > 0 else 1
                    self.stop_reply = f"T{SIGINT:02x}thread:{tid:x};"
                    return self.stop_reply

    def _exit_reply(self) -> str:
        code = self.d.shutdown_code if self.d.is_shutdown and self.d.shutdown_code >= 0 else 0
        return f"W{code & 0xFF:02x}"

    # -- the connection ---------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self.srv.settimeout(None)
            conn, peer = self.srv.accept()
        except OSError:
            self._finish()
            return
        self.srv.close()                 # one session, as gdbserver without --multi
        self.conn, self.connected, self.peer = conn, True, f"{peer[0]}:{peer[1]}"
        self.d.debugger = self
        try:
            if self.alive:
                self._pause(adopt=True)
                self._session()
        except (OSError, ConnectionError):
            pass
        finally:
            self._detach()
            self._finish()

    def _finish(self) -> None:
        if self.d.debugger is self:
            self.d.debugger = None
        with _stubs_lock:
            if _stubs.get(self.d.domid) is self:
                del _stubs[self.d.domid]
        if self.conn is not None:
            self.conn.close()

    def _detach(self) -> None:
        """Leave the domain as gdb found it, minus the stop: no hooks, no pause of ours. (gdb may
        have gone while the domain ran: hooks are only changed with every vCPU off its pCPU.)"""
        if self.alive:
            self._pause()
            for dbg in self.dbg.values():
                dbg.clear()
            self._resume()
        with self.lock:
            self.running = False

    def _recv_packet(self) -> str | None:
        assert self.conn is not None
        while True:
            start = self._buf.find(b"$")
            if start >= 0:
                end = self._buf.find(b"#", start)
                if end >= 0 and len(self._buf) >= end + 3:
                    body = self._buf[start + 1:end]
                    self._buf = self._buf[end + 3:]
                    if not self.no_ack:
                        self.conn.sendall(b"+")
                    return body.decode("latin-1")
            elif b"\x03" in self._buf:
                self._buf = self._buf.replace(b"\x03", b"")    # Ctrl-C while stopped: nothing to do
            data = self.conn.recv(4096)
            if not data:
                return None
            self._buf += data

    def _send(self, body: str) -> None:
        assert self.conn is not None
        raw = body.encode("latin-1")
        # '#', '$', '}' and '*' must be escaped in a reply body.
        out = bytearray()
        for b in raw:
            if b in (0x23, 0x24, 0x7D, 0x2A):
                out += bytes((0x7D, b ^ 0x20))
            else:
                out.append(b)
        self.conn.sendall(b"$" + bytes(out) + b"#" + f"{sum(out) & 0xFF:02x}".encode())

    def _session(self) -> None:
        while True:
            pkt = self._recv_packet()
            if pkt is None:
                return
            if not self.alive:
                self._send(self._exit_reply())
                return
            reply = self._handle(pkt)
            if reply is None:                 # kill or detach: the session is over
                return
            self._send(reply)
            if self._no_ack_next:
                self.no_ack, self._no_ack_next = True, False
            if reply.startswith(("W", "X")):
                return

    # -- packets ----------------------------------------------------------------------------------

    def _handle(self, pkt: str) -> str | None:
        cmd = pkt[:1]
        try:
            if pkt.startswith("q") or pkt.startswith("Q"):
                return self._query(pkt)
            if pkt.startswith("v"):
                return self._v(pkt)
            if cmd == "?":
                return self.stop_reply
            if cmd == "H":
                tid = _thread_id(pkt[2:])
                if tid > 0 and self._vcpu(tid) is None:
                    return "E02"
                if pkt[1] == "g":
                    self.g_thread = tid if tid > 0 else self.g_thread
                else:
                    self.c_thread = tid
                return "OK"
            if cmd == "T":
                return "OK" if self._vcpu(_thread_id(pkt[1:])) is not None else "E02"
            if cmd == "g":
                return self._dbg().read_regs().hex()
            if cmd == "G":
                self._dbg().write_regs(bytes.fromhex(pkt[1:]))
                return "OK"
            if cmd == "p":
                n = int(pkt[1:], 16)
                if n >= debug.NR_REGS:
                    return "E00"
                return self._dbg().read_reg(n).to_bytes(debug.reg_size(n), "little").hex()
            if cmd == "P":
                n, val = pkt[1:].split("=")
                reg = int(n, 16)
                if reg >= debug.NR_REGS:
                    return "E00"
                self._dbg().write_reg(reg, int.from_bytes(bytes.fromhex(val), "little"))
                return "OK"
            if cmd == "m":
                addr, length = (int(x, 16) for x in pkt[1:].split(","))
                data = self._dbg().read_mem(addr, min(length, MAX_PACKET // 2))
                return data.hex() if data else "E14"
            if cmd == "M":
                where, hexdata = pkt[1:].split(":", 1)
                addr, _length = (int(x, 16) for x in where.split(","))
                return self._write_mem(addr, bytes.fromhex(hexdata))
            if cmd == "X":
                where, _, data = pkt[1:].partition(":")
                addr, _length = (int(x, 16) for x in where.split(","))
                return self._write_mem(addr, _unescape(data.encode("latin-1")))
            if cmd in ("Z", "z"):
                return self._point(cmd == "Z", pkt[1:])
            if cmd in ("c", "C"):
                return self._continue()
            if cmd in ("s", "S"):
                return self._step(self.c_thread if self.c_thread > 0 else self.g_thread)
            if cmd == "D":
                self._send("OK")
                return None
            if cmd == "k":
                self._kill()
                return None
        except (ValueError, IndexError):
            return "E01"
        return ""

    def _dbg(self) -> debug.VcpuDebug:
        v = self._vcpu(self.g_thread)
        if v is None:
            raise IndexError(self.g_thread)
        return self.dbg[v.vcpu_id]

    def _write_mem(self, addr: int, data: bytes) -> str:
        if not self._dbg().write_mem(addr, data):
            return "E14"
        for dbg in self.dbg.values():
            dbg.invalidate(addr, len(data))
        return "OK"

    def _point(self, insert: bool, args: str) -> str:
        kind_s, addr_s, len_s = args.split(";")[0].split(",")
        kind, addr, length = int(kind_s), int(addr_s, 16), int(len_s, 16)
        if kind not in range(5):
            return ""
        kind = debug.BREAK if kind == 0 else kind
        for dbg in self.dbg.values():
            if insert:
                dbg.insert(kind, addr, length)
            else:
                dbg.remove(kind, addr, length)
        (self.points.add if insert else self.points.discard)((kind, addr, length))
        key = (kind, addr, length)
        if kind in (debug.WRITE_WATCH, debug.ACCESS_WATCH) and insert:
            chunks = self._dbg().ipa_chunks(addr, length)
            self.watched[key] = (chunks, self._phys_bytes(chunks))
        elif not insert:
            self.watched.pop(key, None)
        return "OK"

    def _continue(self) -> str | None:
        self._resume()
        return self._wait_stop()

    def _kill(self) -> None:
        for dbg in self.dbg.values():
            dbg.clear()
        self.hv.domain_destroy(self.d)
        self.holding = False

    def _v(self, pkt: str) -> str | None:
        if pkt == "vCont?":
            return "vCont;c;C;s;S"
        if pkt.startswith("vCont;"):
            actions = [a.split(":") for a in pkt[6:].split(";")]
            for act in actions:
                if act[0][:1] in ("s", "S"):
                    tid = _thread_id(act[1]) if len(act) > 1 else self.c_thread
                    return self._step(tid if tid > 0 else self.g_thread)
            return self._continue()
        if pkt.startswith("vKill"):
            self._kill()
            self._send("OK")
            return None
        return ""          # vMustReplyEmpty, vFile, ...: not supported

    def _query(self, pkt: str) -> str:
        if pkt.startswith("qSupported"):
            return (f"PacketSize={MAX_PACKET:x};qXfer:features:read+;vContSupported+;"
                    "QStartNoAckMode+")
        if pkt == "QStartNoAckMode":
            self._no_ack_next = True       # from the packet after this reply on
            return "OK"
        if pkt.startswith("qXfer:features:read:"):
            annex, _, rng = pkt[len("qXfer:features:read:"):].partition(":")
            if annex != "target.xml":
                return "E00"
            off, length = (int(x, 16) for x in rng.split(","))
            chunk = debug.TARGET_XML[off:off + length]
            return ("l" if off + length >= len(debug.TARGET_XML) else "m") + chunk
        if pkt == "qfThreadInfo":
            return "m" + ",".join(f"{v.vcpu_id + 1:x}" for v in self.d.vcpus if v.arch is not None)
        if pkt == "qsThreadInfo":
            return "l"
        if pkt == "qC":
            return f"QC{self.g_thread:x}"
        if pkt.startswith("qAttached"):
            return "1"
        if pkt.startswith("qThreadExtraInfo,"):
            v = self._vcpu(_thread_id(pkt.split(",")[1]))
            if v is None:
                return "E02"
            state = ("offline" if not v.online else "blocked" if v.blocked else "paused")
            return f"vcpu{v.vcpu_id} ({state})".encode().hex()
        if pkt.startswith("qRcmd,"):
            text = self._monitor(bytes.fromhex(pkt[6:]).decode("latin-1").strip())
            return text.encode("latin-1").hex()
        if pkt.startswith("qSymbol"):
            return "OK"
        return ""

    # -- monitor commands (gdb's `monitor ...`) ---------------------------------------------------------

    def _monitor(self, line: str) -> str:
        word = line.split()[0] if line.split() else "help"
        if word == "evtchn":
            return "".join(f"{_evtchn_line(c)}\n" for c in evtchn_table(self.d)) or "no ports\n"
        if word == "grants":
            return "".join(f"ref {r['ref']:5d} flags {r['flags']:#06x} to dom {r['domid']:<5d} "
                           f"frame {r['frame']:#07x} mapped by "
                           f"{','.join(str(m['domid']) for m in r['mapped_by']) or '-'}\n"
                           for r in grant_table.table_entries(self.d)) or "no grants\n"
        if word == "vgic":
            return _vgic_text(self.d)
        if word == "cp15":
            state = debug.cp15_state(self._dbg().arch)
            return "".join(f"{name:<10} {value:#x}\n" for name, value in state.items())
        return ("monitor commands: evtchn (this domain's ports), grants (its grant entries), "
                "vgic (its virtual GIC's pending and enabled interrupts), cp15 (the current "
                "vCPU's system registers)\n")


def evtchn_table(d: "Domain") -> list[dict[str, Any]]:
    """Every port of a domain in use: what `xenpy evtchn list` and `monitor evtchn` show."""
    from xenpy.public.event_channel import (EVTCHNSTAT_closed, EVTCHNSTAT_interdomain,
                                            EVTCHNSTAT_ipi, EVTCHNSTAT_unbound, EVTCHNSTAT_virq)
    names = {EVTCHNSTAT_unbound: "unbound", EVTCHNSTAT_interdomain: "interdomain",
             EVTCHNSTAT_virq: "virq", EVTCHNSTAT_ipi: "ipi"}
    st = d.evtchn
    if st is None:
        return []
    out = []
    dom0 = d.hv.domains[0]
    for port in range(1, len(st.chans)):
        s = event_channel.status(dom0, d.domid, port)
        if isinstance(s, int) or s.status == EVTCHNSTAT_closed:
            continue
        row: dict[str, Any] = {"port": port, "type": names.get(s.status, str(s.status)),
                               "vcpu": s.vcpu, "pending": event_channel.is_pending(d, port),
                               "masked": event_channel.is_masked(d, port)}
        if s.status == EVTCHNSTAT_unbound:
            row["remote_domid"] = s.dom
        elif s.status == EVTCHNSTAT_interdomain:
            row["remote_domid"], row["remote_port"] = s.dom, s.port
        elif s.status == EVTCHNSTAT_virq:
            row["virq"] = s.virq
        out.append(row)
    return out


def _evtchn_line(r: dict[str, Any]) -> str:
    remote = (f"dom {r['remote_domid']} port {r['remote_port']}" if r["type"] == "interdomain"
              else f"dom {r['remote_domid']}" if r["type"] == "unbound"
              else f"virq {r['virq']}" if r["type"] == "virq" else "-")
    return (f"port {r['port']:4d} {r['type']:<12} {remote:<20} vcpu {r['vcpu']} "
            f"{'pending' if r['pending'] else '-'} {'masked' if r['masked'] else '-'}")


def _vgic_text(d: "Domain") -> str:
    """Per vCPU: the interrupts enabled, pending and active in the domain's vGIC."""
    vgic = d.vgic
    if vgic is None:
        return "no vGIC\n"
    lines = []
    for v in d.vcpus:
        n = v.vcpu_id
        sets = {what: [i for i in range(vgic.nr_irqs) if test(n, i)]
                for what, test in (("enabled", vgic.is_enabled), ("pending", vgic.is_pending),
                                   ("active", vgic.is_active))}
        lines.append(f"vcpu{n}: " + "; ".join(
            f"{what} {','.join(map(str, irqs)) or '-'}" for what, irqs in sets.items()))
    return "\n".join(lines) + "\n"


def _thread_id(s: str) -> int:
    """An RSP thread id: hex, -1 for all, 0 for any (a p<pid>.<tid> form is not used here)."""
    s = s.strip()
    if s == "-1":
        return -1
    return int(s, 16) if s else 0


def _unescape(data: bytes) -> bytes:
    out, esc = bytearray(), False
    for b in data:
        if esc:
            out.append(b ^ 0x20)
            esc = False
        elif b == 0x7D:
            esc = True
        else:
            out.append(b)
    return bytes(out)
