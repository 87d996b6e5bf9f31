"""xl's domain watcher: carries out on_poweroff / on_reboot / on_crash / on_watchdog.

On Xen, `xl create` leaves a process behind that waits for its domain to shut down and then
destroys, restarts or preserves it. xenpy runs that watcher as one dom0 service in the board
process, woken by VIRQ_DOM_EXC; it works only through privcmd and XenStore, like xl.
"""
from __future__ import annotations

import json
import queue
import threading
import traceback
from typing import Any, Callable

from toolstack.libxl import Libxl, userdata_path

ACTION_KEYS = {0: "on_poweroff", 1: "on_reboot", 2: "on_poweroff", 3: "on_crash",
               4: "on_watchdog", 5: "on_soft_reset"}


class DomainMonitor:
    def __init__(self, make_libxl: Callable[[], Libxl], log: Callable[[str], None]) -> None:
        self._make = make_libxl
        self._log = log
        self._events: queue.Queue[int | None] = queue.Queue()
        self._handled: set[tuple[int, float]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True, name="xl-monitor")

    def start(self) -> None:
        self._thread.start()

    def notify(self, domid: int) -> None:
        """VIRQ_DOM_EXC: some domain changed state. Called from hypervisor threads: never block."""
        self._events.put(domid)

    def stop(self) -> None:
        self._events.put(None)

    def _run(self) -> None:
        lx = None
        while (domid := self._events.get()) is not None:
            try:
                lx = lx or self._make()
                self._handle(lx, domid)
            except Exception as e:  # noqa: BLE001 - the watcher must outlive a bad event
                tb = traceback.extract_tb(e.__traceback__)
                where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
                self._log(f"xl: domain watcher: handling domain {domid} raised {e!r}{where}; "
                          f"it watches on")
                lx = None

    def _handle(self, lx: Libxl, domid: int) -> None:
        info = lx.xc.domain_getinfo(domid)
        if info is None or not info["flags"] & (1 << 2):       # gone, or not shut down
            return
        try:
            saved: dict[str, Any] = json.loads(userdata_path(domid).read_text())
        except (OSError, ValueError):
            return                                              # not created by xl
        reason = info["flags"] >> 16 & 0xFF
        # The saved config spells actions as libxl's enum does (restart_rename, coredump_destroy).
        action = saved["config"].get(ACTION_KEYS.get(reason, "on_crash"), "destroy")
        action = {"restart_rename": "rename-restart"}.get(action, action.replace("_", "-"))
        name = lx.domain_name(domid)
        self._log(f"xl: domain {domid} ({name}) shut down ({reason}): {action}")
        if action == "preserve":
            return
        if action in ("destroy", "coredump-destroy"):
            lx.destroy(domid)
        elif action in ("restart", "coredump-restart", "rename-restart"):
            from toolstack.domcfg import load_domain_config
            src = saved["source"]
            cfg, _ = load_domain_config(src["path"], src["extra"])
            if action == "rename-restart":
                lx.rename(domid, f"{name}-{domid}")     # the old one stays, renamed
            else:
                lx.destroy(domid)
            new = lx.create(cfg, extra=src["extra"])
            self._log(f"xl: domain {name} restarted as {new}")
        else:
            lx.destroy(domid)
