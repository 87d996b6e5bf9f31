"""xenconsoled: dom0's PV console backend (Xen's tools/console/daemon).

When a domain is introduced (@introduceDomain) it reads the domain's console/ring-ref and
console/port from XenStore, maps the ring through the reserved grant entry GNTTAB_RESERVED_CONSOLE
and binds the port, then moves bytes: guest output (the `out` ring) to the domain's console log,
the one `xl console` shows from the domain's birth; typed input to the `in` ring. Indexes come from
an untrusted guest: they are used masked, and a producer running ahead of the consumer by more than
the ring is a broken ring, whose connection is dropped.

Events follow io.c: the backend notifies the guest only after it consumed output (buffer_append)
or produced input (handle_tty_read), never at attach or for an empty ring, so a guest that never
bound its console port never gets an upcall on it. A guest that notifies in a loop is rate
limited as xenconsoled does: past RATE_LIMIT_ALLOWANCE events in a RATE_LIMIT_PERIOD its port
stays masked until the period ends.
"""
from __future__ import annotations

import mmap
import struct
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from toolstack.xs import XsError
from xenpy.board.evtchn_dev import EvtchnDevice
from xenpy.board.gntdev import GntdevDevice
from xenpy.board.service import Guard
from xenpy.public.grant_table import GNTTAB_RESERVED_CONSOLE
from xenpy.public.io import console as C
from xenpy.public.xen import PAGE_SIZE

if TYPE_CHECKING:
    from xenpy.common.hypervisor import Hypervisor


RATE_LIMIT_ALLOWANCE = 30      # events per period (io.c)
RATE_LIMIT_PERIOD = 0.2        # seconds
PERIOD_FUZZ = 0.005            # io.c's 5 ms poll fuzz


@dataclass
class _Console:
    domid: int
    page: mmap.mmap
    port: int
    mapping: object
    event_count: int = 0
    next_period: float = 0.0
    kind: str = "pv"          # "pv": ~/console (granted page); "vuart": ~/vuart/0 (foreign map)

    def log(self, d):
        return d.vuart_console if self.kind == "vuart" else d.console

    def input(self, d) -> bytearray:
        return d.vuart_input if self.kind == "vuart" else d.console_input


