"""HYPERVISOR_console_io (Xen's drivers/char/console.c).

A domU's CONSOLEIO_write goes to its own console log (what `xl console` shows, kept from the domain's
birth) and, line by line, to the hypervisor log as `(dN) text`, as Xen prints guest output. Xen's
release builds refuse console_io to domUs unless built with CONFIG_VERBOSE_DEBUG; the ERIKA port
prints through it, so xenpy behaves like such a debug build.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.arch.arm.guestcopy import copy_from_guest, copy_to_guest
from xenpy.common.hypercall import hypercall
from xenpy.public import errno
from xenpy.public.xen import CONSOLEIO_read, CONSOLEIO_write, HYPERVISOR_console_io

if TYPE_CHECKING:
    from xenpy.common.domain import Vcpu

CHUNK = 4096
# Printable ASCII plus the layout characters Xen lets through.
_KEEP = bytes(range(0x20, 0x7F)) + b"\n\t"
_DROP = bytes(c for c in range(256) if c not in _KEEP)


@hypercall(HYPERVISOR_console_io)
def do_console_io(v: "Vcpu", args: tuple[int, ...]) -> int:
    cmd, count, buf = args[0], args[1], args[2]
    d = v.domain
    assert v.arch is not None
    if cmd == CONSOLEIO_write:
        for off in range(0, count, CHUNK):
            data = copy_from_guest(v.arch, buf + off, min(CHUNK, count - off))
            d.hv.console_write(d, data.translate(None, _DROP))
        return 0
    if cmd == CONSOLEIO_read:
        if count > 0x7FFFFFFF:
            return -errno.E2BIG
        data = d.hv.console_read(d, count)
        copy_to_guest(v.arch, buf, data)
        return len(data)
    return -errno.ENOSYS
