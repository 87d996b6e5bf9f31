"""libxenevtchn for xenpy: dom0's event channels, the model of /dev/xen/evtchn.

Each Xenevtchn is one open of the device: its ports belong to it and are closed with it. Waiting
(`pending`) blocks in the board for at most a few seconds per call, like a read() with a timeout.
"""
from __future__ import annotations

import time
from typing import Any

from toolstack.xc import SocketTransport, Transport, XcError


class Xenevtchn:
    def __init__(self, transport: Transport | None = None) -> None:
        self.t = transport or SocketTransport()

    def _call(self, cmd: str, **args: Any) -> dict[str, Any]:
        reply, _ = self.t.call({"op": "evtchn", "cmd": cmd, **args})
        if reply["ret"] < 0:
            raise XcError(f"evtchn {cmd}", reply["ret"])
        return reply["out"]

    def bind_unbound_port(self, remote_domid: int) -> int:
        return int(self._call("bind_unbound", remote_domid=remote_domid)["port"])

    def bind_interdomain(self, remote_domid: int, remote_port: int) -> int:
        return int(self._call("bind_interdomain", remote_domid=remote_domid,
                              remote_port=remote_port)["port"])

    def bind_virq(self, virq: int) -> int:
        return int(self._call("bind_virq", virq=virq)["port"])

    def notify(self, port: int) -> None:
        self._call("notify", port=port)

    def unbind(self, port: int) -> None:
        self._call("unbind", port=port)

    def unmask(self, port: int) -> None:
        self._call("unmask", port=port)

    def pending(self, timeout: float | None = None) -> int | None:
        """The next port that fired (masked until unmask()), or None after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 5.0 if deadline is None else max(0.0, deadline - time.monotonic())
            port = self._call("pending", timeout=min(left, 5.0))["port"]
            if port is not None:
                return int(port)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        self.t.close()  # type: ignore[attr-defined]
