"""Xen's early boot on ARM: what it takes from the host device tree the firmware hands it.

The counterpart of xen/common/device-tree/bootfdt.c (memory banks, /chosen boot modules and command
lines), of the command-line parser in xen/common/kernel.c, and of the parts of xen/arch/arm/setup.c
and domain_build.c that size Domain-0 (dom0_mem, dom0_max_vcpus, dom0_vcpus_pin) and probe its
kernel. The dom0 kernel is validated and placed, not executed: dom0's work is this host's Python.

What the SD card's `xen` is in this model: a small zImage (domains/xen-image) whose header is Xen's
own (magic 0x016F2818, start 0, end = size) followed by a record, XENPY_XEN_MAGIC and a banner,
that the board checks when the firmware jumps to it. Anything else at the entry point is not a
hypervisor this board can run.

Every refusal is a BootError with one line: where real Xen would panic, the board stops.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

from xenpy.loader.fdt import Fdt, FdtError, Node
from xenpy.public.arch_arm import GUEST_MAX_VCPUS_GICV2
from xenpy.loader.kernel import KernelImage, LoaderError, place_dom0, probe_module

MAX_VIRT_CPUS = GUEST_MAX_VCPUS_GICV2   # Xen 4.4's asm-arm/config.h: 8, what a GICv2 addresses
XENPY_XEN_MAGIC = b"XENPYHV\0"      # at offset 0x30 of the xen image, after the zImage header
XEN_RECORD_OFFSET = 0x30
DOM0_MEM_DEFAULT = 128 << 20        # Xen 4.4's default when dom0_mem= is not given
MB = 1 << 20

KIND_NAMES = {"kernel": "Kernel", "ramdisk": "Ramdisk", "xsm": "XSM Policy", "dtb": "DTB",
              "unknown": "Unknown", "fdt": "Device Tree"}


class BootError(Exception):
    """Xen cannot boot from what it was given; the message is one line."""


ReadPhys = Callable[[int, int], bytes]      # (address, size) -> bytes, raises BootError


def xen_image_banner(head: bytes) -> str | None:
    """The banner of a xenpy Xen image starting at `head` (its first bytes), None if not one."""
    if len(head) < XEN_RECORD_OFFSET + len(XENPY_XEN_MAGIC) + 4:
        return None
    if struct.unpack_from("<I", head, 0x24)[0] != 0x016F2818:
        return None
    rec = head[XEN_RECORD_OFFSET:]
    if not rec.startswith(XENPY_XEN_MAGIC):
        return None
    text = rec[len(XENPY_XEN_MAGIC) + 4:]
    return text.split(b"\0", 1)[0].decode("ascii", "replace")


# -- the device tree -----------------------------------------------------------------------------

@dataclass
class BootModule:
    kind: str                 # kernel | ramdisk | xsm | dtb | unknown
    start: int
    size: int
    path: str
    cmdline: str | None = None


@dataclass
class BootInfo:
    fdt: Fdt
    fdt_addr: int
    fdt_size: int
    memory: list[tuple[int, int]] = field(default_factory=list)
    modules: list[BootModule] = field(default_factory=list)
    cpus: int = 0
    xen_cmdline: str = ""
    dom0_cmdline: str = ""
    timer_clock_frequency: int = 0     # the generic timer node's clock-frequency, if it has one
    log: list[str] = field(default_factory=list)


def _cells(raw: bytes, n: int, pos: int) -> int:
    value = 0
    for i in range(n):
        value = value << 32 | struct.unpack_from(">I", raw, pos + 4 * i)[0]
    return value


def _is_compatible(node: Node, compat: str) -> bool:
    return compat in (node.strings("compatible") or [])


def _module_kind(node: Node) -> str:
    if _is_compatible(node, "xen,linux-zimage") or _is_compatible(node, "multiboot,kernel"):
        return "kernel"
    if _is_compatible(node, "xen,linux-initrd") or _is_compatible(node, "multiboot,ramdisk"):
        return "ramdisk"
    if _is_compatible(node, "xen,xsm-policy"):
        return "xsm"
    if _is_compatible(node, "multiboot,device-tree"):
        return "dtb"
    return "unknown"


FDT_HEADER_SIZE = 40                 # a version 17 header
FDT_MAX_RESERVED = 4096              # reserve map entries read before calling it unterminated


def read_fdt_blocks(read_phys: ReadPhys, addr: int, room: int | None = None
                    ) -> tuple[bytes, int]:
    """The device tree at addr as (blob, totalsize): the blob holds only what the header's
    blocks cover, with its totalsize field set to that, so a tree opened into a big buffer
    costs its contents, not its free space. `room`: bytes readable from addr (a larger
    totalsize is FDT_ERR_TRUNCATED). Raises FdtError."""
    total = Fdt.header_size(read_phys(addr, 8))
    if room is not None and total > room:
        raise FdtError(f"header says {total:#x} bytes, memory ends {room:#x} bytes after "
                       f"0x{addr:08x}", "FDT_ERR_TRUNCATED")
    if total < FDT_HEADER_SIZE:
        return read_phys(addr, max(total, 8)), total
    (_m, _t, off_struct, off_strings, off_rsv, _v, _lc, _cpu, size_strings,
     size_struct) = struct.unpack(">10I", read_phys(addr, FDT_HEADER_SIZE))
    rsv_end = off_rsv                          # the reserve map ends with an empty entry
    while rsv_end + 16 <= min(total, off_rsv + 16 * FDT_MAX_RESERVED):
        rsv_end += 16
        if not any(read_phys(addr + rsv_end - 16, 16)):
            break
    used = min(total, max(off_struct + size_struct, off_strings + size_strings, rsv_end,
                          FDT_HEADER_SIZE))
    blob = bytearray(read_phys(addr, used))
    struct.pack_into(">I", blob, 4, used)
    return bytes(blob), total


def boot_fdt_info(read_phys: ReadPhys, fdt_addr: int) -> BootInfo:
    """Read the tree at `fdt_addr` and collect what Xen's early scan collects."""
    try:
        blob, total = read_fdt_blocks(read_phys, fdt_addr)
        fdt = Fdt.parse(blob)
    except FdtError as e:
        raise BootError(f"no valid device tree at 0x{fdt_addr:08x} ({e})") from None
    info = BootInfo(fdt, fdt_addr, total)
    kind_guess = 0

    # device_tree_for_each_node: a node's #address-cells/#size-cells default to its parent's.
    def scan(node: Node, path: str, depth: int, ac: int, sc: int, parent: Node | None) -> None:
        nonlocal kind_guess
        my_ac, my_sc = node.u32("#address-cells", ac), node.u32("#size-cells", sc)
        if depth == 1 and node.name.split("@")[0] == "memory" and \
                node.string("device_type") == "memory":
            raw = node.props.get("reg", b"")
            if ac < 1 or sc < 1:
                raise BootError(f"{path}: invalid #address-cells or #size-cells")
            step = 4 * (ac + sc)
            for pos in range(0, len(raw) - step + 1, step):
                start, size = _cells(raw, ac, pos), _cells(raw, sc, pos + 4 * ac)
                if size:
                    info.memory.append((start, size))
        elif depth <= 3 and (_is_compatible(node, "xen,multiboot-module")
                             or _is_compatible(node, "multiboot,module")) \
                and path.startswith("/chosen"):
            raw = node.props.get("reg")
            if raw is None:
                raise BootError(f"{path}: node {node.name} missing `reg' property")
            if len(raw) < 4 * (ac + sc):
                raise BootError(f"{path}: `reg' property length is too short for "
                                f"#address-cells = {ac}, #size-cells = {sc}")
            start, size = _cells(raw, ac, 0), _cells(raw, sc, 4 * ac)
            kind = _module_kind(node)
            if kind == "unknown":
                # The first module with no specific compatible is the kernel, the second the
                # ramdisk (booting.txt).
                kind = ("kernel", "ramdisk")[kind_guess] if kind_guess < 2 else "unknown"
                kind_guess += 1
            domu = parent is not None and _is_compatible(parent, "xen,domain")
            if domu:
                info.log.append(f"{path}: a dom0less domain's module: not supported by this "
                                f"model, ignored")
            else:
                info.modules.append(BootModule(kind, start, size, path, node.string("bootargs")))
        elif (_is_compatible(node, "arm,armv7-timer") or _is_compatible(node, "arm,armv8-timer")) \
                and "clock-frequency" in node.props:
            # preinit_dt_xen_time(): firmware that leaves CNTFRQ unset gives the rate here.
            info.timer_clock_frequency = node.u32("clock-frequency", 0)
        elif depth == 1 and node.name == "cpus":
            info.cpus = sum(1 for c in node.children if c.string("device_type") == "cpu")
        for c in node.children:
            scan(c, f"{path.rstrip('/')}/{c.name}", depth + 1, my_ac, my_sc, node)

    root = fdt.root
    scan(root, "/", 0, 2, 1, None)     # DT_ROOT_NODE_{ADDR,SIZE}_CELLS_DEFAULT
    info.log.append("Checking for initrd in /chosen")
    for start, size in info.memory:
        info.log.append(f"RAM: {start:016x} - {start + size - 1:016x}")
    mods = [BootModule("fdt", fdt_addr, total, "")] + info.modules
    for i, m in enumerate(mods):
        info.log.append(f"MODULE[{i}]: {m.start:016x} - {m.start + m.size:016x} "
                        f"{KIND_NAMES[m.kind]}")
    for m in info.modules:
        if m.cmdline is not None:
            info.log.append(f"CMDLINE[{m.start:016x}]:{m.path.split('/')[-2] or 'chosen'} "
                            f"{m.cmdline}")

    # boot_fdt_cmdline(): which /chosen property is Xen's command line.
    chosen = fdt.find("/chosen")
    kernel = next((m for m in info.modules if m.kind == "kernel"), None)
    if chosen is not None:
        xen = chosen.string("xen,xen-bootargs")
        if xen is None and (chosen.string("xen,dom0-bootargs") is not None
                            or (kernel is not None and kernel.cmdline)):
            xen = chosen.string("bootargs")
        info.xen_cmdline = xen or ""
        # Dom0's: the module's own, else xen,dom0-bootargs, else bootargs when it is not Xen's.
        dom0 = kernel.cmdline if kernel is not None and kernel.cmdline else \
            chosen.string("xen,dom0-bootargs")
        if dom0 is None and chosen.string("xen,xen-bootargs") is not None:
            dom0 = chosen.string("bootargs")
        if dom0 is None and xen is None:
            dom0 = chosen.string("bootargs")
        info.dom0_cmdline = dom0 or ""
    return info


