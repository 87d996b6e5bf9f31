"""tools/libs/light/libxl_arm.c: the device tree libxl writes for an ARM domU.

The tree describes the guest's virtual platform: vCPUs (started with PSCI), RAM, the vGIC, the
generic timer and the /hypervisor node a Xen-aware kernel looks for (grant-table window and
event-channel PPI). Nodes and properties come in libxl's order and with its encodings. For the
4.4 layout the tree is the one libxl 4.4 wrote, quirks included.
"""
from __future__ import annotations

import io
import os

from pyfdt.pyfdt import (Fdt, FdtBlobParse, FdtNode, FdtProperty, FdtPropertyBytes,
                         FdtPropertyStrings, FdtPropertyWords)

from xenpy.public.arch_arm import (
    DT_IRQ_TYPE_LEVEL_HIGH, DT_IRQ_TYPE_LEVEL_LOW, GUEST_EVTCHN_PPI, GUEST_GICV3_GICD_BASE,
    GUEST_GICV3_GICD_SIZE, GUEST_GICV3_GICR0_BASE, GUEST_GICV3_GICR0_SIZE, GUEST_MAX_VCPUS,
    GUEST_MAX_VCPUS_GICV2, GUEST_PL011_BASE, GUEST_PL011_SIZE, GUEST_TIMER_PHYS_NS_PPI,
    GUEST_TIMER_PHYS_S_PPI, GUEST_TIMER_VIRT_PPI, GUEST_VPL011_SPI, PSCI_cpu_off, PSCI_cpu_on,
    GuestLayout,
)

# struct arch_info in libxl_arm.c
_TIMER_COMPAT = {"arm32": "arm,armv7-timer", "arm64": "arm,armv8-timer"}
_CPU_COMPAT = {"arm32": "arm,cortex-a15", "arm64": "arm,armv8"}
_PSCI_COMPAT = {
    "1.0": ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"],
    "0.2": ["arm,psci-0.2", "arm,psci"],
    "0.1": ["arm,psci"],
}
RNG_SEED_SIZE = 128  # bytes of /chosen/rng-seed
EXT_REGION_MIN_SIZE = 64 << 20
MAX_NR_EXT_REGIONS = 256
_MB2 = 2 << 20
_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F)) | {"\t"}  # what a DT string may hold


def compute_mpidr(cpuid: int) -> int:
    """libxl__compute_mpdir(): the MPIDR affinity (Aff0 = low 4 bits, Aff1 = the rest) that
    names a vCPU in the DT and in PSCI CPU_ON."""
    return (cpuid & 0x0F) | ((cpuid >> 4) & 0xFF) << 8


def _cells(value: int, n: int) -> list[int]:
    return [(value >> (32 * (n - 1 - i))) & 0xFFFFFFFF for i in range(n)]


def _regs(*ranges: tuple[int, int], addr_cells: int = 2, size_cells: int = 2) -> list[int]:
    out: list[int] = []
    for base, size in ranges:
        out += _cells(base, addr_cells) + _cells(size, size_cells)
    return out


def gic_interrupt(irq: int, cpumask: int = 0xF, level: int = DT_IRQ_TYPE_LEVEL_LOW) -> list[int]:
    """The 3-cell GIC interrupt specifier: PPI flag, number relative to 16/32, cpumask|type."""
    if irq < 16:
        raise ValueError(f"SGI {irq} cannot be described in a device tree")
    is_ppi = irq < 32
    return [int(is_ppi), irq - (16 if is_ppi else 32), cpumask << 8 | level]


