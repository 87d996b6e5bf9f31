"""A simulated machine: the hypervisor plus dom0's services, reachable through a run directory.

The run directory holds the privcmd socket (hypercalls from dom0 userspace), xenstored's socket,
the board log and a pid file. One board process serves one run directory.
"""
from __future__ import annotations

import errno
import mmap
import os
import threading
from typing import Callable

from xenpy.board.evtchn_dev import EvtchnDevice
from xenpy.board.gntdev import GntdevDevice
from xenpy.board.service import Guard
from xenpy.public.grant_table import GNTTAB_RESERVED_XENSTORE
from xenpy.public.xen import PAGE_SIZE
from xenpy.board.privcmd import Privcmd
from xenpy.board.xenconsoled import XenConsoled
from xenpy.common.hypervisor import Hypervisor, HypervisorConfig
from xenpy.rundir import board_log_path, privcmd_path, run_dir, xenstored_path


def _raise_fd_limit() -> None:
    """Every domain holds about nine descriptors (its RAM and grant-table memfds and their
    mappings, xenstored's and xenconsoled's maps of its rings): the usual soft limit of 1024
    would stop the board at about a hundred domains. Raise it to the hard limit, as a server
    expecting many clients does."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass                                    # kept as it is: the board still runs


class BoardError(Exception):
    """The board cannot start; one line for the user."""


class Board:
    def __init__(self, config: HypervisorConfig | None = None, *,
                 echo: Callable[[str], None] | None = None) -> None:
        self.rundir = run_dir()
        self.rundir.mkdir(parents=True, exist_ok=True)
        self._logf = open(board_log_path(), "a", buffering=1)
        self._echo = echo
        self._log_lost = False
        self.hv = Hypervisor(config, sink=self._log)
        self.consoled = None
        self.privcmd = Privcmd(self.hv, on_host_shutdown=lambda _reason: self.request_stop(),
                               on_console_input=self._console_input)
        self.xenstored = None
        self._store_rings = {}
        self._done = threading.Event()
        self.monitor = None

    def _console_input(self, domid: int) -> None:
        if self.consoled is not None:
            self.consoled.typed(domid)

    def _log(self, line: str) -> None:
        # Any thread logs (pCPUs, privcmd, dom0 services): a full disk under the run directory
        # must cost the board its log file, not the thread. `xl dmesg` keeps the line.
        try:
            self._logf.write(line + "\n")
        except (OSError, ValueError):
            if not self._log_lost:
                self._log_lost = True
                self.hv.dmesg.append(f"(XEN) board.log: cannot write to {board_log_path()}; "
                                     f"lines are kept only in the console ring")
        else:
            self._log_lost = False
        if self._echo:
            self._echo(line)

    def start(self) -> None:
        _raise_fd_limit()
        self.hv.start()
        self._start_xenstored()
        # Dom0's nodes and services first: a privcmd socket that answers means a board whose
        # /local/domain/0 exists (xenpy boot returns then, and a script's next command may use it).
        self._start_dom0_services()
        self.privcmd.serve(privcmd_path())
        pid_file = self.rundir / "board.pid"
        try:
            pid_file.write_text(f"{os.getpid()}\n")
        except OSError as e:
            raise BoardError(f"cannot write {pid_file}: {e.strerror}") from None
        self.hv.log("board ready: privcmd at " + str(privcmd_path()))

    def _start_xenstored(self) -> None:
        from xenpy.xenstore import XenStored
        self._store_guard = Guard("xenstored-evtchn", self.hv.log)
        self.store_evtchn = EvtchnDevice(self.hv, service=True)   # xenstored's /dev/xen/evtchn
        self.store_gntdev = GntdevDevice(self.hv)          # and its /dev/xen/gntdev
        self._store_maps: dict[int, object] = {}
        self._store_rings: dict[int, tuple[int, object]] = {}   # local port -> (domid, ring)
        state = self.rundir / "xenstored" / "state.json"
        # The store is this boot's: xencommons starts xenstored empty. What a previous boot
        # left (a board killed with -9 saves nothing on the way out) is not loaded.
        for p in (state, state.with_name(state.name + ".journal")):
            p.unlink(missing_ok=True)
        self.xenstored = XenStored(state,
                                   on_introduce=self._introduce, log=self.hv.log,
                                   board_lock=self.hv.big_lock)
        self.xenstored.serve_socket(xenstored_path())
        threading.Thread(target=self._store_pump, daemon=True, name="xenstored-evtchn").start()

    def _introduce(self, domid: int, gfn: int, port: int) -> object:
        """XS_INTRODUCE: xenstored maps the guest's ring through its reserved grant entry
        (GNTTAB_RESERVED_XENSTORE, as Xen's xenstored does) and binds its store port."""
        if domid == 0 or domid not in self.hv.domains:
            raise OSError(errno.ESRCH, "no such domain")
        try:
            m = self.store_gntdev.map_grant_ref(domid, GNTTAB_RESERVED_XENSTORE)
        except OSError as e:
            raise OSError(errno.EINVAL, f"cannot map the store ring of domain {domid}: {e}") from None
        page = memoryview(mmap.mmap(m.fd, PAGE_SIZE, offset=m.offset))
        self._store_maps[domid] = m
        local = self.store_evtchn.bind_interdomain(domid, port)
        ring = self.xenstored.connect_ring(domid, page, lambda: self.store_evtchn.notify(local))
        self._store_rings[local] = (domid, ring)
        return ring

    def _store_pump(self) -> None:
        """Guest notifications on store ports wake xenstored's ring connections."""
        try:
            while not self._done.is_set():
                try:
                    port = self.store_evtchn.pending(0.5)
                except OSError:
                    return
                if port is None:
                    continue
                entry = self._store_rings.get(port)
                try:
                    if entry is not None:
                        entry[1].kick()
                except Exception as e:  # noqa: BLE001 - one bad ring must not stop the others
                    self._store_guard.report(e, f"waking the store ring of domain {entry[0]}")
                try:
                    self.store_evtchn.unmask(port)
                except OSError:
                    pass
        finally:
            self.store_evtchn.leave()

    def _start_dom0_services(self) -> None:
        """Dom0 userspace that lives with the board: its XenStore nodes and xl's domain watcher."""
        from toolstack.libxl import Libxl
        from toolstack.monitor import DomainMonitor
        from toolstack.xc import LocalTransport, Xc
        from toolstack.xs import XsClient
        xs = XsClient(xenstored_path())
        xs.write("/local/domain/0/name", "Domain-0")
        xs.write("/local/domain/0/domid", "0")
        # xen-init-dom0: a name for every cpupool the hypervisor booted with ("Pool-0")
        xc, poolid = Xc(LocalTransport(self.privcmd)), 0
        while (pool := xc.cpupool_getinfo(poolid)) is not None:
            poolid = pool["cpupool_id"]
            xs.write(f"/local/pool/{poolid}/name", f"Pool-{poolid}")
            poolid += 1
        xs.close()
        self.monitor = DomainMonitor(
            lambda: Libxl(Xc(LocalTransport(self.privcmd)), XsClient(xenstored_path())),
            log=self.hv.log)
        self.monitor.start()
        self.consoled = XenConsoled(self.hv, lambda: XsClient(xenstored_path()))
        self.consoled.start()
        self.hv.dom_exc_listeners.append(self._dom_exc)
        self.hv.dom_exc_listeners.append(self.monitor.notify)

    def _dom_exc(self, domid: int) -> None:
        """VIRQ_DOM_EXC as xenstored sees it: @releaseDomain on shutdown and on death."""
        if self.xenstored is None:
            return
        d = self.hv.domains.get(domid)
        if d is None:
            self.xenstored.release_domain(domid)
            m = self._store_maps.pop(domid, None)
            if m is not None:
                try:
                    self.store_gntdev.unmap(m.index)
                except OSError:
                    pass
            for port, (owner, _ring) in list(self._store_rings.items()):
                if owner == domid:
                    del self._store_rings[port]
                    try:
                        self.store_evtchn.unbind(port)
                    except OSError:
                        pass
        elif d.is_shutdown:
            self.xenstored.domain_shutdown(domid)

    def request_stop(self) -> None:
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def stop(self) -> None:
        self.hv.log("board shutting down")
        self.privcmd.close()
        if self.monitor is not None:
            self.monitor.stop()
            self.consoled.stop()
        if self.xenstored is not None:
            self.xenstored.close()
        self.hv.shutdown()
        for p in (privcmd_path(), self.rundir / "board.pid"):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        self._logf.close()