# -- the command line (xen/common/kernel.c parse_params) ------------------------------------------

def parse_size_and_unit(s: str) -> tuple[int, str]:
    """(bytes, rest): a C-style number with an optional T/G/M/K/B suffix; no suffix means KiB."""
    i, base = 0, 10
    if s[:2].lower() == "0x":
        i, base = 2, 16
    elif s[:1] == "0" and len(s) > 1:
        i, base = 1, 8
    digits = "0123456789abcdef"[:base]
    j = i
    while j < len(s) and s[j].lower() in digits:
        j += 1
    value = int(s[i:j], base) if j > i else 0
    if j == i and base != 10:      # "0x" with nothing after, or a lone "0": C reads the 0
        j = 1
    shift = {"t": 40, "g": 30, "m": 20, "k": 10, "b": 0}.get(s[j:j + 1].lower())
    if shift is None:
        return value << 10, s[j:]
    return value << shift, s[j + 1:]


def parse_bool(s: str) -> int:
    return {"1": 1, "0": 0, "on": 1, "no": 0, "yes": 1, "off": 0, "true": 1, "false": 0,
            "enable": 1, "disable": 0}.get(s, -1)


@dataclass
class XenOptions:
    dom0_mem: int | None = None            # bytes
    dom0_max_vcpus: int = 0                # 0: one per pCPU
    dom0_vcpus_pin: bool = False
    console: str = ""
    dtuart: str = ""
    messages: list[str] = field(default_factory=list)


