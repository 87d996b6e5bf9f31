"""The privcmd wire format shared by the board and dom0's toolstack (the role of Linux's privcmd.h).

A frame is a 4-byte little-endian length and a JSON object; a file descriptor (a domain's RAM, for
foreign mappings) may ride along as SCM_RIGHTS ancillary data.
"""
from __future__ import annotations

import json
import socket
import struct
from typing import Any

MAX_MSG = 1 << 20


def send_msg(sock: socket.socket, obj: dict[str, Any], fd: int | None = None) -> None:
    data = json.dumps(obj).encode()
    frame = struct.pack("<I", len(data)) + data
    if fd is None:
        sock.sendall(frame)
    else:
        socket.send_fds(sock, [frame], [fd])


def recv_msg(sock: socket.socket) -> tuple[dict[str, Any] | None, int | None]:
    """One message (and a passed fd, if any); (None, None) at end of stream."""
    head, fds, _flags, _addr = socket.recv_fds(sock, 4, 1)
    if not head:
        return None, None
    while len(head) < 4:
        more = sock.recv(4 - len(head))
        if not more:
            return None, None
        head += more
    (n,) = struct.unpack("<I", head)
    if n > MAX_MSG:
        raise ValueError(f"privcmd message of {n} bytes is too large")
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None, None
        body += chunk
    return json.loads(body), (fds[0] if fds else None)