class XenConsoled:
    def __init__(self, hv: "Hypervisor", xs_factory: Callable[[], object]) -> None:
        self.hv = hv
        self._xs_factory = xs_factory
        self.evtchn = EvtchnDevice(hv, service=True)
        self.gntdev = GntdevDevice(hv)
        self.consoles: dict[int, _Console] = {}     # local port -> console
        # Domains with typed input to deliver (typed() says so) and ports with events in the
        # current rate-limit period: an idle turn looks at these, not at every console.
        self._typed: set[int] = set()
        self._typed_lock = threading.Lock()
        self._counting: set[int] = set()
        self._stop = threading.Event()
        self._guard = Guard("xenconsoled", hv.log)

    def start(self) -> None:
        threading.Thread(target=self._watch, daemon=True, name="xenconsoled-watch").start()
        threading.Thread(target=self._pump, daemon=True, name="xenconsoled").start()

    def stop(self) -> None:
        self._stop.set()

    def typed(self, domid: int) -> None:
        """Input was queued for domain `domid`'s console (privcmd's console_write): the next
        turn puts it in the ring."""
        with self._typed_lock:
            self._typed.add(domid)

    # -- domains coming and going ----------------------------------------------------------------

    def _watch(self) -> None:
        xs = self._xs_factory()
        try:
            xs.watch("@introduceDomain", "introduce")
            xs.watch("@releaseDomain", "release")
            while not self._stop.is_set():
                if xs.read_watch(0.5) is not None:
                    try:
                        self._scan(xs)
                    except XsError:
                        raise
                    except Exception as e:  # noqa: BLE001 - keep attaching new consoles
                        self._guard.report(e, "attaching consoles")
        except XsError as e:      # xenstored went away: the board is stopping, or it is lost
            if not self._stop.is_set():
                self.hv.log(f"xenconsoled: {e}; consoles of new domains are not attached")
        finally:
            xs.close()

    def _scan(self, xs) -> None:
        attached = {(c.domid, c.kind) for c in self.consoles.values()}
        live = {domid for domid, d in list(self.hv.domains.items()) if not d.privileged}
        for port, c in list(self.consoles.items()):
            if c.domid not in live:
                self._detach(port)
        # io.c's console types: the PV console, and on ARM the optional vuart (vpl011).
        for domid in sorted(live):
            for kind, node in (("pv", "console"), ("vuart", "vuart/0")):
                if (domid, kind) in attached:
                    continue
                try:
                    ref = int(xs.read(f"/local/domain/{domid}/{node}/ring-ref"))
                    remote = int(xs.read(f"/local/domain/{domid}/{node}/port"))
                except Exception:  # noqa: BLE001 - no such console (yet) for this domain
                    continue
                self._attach(domid, ref, remote, kind)

    def _attach(self, domid: int, ring_ref: int, remote_port: int, kind: str = "pv") -> None:
        m = None
        try:
            if kind == "pv":
                m = self.gntdev.map_grant_ref(domid, GNTTAB_RESERVED_CONSOLE)
                page = mmap.mmap(m.fd, PAGE_SIZE, offset=m.offset)
            else:
                # use_gnttab = false: the ring-ref is a frame, mapped as foreign memory.
                d = self.hv.domains.get(domid)
                page = d.frame(ring_ref) if d is not None else None
                if page is None:
                    raise OSError(22, f"no frame {ring_ref:#x}")
                m = None
            port = self.evtchn.bind_interdomain(domid, remote_port)
        except OSError as e:
            # Typically the domain died between the scan and here. Undo the map: a grant
            # mapping left behind pins the dead domain's tables and RAM for the board's life.
            if m is not None:
                try:
                    self.gntdev.unmap(m.index)
                except OSError:
                    pass
            if domid in self.hv.domains:
                self.hv.log(f"xenconsoled: cannot attach to the {kind} console of domain "
                            f"{domid}: {e}")
            return
        self.consoles[port] = _Console(domid, page, port, m, kind=kind)
        self._drain(self.consoles[port])          # output written before we attached
        self.typed(domid)                         # and input typed before (what did not fit)

    def _detach(self, port: int) -> None:
        c = self.consoles.pop(port)
        undos = [lambda: self.evtchn.unbind(port)]
        if c.mapping is not None:
            undos.append(lambda: self.gntdev.unmap(c.mapping.index))
        for undo in undos:
            try:
                undo()
            except OSError:
                pass

    # -- moving bytes ----------------------------------------------------------------------------

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    port = self.evtchn.pending(0.05)
                except OSError:
                    return
                try:
                    self._turn(port)
                except Exception as e:  # noqa: BLE001 - one bad turn must not end the backend
                    self._guard.report(e, "moving console bytes")
                    if port is not None:     # a failed turn must not leave the port masked
                        self._unmask(port)
        finally:
            self.evtchn.leave()

    def _turn(self, port: int | None) -> None:
        now = time.monotonic()
        self._new_periods(now)
        if port is None:                     # no event: deliver whatever was typed
            with self._typed_lock:
                domids, self._typed = self._typed, set()
            if not domids:
                return
            for c in list(self.consoles.values()):
                if c.domid not in domids:
                    continue
                d = self.hv.domains.get(c.domid)
                if d is None or not c.input(d):
                    continue
                if self._feed(c, d):
                    self._notify(c)
                if c.input(d):               # the ring is full: try again next turn
                    self.typed(c.domid)
            return
        c = self.consoles.get(port)
        if c is None:
            self._unmask(port)
            return
        if port not in self._counting:
            # The first event of a period (_new_periods only visits ports that had events).
            if now + PERIOD_FUZZ > c.next_period:
                c.next_period = now + RATE_LIMIT_PERIOD
            self._counting.add(port)
        c.event_count += 1
        self._drain(c)
        if c.event_count < RATE_LIMIT_ALLOWANCE and self.consoles.get(port) is c:
            self._unmask(port)

    def _new_periods(self, now: float) -> None:
        """console_evtchn_unmask(): a new period re-opens a rate-limited port. Only ports that
        had events in their period have anything to reset."""
        for port in list(self._counting):
            c = self.consoles.get(port)
            if c is None:
                self._counting.discard(port)
            elif now + PERIOD_FUZZ > c.next_period:
                c.next_period = now + RATE_LIMIT_PERIOD
                if c.event_count >= RATE_LIMIT_ALLOWANCE:
                    self._unmask(c.port)
                c.event_count = 0
                self._counting.discard(port)

    def _unmask(self, port: int) -> None:
        try:
            self.evtchn.unmask(port)
        except OSError:
            pass

    def _notify(self, c: _Console) -> None:
        try:
            self.evtchn.notify(c.port)
        except OSError:
            pass

    def _drain(self, c: _Console) -> None:
        """buffer_append(): take what the guest wrote; notify only if something was taken."""
        d = self.hv.domains.get(c.domid)
        if d is None:
            return
        cons, prod = struct.unpack_from("<II", c.page, C.OUT_CONS)
        size = (prod - cons) & 0xFFFFFFFF
        if size > C.OUT_SIZE:
            self.hv.log(f"xenconsoled: domain {c.domid} console ring corrupt; detached")
            self._detach(c.port)
            return
        produced = self._feed(c, d)
        if size:
            out = bytearray()
            while cons != prod:
                out.append(c.page[C.OUT_OFFSET + C.mask_out(cons)])
                cons = (cons + 1) & 0xFFFFFFFF
            struct.pack_into("<I", c.page, C.OUT_CONS, cons)
            c.log(d).append_ring(bytes(out))
        if size or produced:
            self._notify(c)

    def _feed(self, c: _Console, d) -> bool:
        """Typed input (`xl console`) goes into the guest's `in` ring while there is room;
        returns whether any byte went in."""
        typed = c.input(d)
        with c.log(d).cond:
            pending = bytes(typed)
            if not pending:
                return False
            cons, prod = struct.unpack_from("<II", c.page, C.IN_CONS)
            room = C.IN_SIZE - ((prod - cons) & 0xFFFFFFFF)
            chunk = pending[:max(0, room)]
            for b in chunk:
                c.page[C.IN_OFFSET + C.mask_in(prod)] = b
                prod = (prod + 1) & 0xFFFFFFFF
            if not chunk:
                return False
            struct.pack_into("<I", c.page, C.IN_PROD, prod)
            del typed[:len(chunk)]
            return True