# Real Xen options a command line may carry that change nothing in this model: accepted quietly.
KNOWN_IGNORED = {"sync_console", "loglvl", "guest_loglvl", "conswitch", "console_timestamps",
                 "console_to_ring", "noreboot", "hmp-unsafe", "vwfi", "serrors",
                 "bootscrub", "watchdog"}


def parse_cmdline(cmdline: str) -> XenOptions:
    opts = XenOptions()
    for word in cmdline.split():
        key, eq, val = word.partition("=")
        assert_ = not key.startswith("no-")
        name = key if assert_ else key[3:]
        bad = False
        if name == "dom0_mem":
            size, rest = parse_size_and_unit(val) if val else (0, "")
            bad = bool(rest) or not val
            if not bad:
                opts.dom0_mem = size
        elif name == "dom0_max_vcpus":
            try:
                opts.dom0_max_vcpus = int(val, 0)
                bad = opts.dom0_max_vcpus < 0
            except ValueError:
                bad = True
        elif name == "dom0_vcpus_pin":
            b = parse_bool(val) if eq and val else 1
            bad = b < 0
            if not bad:
                opts.dom0_vcpus_pin = bool(b) == assert_
        elif name == "console":
            opts.console = val
        elif name == "sched":
            pass                 # Pool-0's scheduler: the hypervisor reads it (scheduler_init)
        elif name == "dtuart":
            opts.dtuart = val
        elif name not in KNOWN_IGNORED:
            opts.messages.append(f'parameter "{key}" unknown!')
            continue
        if bad:
            opts.messages.append(f'parameter "{key}" has invalid value "{val}", rc=-22!')
    return opts


