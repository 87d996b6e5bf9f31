"""erika-xen: dom0's side of the ERIKA RTOS domU's pin command, in dom0 userspace.

The ERIKA v2 Xen port's demo has a Linux module behind /proc/sys/erika-xen/pin_state; this is
its counterpart, speaking the same protocol (the RTOS side is domains/erika/pin_server.c):

- the RTOS offers dom0 an unbound port, published in decimal at /local/erika_task_evtchn, and
  grants dom0 one page as grant reference 2: int32 pin_number, pin_value, return_value (LE);
- dom0 allocates its own port for the RTOS domain and publishes it at /local/linux_erika_evtchn
  (port 7 when it is free: the original RTOS binds dom0's port 7 without reading the key);
- a command: dom0 writes pin_number and pin_value and notifies; the RTOS drives PD<pin_number>,
  writes return_value, then binds a channel to dom0's port, sends and closes it.

Opening an ErikaXen is the module's setup (ports, key, grant mapping), closing it undoes it.
The RTOS domain is the owner of /local/erika_task_evtchn: the domain that created the key.
Reading a pin needs no RTOS: it is the PIO's data register, which dom0 reads through /dev/mem.
"""
from __future__ import annotations

import fcntl
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolstack.xc import SocketTransport, Transport, Xc, XcError
from toolstack.xenevtchn import Xenevtchn
from toolstack.xengnttab import Xengnttab
from toolstack.xs import XsClient, XsError
from xenpy.public import domctl as D
from xenpy.rundir import run_dir

TASK_PORT_KEY = "/local/erika_task_evtchn"
DOM0_PORT_KEY = "/local/linux_erika_evtchn"
CMD_REF = 2
DOM0_PORT = 7                   # what the original RTOS binds to
PIN = 12                        # PD12, the demo's LED pin
PIO_DAT_D = 0x01C20800 + 3 * 0x24 + 0x10    # A20 PIO: bank D's data register
CMD = struct.Struct("<iii")     # pin_number, pin_value, return_value
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
POLL_S = 0.25                   # how often a waiting write checks that the RTOS still lives


class ErikaXenError(Exception):
    """A one-line reason the command could not be done."""


@dataclass
class Answer:
    pin: int
    value: int
    return_value: int
    round_trip_s: float


def read_pin(pin: int = PIN, transport: Transport | None = None) -> int:
    """The level of PD<pin> as the board's PIO holds it (its DAT register, read via /dev/mem)."""
    if not 0 <= pin < 32:
        raise ErikaXenError(f"PD{pin}: bank D has pins 0-31 in its data register")
    t = transport or SocketTransport()
    try:
        reply, _ = t.call({"op": "devmem", "addr": PIO_DAT_D, "size": 4})
    finally:
        t.close()  # type: ignore[attr-defined]
    if reply["ret"] < 0:
        raise ErikaXenError(f"/dev/mem: cannot read the PIO at 0x{PIO_DAT_D:08x}: "
                            f"{os.strerror(-reply['ret'])}")
    return int(reply["out"]["value"]) >> pin & 1


