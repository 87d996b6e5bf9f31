"""Dom0's /dev/xen/evtchn: event channels for dom0 userspace (xenstored, backends, the toolstack).

Dom0 runs no kernel here, so this class is both the device and the part of Linux's evtchn driver
behind it: each device owns the ports it bound; an event on one of them masks the port and queues
it; pending() is read() (it blocks until a port is queued or the timeout passes); unmask() is
write() of the port once handled. Errors are raised as OSError with Xen's errno, as the ioctls
fail with errno; a port this device does not own is ENOTCONN, as in Linux.

Several devices may be open at once; closing one unbinds its ports, like closing the file.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from xenpy.common import event_channel as ev
from xenpy.public import errno
from xenpy.public.event_channel import EVTCHN_2L_NR_CHANNELS
from xenpy.public.xen import DOMID_SELF

if TYPE_CHECKING:
    from xenpy.common.hypervisor import Hypervisor

# Linux's answer for a port this file did not bind (not in xenpy.public.errno yet).
ENOTCONN = 107


class EvtchnDevice:
    """`service=True`: the device of an in-board dom0 service (xenstored, xenconsoled) whose one
    thread loops on pending(). On a deterministic board it holds the board lock except while it
    waits in pending(), and the executor waits for it to be quiescent before each round."""

    def __init__(self, hv: "Hypervisor", *, service: bool = False) -> None:
        self._dom0 = hv.domains[0]
        self._cond = threading.Condition()     # guards _ring, _ports, _closed; never held across
        self._ring: deque[int] = deque()       # a call into the hypervisor
        self._ports: set[int] = set()
        self._closed = False
        self._service_lock = hv.big_lock if service and hv.clock.deterministic else None
        self._holding = False                  # the consumer holds the board lock
        self._waiting = False                  # the consumer waits in pending()
        if service:
            hv.services.append(self)

    def quiescent(self) -> bool:
        """Everything queued was taken, and the consumer is back waiting for more."""
        with self._cond:
            return self._closed or (not self._ring and self._waiting)

    # Called by the hypervisor (with no event-channel lock held) when one of our ports fires.
    def _event(self, port: int) -> None:
        with self._cond:
            if not self._closed:
                self._ring.append(port)
                self._cond.notify()

    @staticmethod
    def _check(rc: int) -> int:
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        return rc

    def _own(self, port: int) -> int:
        with self._cond:
            self._ports.add(port)
        return port

    def _usable(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    # -- binding (IOCTL_EVTCHN_BIND_*) -----------------------------------------------------------

    def bind_unbound(self, remote_domid: int) -> int:
        """A new dom0 port that `remote_domid` may bind to."""
        self._usable()
        return self._own(self._check(ev.alloc_unbound(self._dom0, DOMID_SELF, remote_domid,
                                                      consumer=self._event)))

    def bind_interdomain(self, remote_domid: int, remote_port: int) -> int:
        """Connect to a port `remote_domid` allocated for dom0. The new port fires once at once."""
        self._usable()
        return self._own(self._check(ev.bind_interdomain(self._dom0, remote_domid, remote_port,
                                                         consumer=self._event)))

    def bind_virq(self, virq: int) -> int:
        self._usable()
        return self._own(self._check(ev.bind_virq(self._dom0, virq, 0, consumer=self._event)))

    def _owned(self, port: int) -> None:
        self._usable()
        if not 0 <= port < EVTCHN_2L_NR_CHANNELS:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        with self._cond:
            if port not in self._ports:
                raise OSError(ENOTCONN, os.strerror(ENOTCONN))

    def unbind(self, port: int) -> None:
        self._owned(port)
        with self._cond:
            if port not in self._ports:     # another thread unbound it meanwhile
                raise OSError(ENOTCONN, os.strerror(ENOTCONN))
            self._ports.discard(port)
            self._purge(port)
        ev.close(self._dom0, port)

    def _purge(self, port: int) -> None:
        if port in self._ring:
            self._ring = deque(p for p in self._ring if p != port)

    # -- using ports -----------------------------------------------------------------------------

    def notify(self, port: int) -> None:
        """EVTCHNOP_send on our port (like Linux, the hypercall's result is not reported)."""
        self._owned(port)
        ev.send(self._dom0, port)

    def pending(self, timeout: float | None = None) -> int | None:
        """The next port that fired (it stays masked until unmask()), or None after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        lock = self._service_lock
        if lock is not None and self._holding:
            self._holding = False
            lock.release()
        with self._cond:
            self._waiting = True
            try:
                while not self._ring:
                    self._usable()          # a closed device raises: the lock stays free
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        port = None
                        break
                    self._cond.wait(left)
                else:
                    port = self._ring.popleft()
            finally:
                self._waiting = False
        if lock is not None:
            lock.acquire()
            self._holding = True
        return port

    def leave(self) -> None:
        """The consumer takes no more events (its thread ends): the board lock its last
        pending() took goes back. A thread that ended holding it would stop the board for good."""
        lock = self._service_lock
        if lock is not None and self._holding:
            self._holding = False
            lock.release()

    def unmask(self, port: int) -> None:
        """Re-enable a port after handling it; a port this device does not own is ignored."""
        with self._cond:
            if self._closed or port not in self._ports:
                return
        ev.unmask(self._dom0, port)

    @property
    def ports(self) -> frozenset[int]:
        with self._cond:
            return frozenset(self._ports)

    # -- file lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Unbind every port of this device and wake its readers."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            ports, self._ports = self._ports, set()
            self._ring.clear()
            self._cond.notify_all()
        for port in sorted(ports):
            ev.close(self._dom0, port)

    def __enter__(self) -> "EvtchnDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
