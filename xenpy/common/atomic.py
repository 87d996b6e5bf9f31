"""Atomic operations on guest memory (Xen's asm/atomic.h and bitops), from libatomic.

The guest changes the words Xen shares with it (event bits, grant flags) from another host thread,
with ldrex/strex; the hypervisor's read-modify-writes on them must be atomic too. The __atomic_*
functions are called with the interpreter lock held (the library loaded as a PyDLL): each is one
instruction, and letting the lock go around it would invite a thread hand-off at every bit.
`fn` gives None when libatomic is missing; callers then fall back to plain accesses.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Callable

SEQ_CST = 5      # __ATOMIC_SEQ_CST


def _load() -> ctypes.PyDLL | None:
    for name in ("libatomic.so.1", ctypes.util.find_library("atomic")):
        if name:
            try:
                return ctypes.PyDLL(name)
            except OSError:
                continue
    return None


_LIB = _load()


def fn(name: str, argtypes: tuple[Any, ...], restype: Any) -> Callable[..., Any] | None:
    """libatomic's `name` (e.g. __atomic_fetch_or_1) with its C signature, or None."""
    f = getattr(_LIB, name, None) if _LIB is not None else None
    if f is not None:
        f.argtypes, f.restype = argtypes, restype
    return f