class ErikaXen:
    """One load of the driver. `transport` makes the privcmd connections (each open of a device
    is its own connection); `xenstore` the XenStore client."""

    def __init__(self, domid: int | None = None, *,
                 transport: Callable[[], Transport] = SocketTransport,
                 xenstore: Callable[[], XsClient] = XsClient, lock_timeout: float = 10.0) -> None:
        self._opened: list[Any] = []
        self._lock = _driver_lock(lock_timeout)
        try:
            self.xs = self._open(xenstore)
            self.xc = self._open(lambda: Xc(transport()))
            self.domid, task_port = self._find_rtos(domid)
            self.evtchn = self._open(lambda: Xenevtchn(transport()))
            self.port = self._alloc_port()
            self.xs.write(DOM0_PORT_KEY, str(self.port))
            self.task_port = self.evtchn.bind_interdomain(self.domid, task_port)
            self.gnttab = self._open(lambda: Xengnttab(transport()))
            self.page, _ = self.gnttab.map_grant_ref(self.domid, CMD_REF)
            self._drain()       # binding sets our new port pending once, as Xen does
            self.name = self.who()
        except (XsError, XcError) as e:
            msg = f"xenstore: {e}" if isinstance(e, XsError) else f"{self.who()}: {e}"
            self.close()
            raise ErikaXenError(msg) from None
        except BaseException:
            self.close()
            raise

    def _open(self, make: Callable[[], Any]) -> Any:
        obj = make()
        self._opened.append(obj)
        return obj

    def who(self) -> str:
        if getattr(self, "domid", None) is None:
            return "erika-xen"
        try:
            return f"{self.xs.read(f'/local/domain/{self.domid}/name').decode()} " \
                   f"(domain {self.domid})"
        except XsError:
            return f"domain {self.domid}"

    def _state(self, domid: int) -> str | None:
        """Why `domid` cannot answer, or None while it runs."""
        info = self.xc.domain_getinfo(domid)
        if info is None or info["flags"] & D.DOMINF_dying:
            return "was destroyed"
        if info["flags"] & D.DOMINF_shutdown:
            return "shut down"
        return None

    def _find_rtos(self, domid: int | None) -> tuple[int, int]:
        try:
            value = self.xs.read(TASK_PORT_KEY).decode()
            owner = self.xs.get_perms(TASK_PORT_KEY)[0]
        except XsError as e:
            if e.errno_name != "ENOENT":
                raise
            raise ErikaXenError(f"{TASK_PORT_KEY} does not exist: no ERIKA domain offers its "
                                f"port (is it running? dom0 must run `xenstore-chmod -r /local b` "
                                f"before `xl create`)") from None
        if not value.isdigit() or not 0 < int(value) < 4096:
            raise ErikaXenError(f"{TASK_PORT_KEY} = {value!r}: not an event-channel port")
        writer = int(owner[1:])
        if domid is None:
            if writer == 0:
                raise ErikaXenError(f"{TASK_PORT_KEY} was written by dom0, not by an RTOS "
                                    f"domain: name the domain (--domain)")
            domid = writer
        elif writer not in (0, domid):
            raise ErikaXenError(f"{TASK_PORT_KEY} = {value} was published by domain {writer}, "
                                f"not by domain {domid}")
        state = self._state(domid)
        if state:
            raise ErikaXenError(f"{TASK_PORT_KEY} = {value} is stale: domain {domid} {state}")
        return domid, int(value)

    def _alloc_port(self) -> int:
        """An unbound port for the RTOS: port 7 if it can be had, else the first free one."""
        held: list[int] = []
        try:
            while True:
                port = self.evtchn.bind_unbound_port(self.domid)
                if port >= DOM0_PORT:
                    return port
                held.append(port)       # below 7: keep it while asking for the next
        finally:
            for port in held:
                self.evtchn.unbind(port)

    def _drain(self) -> None:
        while (port := self.evtchn.pending(timeout=0)) is not None:
            self.evtchn.unmask(port)

    # -- the control ------------------------------------------------------------------------------

    def write(self, value: int, pin: int = PIN, timeout: float = 5.0) -> Answer:
        """Have the RTOS drive PD<pin> to `value`; wait for its answer (ErikaXenError if none)."""
        if not (INT32_MIN <= pin <= INT32_MAX and INT32_MIN <= value <= INT32_MAX):
            raise ErikaXenError(f"PD{pin} <- {value}: the page holds 32-bit signed integers")
        who = self.name
        self._drain()
        CMD.pack_into(self.page, 0, pin, value, 0)
        t0 = time.perf_counter()
        self.evtchn.notify(self.task_port)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ErikaXenError(f"{who}: no answer to PD{pin} <- {value} in {timeout:g} s")
            port = self.evtchn.pending(timeout=min(POLL_S, left))
            if port == self.port:
                rtt = time.perf_counter() - t0
                self.evtchn.unmask(port)
                return Answer(pin, value, CMD.unpack_from(self.page)[2], rtt)
            if port is not None:
                self.evtchn.unmask(port)
            gone = self._state(self.domid)
            if gone:
                raise ErikaXenError(f"{who} {gone} before answering PD{pin} <- {value}")

    def close(self) -> None:
        """Unload: drop the grant mapping and our ports; withdraw our key if it is still ours."""
        port = getattr(self, "port", None)
        if port is not None:
            try:
                if self.xs.read(DOM0_PORT_KEY).decode() == str(port):
                    self.xs.rm(DOM0_PORT_KEY)
            except (XsError, OSError):
                pass
        for obj in reversed(self._opened):
            try:
                obj.close()
            except (XcError, XsError, OSError, BufferError):
                pass
        self._opened.clear()
        self._lock.close()

    def __enter__(self) -> "ErikaXen":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _driver_lock(timeout: float):
    """The driver is loaded once per board, as a module is: the RTOS answers on whichever dom0
    port the key names last, so a second user waits its turn (or gives up after `timeout`)."""
    run_dir().mkdir(parents=True, exist_ok=True)
    f = open(run_dir() / "erika-xen.lock", "w")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() >= deadline:
                f.close()
                raise ErikaXenError(f"erika-xen is in use by another process "
                                    f"(waited {timeout:g} s)") from None
            time.sleep(0.01)