def _what_it_is(data: bytes) -> str | None:
    """What a module that is no kernel probably is, to say why it was refused."""
    if data[:4] == b"\x7fELF":
        return "an ELF file (a vmlinux?): Xen boots the zImage the kernel build makes beside it"
    if data[:4] == b"\xd0\x0d\xfe\xed":
        return "a device tree blob"
    if data[:2] == b"\x1f\x8b":
        return "gzip data that holds no kernel"
    if data[:4] == b"\x27\x05\x19\x56":
        return "a U-Boot image without a kernel in it"
    head = data[:256]
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    if head and not any(head):
        return "all zeros (nothing was loaded there?)"
    return None


# -- start_xen -----------------------------------------------------------------------------------

@dataclass
class XenBoot:
    banner: str
    info: BootInfo
    options: XenOptions
    nr_pcpus: int
    total_mem: int
    dom0_mem: int
    dom0_max_vcpus: int | None
    dom0_vcpus_pin: bool
    console_uart: str | None          # DT path of the UART Xen keeps for itself
    kernel: KernelImage
    log: list[str]


def start_xen(read_phys: ReadPhys, entry: int, fdt_addr: int, *, cores: int,
              board_ram: tuple[int, int]) -> XenBoot:
    """The firmware jumped to `entry` with r2 = `fdt_addr`: boot Xen as far as creating Domain-0.

    `cores` is how many CPUs the board really has; `board_ram` its (base, size) of RAM.
    """
    banner = xen_image_banner(read_phys(entry, 0x100))
    if banner is None:
        raise BootError(f"the image at 0x{entry:08x} is not a Xen hypervisor image (no "
                        f"xenpy Xen record after its zImage header); this board runs Xen only")
    info = boot_fdt_info(read_phys, fdt_addr)
    log = [f"{banner}", *info.log]
    ram_base, ram_size = board_ram
    if not info.memory:
        raise BootError("the device tree has no /memory node with RAM in it")
    for start, size in info.memory:
        if start < ram_base or start + size > ram_base + ram_size:
            raise BootError(f"the device tree's memory 0x{start:08x}-0x{start + size - 1:08x} "
                            f"is not RAM on this board (0x{ram_base:08x}-"
                            f"0x{ram_base + ram_size - 1:08x})")
    total = sum(size for _s, size in info.memory)
    for m in info.modules:
        if m.start < ram_base or m.start + m.size > ram_base + ram_size:
            raise BootError(f"{m.path}: reg 0x{m.start:x}+0x{m.size:x} is outside RAM")

    opts = parse_cmdline(info.xen_cmdline)
    log += opts.messages

    # CPUs: what /cpus describes, as far as the silicon has them.
    described = info.cpus or 1
    nr = min(described, cores)
    for cpu in range(nr, described):
        log.append(f"Failed to bring up CPU {cpu} (error -5)")
    log.append(f"Brought up {nr} CPUs")

    # The UART Xen keeps: dtuart=, else /chosen/stdout-path.
    path = opts.dtuart
    if not path:
        chosen = info.fdt.find("/chosen")
        stdout = chosen.string("stdout-path") if chosen is not None else None
        path = stdout.split(":", 1)[0] if stdout else ""
    uart = None
    if path:
        node = info.fdt.find(path)
        if node is None or "reg" not in node.props:
            log.append(f'Unable to find device "{path}"')
        else:
            uart = path

    kernel_mod = next((m for m in info.modules if m.kind == "kernel"), None)
    if kernel_mod is None:
        raise BootError("no dom0 kernel: /chosen has no module with compatible "
                        '"xen,linux-zimage" (or "multiboot,kernel") and "xen,multiboot-module"')
    dom0_mem = opts.dom0_mem or DOM0_MEM_DEFAULT
    if dom0_mem % 4096:
        dom0_mem = (dom0_mem + 4095) & ~4095
    if dom0_mem >= total:
        raise BootError(f"dom0_mem={dom0_mem >> 20}M leaves no memory for Xen "
                        f"(the board has {total >> 20} MB)")
    log.append(f"Loading kernel from boot module @ {kernel_mod.start:016x}")
    name = f"{kernel_mod.path} (0x{kernel_mod.start:x})"
    raw = read_phys(kernel_mod.start, kernel_mod.size)
    try:
        image = probe_module(raw, name)
    except LoaderError as e:
        what = _what_it_is(raw)
        raise BootError(f"dom0 kernel: {e}" + (f": it is {what}" if what else "")) from None
    if image.arch != "arm32":         # an arm32 Xen probes no 64-bit kernel (kernel_probe)
        raise BootError(f"dom0 kernel: {name}: an arm64 {image.format}; this board's Xen is "
                        f"arm32 and boots an arm32 zImage (or uImage) as Domain-0")
    try:
        place = place_dom0(image, ram_base, dom0_mem)
    except LoaderError as e:
        raise BootError(f"dom0 kernel: {e}") from None
    log.append(f"Loading {image.format} from {kernel_mod.start:016x} to "
               f"{place.load_addr:016x}-{place.kernel_end:016x}")
    dom0_vcpus = opts.dom0_max_vcpus or None
    if dom0_vcpus is not None and dom0_vcpus > MAX_VIRT_CPUS:
        # domain_build.c (alloc_dom0_vcpu0): more vCPUs than pCPUs is allowed (overcommit),
        # more than MAX_VIRT_CPUS is capped, quietly in Xen; we say so.
        log.append(f"dom0_max_vcpus={dom0_vcpus} capped at MAX_VIRT_CPUS ({MAX_VIRT_CPUS})")
        dom0_vcpus = MAX_VIRT_CPUS
    return XenBoot(banner, info, opts, nr, total, dom0_mem,
                   dom0_vcpus, opts.dom0_vcpus_pin, uart, image, log)


__all__ = ["BootError", "BootInfo", "BootModule", "XenBoot", "XenOptions", "boot_fdt_info",
           "read_fdt_blocks",
           "parse_cmdline", "parse_size_and_unit", "start_xen", "xen_image_banner",
           "XENPY_XEN_MAGIC"]
