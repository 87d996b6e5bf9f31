"""Atomic operations on guest memory (Xen's asm/atomic.h and bitops), from libatomic.

The guest changes the words Xen shares with it (event bits, grant flags) from another host thread,
with ldrex/strex; the hypervisor's read-modify-writes on them must be atomic too. An event bit
operation is one instruction, called with the interpreter lock held (`hold_lock`, the library
loaded as a PyDLL): letting the lock go around it would invite a thread hand-off at every bit. A
grant's compare-and-swap loops against whoever else changes the entry, often another host thread
of dom0 (gntdev, gntalloc), so it lets the lock go, and that thread gets its turn between tries.
`fn` gives None when libatomic is missing; callers then fall back to plain accesses.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Callable

SEQ_CST = 5      # __ATOMIC_SEQ_CST


def _load(kind: type[ctypes.CDLL]) -> ctypes.CDLL | None:
    for name in ("libatomic.so.1", ctypes.util.find_library("atomic")):
        if name:
            try:
                return kind(name)
            except OSError:
                continue
    return None


_LIBS = {True: _load(ctypes.PyDLL), False: _load(ctypes.CDLL)}


def fn(name: str, argtypes: tuple[Any, ...], restype: Any, *,
       hold_lock: bool) -> Callable[..., Any] | None:
    """libatomic's `name` (e.g. __atomic_fetch_or_1) with its C signature, or None."""
    lib = _LIBS[hold_lock]
    f = getattr(lib, name, None) if lib is not None else None
    if f is not None:
        f.argtypes, f.restype = argtypes, restype
    return f