def extended_regions(layout: GuestLayout, mem_bytes: int, gpaddr_bits: int,
                     iomem: list[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """Unused guest address space offered in /hypervisor reg 1..N (finalize_hypervisor_node):
    the rest of each RAM bank above its RAM, 2 MiB aligned, clipped to the guest's physical
    address width, less the guest frames iomem= maps there ((gfn, number) pairs), each piece
    at least 64 MiB. libxl 4.4 had none."""
    if layout.magic_base is None:
        return []
    if not 32 <= gpaddr_bits <= 64:
        raise ValueError(f"gpaddr_bits must be 32..64, not {gpaddr_bits}")
    populated = dict(layout.ram_banks(mem_bytes))
    ranges = sorted(iomem)                           # qsort(..., compare_iomem): by gfn
    regions: list[tuple[int, int]] = []

    def add(start: int, size: int) -> None:
        if size >= EXT_REGION_MIN_SIZE and len(regions) < MAX_NR_EXT_REGIONS:
            regions.append((start, size))

    for base, bank_size in ((layout.ram_base, layout.ram_max), (layout.ram1_base, layout.ram1_size)):
        start = base + (populated.get(base, 0) + _MB2 - 1 & ~(_MB2 - 1))
        end = min((1 << gpaddr_bits) - 1, base + bank_size - 1)  # inclusive
        if end < start or end - start + 1 < EXT_REGION_MIN_SIZE:
            continue
        for gfn, number in ranges:
            io_start, io_end = gfn << 12, ((gfn + number) << 12) - 1
            if io_end >= start and io_start <= end:
                if io_start > start:
                    add(start, io_start - start)
                start = io_end + 1
                if start > end:
                    break
        if end >= start:
            add(start, end - start + 1)
    return regions


def merge_partial_fdt(root: FdtNode, partial: bytes, name: str = "device_tree") -> None:
    """copy_partial_fdt(): the partial tree's /passthrough node (required) and /aliases (if
    any) are copied, with everything under them, at the end of the guest's root. `partial`
    must be a valid DTB (check_partial_fdt); errors are one-line ValueErrors naming `name`."""
    if len(partial) < 8 or int.from_bytes(partial[:4], "big") != 0xD00DFEED:
        raise ValueError(f"{name}: Partial FDT is not a valid Flat Device Tree")
    total = int.from_bytes(partial[4:8], "big")
    if total > len(partial):
        raise ValueError(f"{name}: Partial FDT totalsize is too big ({total} bytes, the file "
                         f"has {len(partial)})")
    try:
        pfdt = FdtBlobParse(io.BytesIO(bytes(partial[:total]))).to_fdt()
        proot = pfdt.get_rootnode()
    except Exception as e:  # pyfdt raises bare Exceptions and struct errors
        raise ValueError(f"{name}: Failed to check the partial FDT ({e})") from None
    if proot is None:
        raise ValueError(f"{name}: Failed to check the partial FDT (no root node)")
    for node_name, required in (("passthrough", True), ("aliases", False)):
        # The name must match exactly: "passthrough@0" is not "/passthrough".
        node = next((n for n in proot if isinstance(n, FdtNode) and n.get_name() == node_name),
                    None)
        if node is None:
            if required:
                raise ValueError(f"{name}: Can't copy the node \"/{node_name}\" from the "
                                 f"partial FDT (it has none)")
            continue
        node.set_parent_node(root)
        root.append(node)


def _strings(name: str, *values: str) -> FdtPropertyStrings:
    return FdtPropertyStrings(name, list(values))


def _words(name: str, *values: int) -> FdtPropertyWords:
    return FdtPropertyWords(name, list(values))


def _node(parent: FdtNode, name: str) -> FdtNode:
    node = FdtNode(name)
    node.set_parent_node(parent)
    parent.append(node)
    return node


def _add_interrupts(node: FdtNode, specs: list[list[int]], phandle: int) -> None:
    # fdt_property_interrupts() always names the GIC as interrupt-parent too.
    node.append(_words("interrupts", *[c for spec in specs for c in spec]))
    node.append(_words("interrupt-parent", phandle))


def make_guest_dtb(layout: GuestLayout, *, nr_vcpus: int, mem_bytes: int, cmdline: str | None,
                   xen_version: tuple[int, int], gic_version: str = "v2", arch: str = "arm32",
                   psci_version: str = "1.0", initrd: tuple[int, int] | None = None,
                   rng_seed: bytes | None = None, clock_frequency: int | None = None,
                   vuart: str | None = None, gpaddr_bits: int | None = None,
                   iomem: list[tuple[int, int]] = (), partial_fdt: bytes | None = None,
                   partial_name: str = "device_tree") -> bytes:
    """Build the DTB libxl gives a domU (libxl__prepare_dtb, then the finalise step that fills
    in memory sizes, initrd bounds and the /hypervisor regions).

    initrd: (start, end) guest addresses of a loaded ramdisk. rng_seed: the 128 bytes for
    /chosen/rng-seed (random if None). clock_frequency: the timer frequency Xen reports, if any.
    vuart: "sbsa_uart" adds the vpl011 node. gpaddr_bits: the domain's physical address width;
    when given, /hypervisor also lists the extended regions, less the `iomem` (gfn, number)
    ranges. partial_fdt: a `device_tree=` DTB whose /passthrough and /aliases are merged
    (errors name `partial_name`). For the 4.4 layout the tree is libxl 4.4's: no rng-seed or clock-frequency, GIC phandle 1, and psci_version does not
    apply (4.4 only had PSCI 0.1).
    """
    old = layout.magic_base is None  # the 4.4 map: use libxl 4.4's tree
    major, minor = xen_version
    if arch not in _CPU_COMPAT:
        raise ValueError(f"arch must be 'arm32' or 'arm64', not {arch!r}")
    if gic_version not in ("v2", "v3"):
        raise ValueError(f"gic_version must be 'v2' or 'v3', not {gic_version!r}")
    if psci_version not in _PSCI_COMPAT:
        raise ValueError(f"psci_version must be one of {', '.join(_PSCI_COMPAT)}, not {psci_version!r}")
    max_vcpus = GUEST_MAX_VCPUS_GICV2 if gic_version == "v2" else GUEST_MAX_VCPUS
    if not 1 <= nr_vcpus <= max_vcpus:
        raise ValueError(f"nr_vcpus must be 1..{max_vcpus} with a vGIC{gic_version}, not {nr_vcpus}")
    layout.check_mem(mem_bytes)
    if cmdline is not None and any(c not in _PRINTABLE for c in cmdline):
        raise ValueError("cmdline must be printable ASCII without newlines")
    if old:
        for given, what in ((gic_version != "v2", "a vGICv3"), (initrd, "a ramdisk in the DT"),
                            (vuart, "a vuart")):
            if given:
                raise ValueError(f"the 4.4 layout has no {what}")
    if vuart not in (None, "sbsa_uart"):
        raise ValueError(f"vuart must be 'sbsa_uart' or None, not {vuart!r}")
    if rng_seed is None:
        rng_seed = os.urandom(RNG_SEED_SIZE)
    if len(rng_seed) != RNG_SEED_SIZE:
        raise ValueError(f"rng_seed must be {RNG_SEED_SIZE} bytes, not {len(rng_seed)}")
    phandle = layout.gic_phandle

    root = FdtNode("/")
    root.append(_strings("model", f"XENVM-{major}.{minor}"))
    root.append(_strings("compatible", f"xen,xenvm-{major}.{minor}", "xen,xenvm"))
    root.append(_words("interrupt-parent", phandle))
    root.append(_words("#address-cells", 2))
    root.append(_words("#size-cells", 2))

    chosen = _node(root, "chosen")
    if cmdline is not None:
        # pyfdt cannot hold an empty string list; "" is still a 1-byte property in libfdt.
        chosen.append(_strings("bootargs", cmdline) if cmdline else
                      FdtPropertyBytes("bootargs", [0]))
    if initrd is not None:
        chosen.append(_words("linux,initrd-start", *_cells(initrd[0], 2)))
        chosen.append(_words("linux,initrd-end", *_cells(initrd[1], 2)))
    if not old:
        seed = [int.from_bytes(rng_seed[i:i + 4], "big") for i in range(0, RNG_SEED_SIZE, 4)]
        chosen.append(_words("rng-seed", *seed))

    cpus = _node(root, "cpus")
    cpus.append(_words("#address-cells", 1))
    cpus.append(_words("#size-cells", 0))
    for i in range(nr_vcpus):
        # libxl 4.4 named and numbered vCPUs by index; later versions by MPIDR affinity.
        reg = i if old else compute_mpidr(i)
        cpu = _node(cpus, f"cpu@{i}" if old else f"cpu@{reg:x}")
        cpu.append(_strings("device_type", "cpu"))
        cpu.append(_strings("compatible", _CPU_COMPAT[arch]))
        cpu.append(_strings("enable-method", "psci"))
        cpu.append(_words("reg", reg))

    psci = _node(root, "psci")
    psci.append(_strings("compatible", *_PSCI_COMPAT["0.1" if old else psci_version]))
    psci.append(_strings("method", "hvc"))
    psci.append(_words("cpu_off", PSCI_cpu_off))
    psci.append(_words("cpu_on", PSCI_cpu_on))

    # Empty banks are nopped out by libxl's finalise step, i.e. absent.
    for base, size in layout.ram_banks(mem_bytes):
        mem = _node(root, f"memory@{base:08x}" if old else f"memory@{base:x}")
        mem.append(_strings("device_type", "memory"))
        mem.append(_words("reg", *_regs((base, size))))

    if gic_version == "v2":
        gicd = (layout.gicd_base, layout.gicd_size)
        # libxl 4.4 passed GUEST_GICD_SIZE for the CPU interface too.
        gicc = (layout.gicc_base, layout.gicd_size if old else layout.gicc_size)
        compat = ["arm,cortex-a15-gic", "arm,cortex-a9-gic"]
    else:
        gicd = (GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICD_SIZE)
        gicc = (GUEST_GICV3_GICR0_BASE, GUEST_GICV3_GICR0_SIZE)  # the redistributors
        compat = ["arm,gic-v3"]
    gic = _node(root, f"interrupt-controller@{gicd[0]:08x}" if old
                else f"interrupt-controller@{gicd[0]:x}")
    gic.append(_strings("compatible", *compat))
    gic.append(_words("#interrupt-cells", 3))
    gic.append(_words("#address-cells", 0))
    gic.append(FdtProperty("interrupt-controller"))
    gic.append(_words("reg", *_regs(gicd, gicc)))
    gic.append(_words("linux,phandle", phandle))
    gic.append(_words("phandle", phandle))

    timer = _node(root, "timer")
    timer.append(_strings("compatible", _TIMER_COMPAT[arch]))
    _add_interrupts(timer, [gic_interrupt(GUEST_TIMER_PHYS_S_PPI),
                            gic_interrupt(GUEST_TIMER_PHYS_NS_PPI),
                            gic_interrupt(GUEST_TIMER_VIRT_PPI)], phandle)
    if clock_frequency and not old:
        timer.append(_words("clock-frequency", clock_frequency))

    hyp = _node(root, "hypervisor")
    hyp.append(_strings("compatible", f"xen,xen-{major}.{minor}", "xen,xen"))
    regions = [(layout.gnttab_base, layout.gnttab_size)]  # region 0: the grant-table window
    if gpaddr_bits is not None:
        regions += extended_regions(layout, mem_bytes, gpaddr_bits, list(iomem))
    hyp.append(_words("reg", *_regs(*regions)))
    _add_interrupts(hyp, [gic_interrupt(GUEST_EVTCHN_PPI)], phandle)

    if vuart == "sbsa_uart":
        uart = _node(root, "sbsa-pl011")
        uart.append(_strings("compatible", "arm,sbsa-uart"))
        uart.append(_words("reg", *_regs((GUEST_PL011_BASE, GUEST_PL011_SIZE))))
        _add_interrupts(uart, [gic_interrupt(GUEST_VPL011_SPI, level=DT_IRQ_TYPE_LEVEL_HIGH)],
                        phandle)
        uart.append(_words("current-speed", 115200))

    if partial_fdt is not None:
        merge_partial_fdt(root, partial_fdt, partial_name)

    fdt = Fdt()
    fdt.add_rootnode(root)
    return fdt.to_dtb()


def parse_dtb_summary(dtb: bytes) -> dict[str, dict[str, object]]:
    """Decode a DTB into {node path: {property: value}}, nodes in tree order.

    Values: list[str] for string lists, list[int] for 32-bit cells, bytes for other data,
    True for an empty property (pyfdt guesses the type from the bytes, as dtc does).
    """
    try:
        fdt = FdtBlobParse(io.BytesIO(bytes(dtb))).to_fdt()
    except Exception as e:  # pyfdt raises bare Exceptions and struct errors
        raise ValueError(f"not a valid flattened device tree ({e})") from None
    if fdt.get_rootnode() is None:
        raise ValueError("not a valid flattened device tree (no root node)")
    out: dict[str, dict[str, object]] = {}

    def visit(node: FdtNode, path: str) -> None:
        props: dict[str, object] = {}
        out[path] = props
        children = []
        for item in node:
            if isinstance(item, FdtNode):
                children.append(item)
            elif isinstance(item, FdtPropertyStrings):
                props[item.get_name()] = list(item.strings)
            elif isinstance(item, FdtPropertyWords):
                props[item.get_name()] = list(item.words)
            elif isinstance(item, FdtPropertyBytes):
                props[item.get_name()] = bytes(b & 0xFF for b in item.bytes)
            elif isinstance(item, FdtProperty):
                props[item.get_name()] = True
        for child in children:
            visit(child, path.rstrip("/") + "/" + child.get_name())

    visit(fdt.get_rootnode(), "/")
    return out
