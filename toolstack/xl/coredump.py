"""xl dump-core: the guest's memory and vCPU registers in an ELF core file.

Xen's libxenguest writes its own "xen core" layout (.xen_pages, .xen_p2m...), which debuggers do
not read. This writes the layout gdb reads for any ARM core: an ET_CORE ELF32 with one
NT_PRSTATUS note per vCPU (elf_gregset: r0-r15, cpsr, orig_r0) and one PT_LOAD segment per RAM
bank at its guest physical address; so a guest whose MMU maps memory 1:1 (ours do) reads the
same in gdb as in the guest: `gdb-multiarch -batch -ex "core-file CORE" -ex "info registers"`.
The domain is paused while it is dumped, as xc_domain_dumpcore wants a still image.
"""
from __future__ import annotations

import os
import struct

from toolstack.xc import XcError
from toolstack.xl.utils import ERROR_FAIL, XTL_ERROR, ctx, log

ET_CORE, EM_ARM, PT_LOAD, PT_NOTE, NT_PRSTATUS, NT_PRPSINFO = 4, 40, 1, 4, 1, 3
PF_R, PF_W, PF_X = 4, 2, 1
PAGE = 4096
_BANK = {0x10: "usr", 0x1F: "usr", 0x11: "fiq", 0x12: "irq", 0x13: "svc", 0x17: "abt",
         0x1B: "und"}


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name += b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def prstatus(vcpu: int, regs: dict[str, int]) -> bytes:
    """ARM's struct elf_prstatus (148 bytes): pr_pid names the thread, pr_reg at offset 72."""
    bank = _BANK.get(regs["cpsr"] & 0x1F, "usr")
    gregs = [regs[f"r{i}_usr"] for i in range(13)] + [
        regs.get(f"sp_{bank}", 0), regs.get(f"lr_{bank}", 0), regs["pc32"], regs["cpsr"],
        regs["r0_usr"]]
    head = struct.pack("<iiihhII4i", 0, 0, 0, 0, 0, 0, 0, vcpu + 1, 0, 0, 0) + b"\0" * 32
    return head + struct.pack("<18I", *(r & 0xFFFFFFFF for r in gregs)) + struct.pack("<i", 0)


def prpsinfo(name: str) -> bytes:
    """ARM's struct elf_prpsinfo (124 bytes): state, flags, ids, pr_fname[16], pr_psargs[80]."""
    return (struct.pack("<bbbbIHHiiii", 0, ord("R"), 0, 0, 0, 0, 0, 0, 0, 0, 0)
            + name.encode()[:15].ljust(16, b"\0") + name.encode()[:79].ljust(80, b"\0"))


def build_core(name: str, contexts: list[tuple[int, dict[str, int]]], base: int,
               ram: bytes | memoryview | object) -> bytes:
    notes = _note(b"CORE", NT_PRPSINFO, prpsinfo(name))
    for n, regs in contexts:
        notes += _note(b"CORE", NT_PRSTATUS, prstatus(n, regs))
    phnum = 2
    note_off = 52 + 32 * phnum
    load_off = (note_off + len(notes) + PAGE - 1) // PAGE * PAGE
    ehdr = struct.pack("<4sBBBB8xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, ET_CORE, EM_ARM, 1,
                       0, 52, 0, 0, 52, 32, phnum, 40, 0, 0)
    ph_note = struct.pack("<8I", PT_NOTE, note_off, 0, 0, len(notes), 0, 0, 4)
    ph_load = struct.pack("<8I", PT_LOAD, load_off, base, base, len(ram), len(ram),
                          PF_R | PF_W | PF_X, PAGE)
    head = ehdr + ph_note + ph_load + notes
    return head + b"\0" * (load_off - len(head)) + bytes(ram)


def domain_core_dump(domid: int, filename: str) -> int:
    """libxl_domain_core_dump: pause, read every vCPU's context and the RAM, write, unpause."""
    lx = ctx()
    xc = lx.xc
    info = xc.domain_getinfo(domid)
    if info is None or domid == 0:
        log(XTL_ERROR, "libxl_domain.c", "libxl_domain_core_dump",
            "core dumping domain: " + ("dom0 runs no guest code here" if domid == 0 else
                                       "No such process"), domid)
        return ERROR_FAIL
    was_paused = bool(info["flags"] & (1 << 3))
    if not was_paused:
        xc.domain_pause(domid)
    try:
        contexts = []
        for n in range(info["max_vcpu_id"] + 1):
            try:
                contexts.append((n, xc.vcpu_getcontext(domid, n)["ctxt"]["user_regs"]))
            except XcError as e:
                if e.errno != 61:          # ENODATA: a vCPU that never ran has no registers
                    raise
        ram, base = xc.map_foreign_ram(domid)
        try:
            core = build_core(lx.domain_name(domid), contexts, base, ram)
        finally:
            ram.close()
    except XcError as e:
        log(XTL_ERROR, "libxl_domain.c", "libxl_domain_core_dump",
            f"core dumping domain: {os.strerror(e.errno)}", domid)
        return ERROR_FAIL
    finally:
        if not was_paused:
            xc.domain_unpause(domid)
    try:
        with open(filename, "wb") as f:
            f.write(core)
    except OSError as e:
        log(XTL_ERROR, "libxl_domain.c", "libxl_domain_core_dump",
            f"core dumping domain to {filename}: {e.strerror}", domid)
        return ERROR_FAIL
    return 0
