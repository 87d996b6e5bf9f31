"""The domU device tree libxl writes (toolstack.libxl_arm), read back with pyfdt."""
from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfdt.pyfdt import FdtBlobParse, FdtPropertyStrings, FdtPropertyWords

from toolstack.libxl_arm import (compute_mpidr, extended_regions, gic_interrupt, make_guest_dtb,
                                 parse_dtb_summary)
from xenpy.public.arch_arm import LAYOUT_4_4, LAYOUT_CURRENT

MiB = 1 << 20
SEED = bytes(range(128))


def hi_lo(v: int) -> list[int]:
    return [v >> 32, v & 0xFFFFFFFF]


def expected_tree(layout, nr_vcpus: int, mem: int, cmdline: str, ver: tuple[int, int]) -> dict:
    """What libxl writes, spelled out node by node in its order."""
    old = layout is LAYOUT_4_4
    ph = 1 if old else 65000
    base = 0x80000000 if old else 0x40000000
    tree = {
        "/": {"model": [f"XENVM-{ver[0]}.{ver[1]}"],
              "compatible": [f"xen,xenvm-{ver[0]}.{ver[1]}", "xen,xenvm"],
              "interrupt-parent": [ph], "#address-cells": [2], "#size-cells": [2]},
        "/chosen": {"bootargs": [cmdline]} if old else
                   {"bootargs": [cmdline],
                    "rng-seed": [int.from_bytes(SEED[i:i + 4], "big") for i in range(0, 128, 4)]},
        "/cpus": {"#address-cells": [1], "#size-cells": [0]},
    }
    for i in range(nr_vcpus):
        tree[f"/cpus/cpu@{i}"] = {"device_type": ["cpu"], "compatible": ["arm,cortex-a15"],
                                  "enable-method": ["psci"], "reg": [i]}
    tree["/psci"] = {"compatible": ["arm,psci"] if old else ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"],
                     "method": ["hvc"], "cpu_off": [1], "cpu_on": [2]}
    tree[f"/memory@{base:x}"] = {"device_type": ["memory"], "reg": hi_lo(base) + hi_lo(mem)}
    gicd, gicc = (0x2C001000, 0x2C002000) if old else (0x03001000, 0x03002000)
    tree[f"/interrupt-controller@{gicd:x}"] = {
        "compatible": ["arm,cortex-a15-gic", "arm,cortex-a9-gic"],
        "#interrupt-cells": [3], "#address-cells": [0], "interrupt-controller": True,
        # libxl 4.4 described the CPU interface with the distributor's size (0x1000)
        "reg": [0, gicd, 0, 0x1000, 0, gicc, 0, 0x1000 if old else 0x2000],
        "linux,phandle": [ph], "phandle": [ph]}
    tree["/timer"] = {"compatible": ["arm,armv7-timer"],
                      "interrupts": [1, 13, 0xF08, 1, 14, 0xF08, 1, 11, 0xF08],
                      "interrupt-parent": [ph]}
    tree["/hypervisor"] = {"compatible": [f"xen,xen-{ver[0]}.{ver[1]}", "xen,xen"],
                           "reg": [0, 0xB0000000, 0, 0x20000] if old else [0, 0x38000000, 0, 0x1000000],
                           "interrupts": [1, 15, 0xF08], "interrupt-parent": [ph]}
    return tree


@pytest.mark.parametrize("layout, ver", [(LAYOUT_4_4, (4, 4)), (LAYOUT_CURRENT, (4, 19))])
@pytest.mark.parametrize("nr_vcpus", [1, 2])
def test_tree_matches_libxl_node_by_node(layout, ver, nr_vcpus):
    mem = 512 * MiB if layout is LAYOUT_4_4 else 256 * MiB
    dtb = make_guest_dtb(layout, nr_vcpus=nr_vcpus, mem_bytes=mem, cmdline="console=hvc0",
                         xen_version=ver, rng_seed=SEED)
    got = parse_dtb_summary(dtb)
    want = expected_tree(layout, nr_vcpus, mem, "console=hvc0", ver)
    assert list(got) == list(want)  # node order
    for path in want:
        assert list(got[path].items()) == list(want[path].items()), path  # values and order


def test_pyfdt_reads_it_directly():
    dtb = make_guest_dtb(LAYOUT_4_4, nr_vcpus=2, mem_bytes=64 * MiB, cmdline="root=/dev/xvda",
                         xen_version=(4, 4))
    fdt = FdtBlobParse(io.BytesIO(dtb)).to_fdt()
    bootargs = fdt.resolve_path("/chosen/bootargs")
    assert isinstance(bootargs, FdtPropertyStrings) and bootargs[0] == "root=/dev/xvda"
    reg = fdt.resolve_path("/memory@80000000/reg")
    assert isinstance(reg, FdtPropertyWords) and list(reg.words) == [0, 0x80000000, 0, 64 * MiB]
    assert list(fdt.resolve_path("/hypervisor/interrupts").words) == [1, 15, 0xF08]
    assert fdt.resolve_path("/cpus/cpu@1/reg")[0] == 1


def walk_fdt(dtb: bytes) -> list[tuple[str, str]]:
    """An independent flat-tree reader, strict about what libfdt requires."""
    magic, total, off_struct, off_strings, off_rsv, version, last_comp = struct.unpack_from(">7I", dtb)
    assert magic == 0xD00DFEED and total == len(dtb) and version == 17 and last_comp == 16
    assert off_struct % 4 == 0 and off_rsv % 8 == 0
    assert struct.unpack_from(">QQ", dtb, off_rsv) == (0, 0)  # empty reservation map
    pos, depth, out, seen_child = off_struct, 0, [], [False]
    while True:
        (tok,) = struct.unpack_from(">I", dtb, pos)
        pos += 4
        if tok == 1:  # BEGIN_NODE
            end = dtb.index(b"\0", pos)
            out.append(("node", dtb[pos:end].decode()))
            seen_child[-1] = True
            seen_child.append(False)
            pos = (end + 4) & ~3
            depth += 1
        elif tok == 3:  # PROP
            length, nameoff = struct.unpack_from(">II", dtb, pos)
            assert not seen_child[-1], "property after a subnode"
            name = dtb[off_strings + nameoff:dtb.index(b"\0", off_strings + nameoff)].decode()
            out.append(("prop", name))
            pos = (pos + 8 + length + 3) & ~3
        elif tok == 2:  # END_NODE
            seen_child.pop()
            depth -= 1
        elif tok == 9:  # END
            assert depth == 0
            return out
        else:
            raise AssertionError(f"bad token {tok}")


def test_blob_is_well_formed():
    dtb = make_guest_dtb(LAYOUT_CURRENT, nr_vcpus=2, mem_bytes=4096 * MiB, cmdline="x",
                         xen_version=(4, 19), vuart="sbsa_uart", gpaddr_bits=40)
    items = walk_fdt(dtb)
    assert items[0] == ("node", "")  # the root has an empty name
    assert [n for kind, n in items if kind == "node"] == [
        "", "chosen", "cpus", "cpu@0", "cpu@1", "psci", "memory@40000000", "memory@200000000",
        "interrupt-controller@3001000", "timer", "hypervisor", "sbsa-pl011"]


def test_4_4_ignores_psci_version_and_has_no_rng_seed():
    tree = parse_dtb_summary(make_guest_dtb(LAYOUT_4_4, nr_vcpus=1, mem_bytes=64 * MiB, cmdline=None,
                                            xen_version=(4, 4), psci_version="1.0"))
    assert tree["/psci"]["compatible"] == ["arm,psci"]
    assert tree["/chosen"] == {}  # no cmdline, no seed


@pytest.mark.parametrize("ver, compat", [("0.2", ["arm,psci-0.2", "arm,psci"]), ("0.1", ["arm,psci"])])
def test_psci_versions(ver, compat):
    tree = parse_dtb_summary(make_guest_dtb(LAYOUT_CURRENT, nr_vcpus=1, mem_bytes=64 * MiB, cmdline=None,
                                            xen_version=(4, 19), psci_version=ver))
    assert tree["/psci"]["compatible"] == compat


def test_empty_cmdline_is_an_empty_string():
    tree = parse_dtb_summary(make_guest_dtb(LAYOUT_CURRENT, nr_vcpus=1, mem_bytes=64 * MiB, cmdline="",
                                            xen_version=(4, 19)))
    assert tree["/chosen"]["bootargs"] == b"\0"
    assert len(tree["/chosen"]["rng-seed"]) == 32  # 128 random bytes


def test_memory_over_3gib_uses_second_bank():
    tree = parse_dtb_summary(make_guest_dtb(LAYOUT_CURRENT, nr_vcpus=1, mem_bytes=4096 * MiB,
                                            cmdline=None, xen_version=(4, 19)))
    assert tree["/memory@40000000"]["reg"] == [0, 0x40000000, 0, 0xC0000000]
    assert tree["/memory@200000000"]["reg"] == [2, 0, 0, 0x40000000]


def test_gicv3_arm64_guest():
    tree = parse_dtb_summary(make_guest_dtb(LAYOUT_CURRENT, nr_vcpus=18, mem_bytes=64 * MiB,
                                            cmdline=None, xen_version=(4, 19), gic_version="v3",
                                            arch="arm64", clock_frequency=24_000_000))
    gic = tree["/interrupt-controller@3001000"]
    assert gic["compatible"] == ["arm,gic-v3"]
    assert gic["reg"] == [0, 0x03001000, 0, 0x10000, 0, 0x03020000, 0, 0x1000000]
    assert tree["/timer"]["compatible"] == ["arm,armv8-timer"]
    assert tree["/timer"]["clock-frequency"] == [24_000_000]
    assert tree["/cpus/cpu@f"]["reg"] == [0xF] and tree["/cpus/cpu@100"]["reg"] == [0x100]
    assert tree["/cpus/cpu@101"]["compatible"] == ["arm,armv8"] and len(tree) == 8 + 18


def test_initrd_vuart_and_extended_regions():
    tree = parse_dtb_summary(make_guest_dtb(
        LAYOUT_CURRENT, nr_vcpus=1, mem_bytes=129 * MiB, cmdline=None, xen_version=(4, 19),
        initrd=(0x48000000, 0x48123456), vuart="sbsa_uart", gpaddr_bits=40))
    assert tree["/chosen"]["linux,initrd-start"] == [0, 0x48000000]
    assert tree["/chosen"]["linux,initrd-end"] == [0, 0x48123456]
    assert tree["/sbsa-pl011"] == {
        "compatible": ["arm,sbsa-uart"], "reg": [0, 0x22000000, 0, 0x1000],
        "interrupts": [0, 0, 0xF04], "interrupt-parent": [65000], "current-speed": [115200]}
    # grant table, then the rest of bank 0 above RAM (2 MiB aligned), then all of bank 1
    assert tree["/hypervisor"]["reg"] == [0, 0x38000000, 0, 0x1000000,
                                          0, 0x48200000, 0, 0xB7E00000,
                                          2, 0, 0xFE, 0]


def test_extended_regions_clip_to_address_width():
    assert extended_regions(LAYOUT_CURRENT, 64 * MiB, 32) == [(0x44000000, 0xBC000000)]
    assert extended_regions(LAYOUT_CURRENT, 3072 * MiB, 32) == []  # bank 0 full, bank 1 unreachable
    assert extended_regions(LAYOUT_4_4, 64 * MiB, 40) == []


def test_helpers():
    assert [compute_mpidr(i) for i in (0, 15, 16, 17, 127)] == [0, 0xF, 0x100, 0x101, 0x70F]
    assert gic_interrupt(31) == [1, 15, 0xF08] and gic_interrupt(32, level=4) == [0, 0, 0xF04]
    with pytest.raises(ValueError):
        gic_interrupt(5)


@pytest.mark.parametrize("kw, msg", [
    (dict(nr_vcpus=9), "nr_vcpus must be 1..8 with a vGICv2, not 9"),
    (dict(nr_vcpus=0), "nr_vcpus must be 1..8 with a vGICv2, not 0"),
    (dict(gic_version="v4"), "gic_version must be 'v2' or 'v3', not 'v4'"),
    (dict(arch="x86"), "arch must be 'arm32' or 'arm64', not 'x86'"),
    (dict(psci_version="2.0"), "psci_version must be one of 1.0, 0.2, 0.1, not '2.0'"),
    (dict(cmdline="a\nb"), "cmdline must be printable ASCII without newlines"),
    (dict(mem_bytes=5000), "guest memory must be a positive multiple of 4 KiB, not 5000"),
    (dict(rng_seed=b"short"), "rng_seed must be 128 bytes, not 5"),
    (dict(vuart="pl011"), "vuart must be 'sbsa_uart' or None, not 'pl011'"),
])
def test_bad_arguments(kw, msg):
    args = dict(nr_vcpus=1, mem_bytes=64 * MiB, cmdline=None, xen_version=(4, 19)) | kw
    with pytest.raises(ValueError) as e:
        make_guest_dtb(LAYOUT_CURRENT, **args)
    assert str(e.value) == msg


@pytest.mark.parametrize("kw, what", [(dict(gic_version="v3"), "a vGICv3"),
                                      (dict(initrd=(0x88000000, 0x88001000)), "a ramdisk in the DT"),
                                      (dict(vuart="sbsa_uart"), "a vuart")])
def test_4_4_layout_lacks_newer_devices(kw, what):
    with pytest.raises(ValueError, match=f"^the 4.4 layout has no {what}$"):
        make_guest_dtb(LAYOUT_4_4, nr_vcpus=1, mem_bytes=64 * MiB, cmdline=None,
                       xen_version=(4, 4), **kw)


def test_4_4_memory_limit():
    with pytest.raises(ValueError, match="exceeds the 4.4 layout's maximum"):
        make_guest_dtb(LAYOUT_4_4, nr_vcpus=1, mem_bytes=1024 * MiB, cmdline=None, xen_version=(4, 4))


def test_summary_rejects_garbage():
    with pytest.raises(ValueError, match="not a valid flattened device tree"):
        parse_dtb_summary(b"\x00" * 64)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([LAYOUT_4_4, LAYOUT_CURRENT]), st.integers(1, 8),
       st.integers(1, 4 * 256 * 1024).map(lambda pages: pages * 4096),
       st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=80))
def test_round_trip_describes_the_guest(layout, nr_vcpus, mem, cmdline):
    mem = min(mem, layout.max_mem_bytes)
    tree = parse_dtb_summary(make_guest_dtb(layout, nr_vcpus=nr_vcpus, mem_bytes=mem, cmdline=cmdline,
                                            xen_version=(4, 4)))
    assert tree["/chosen"]["bootargs"] == [cmdline]
    assert [p for p in tree if p.startswith("/cpus/")] == [f"/cpus/cpu@{i}" for i in range(nr_vcpus)]
    described = [(hi << 32 | lo, shi << 32 | slo) for path, props in tree.items()
                 if path.startswith("/memory@")
                 for hi, lo, shi, slo in [props["reg"]]]
    assert described == layout.ram_banks(mem) and sum(s for _, s in described) == mem


def test_extended_regions_leave_out_iomem_as_current_libxl_does():
    # 64 MiB of RAM: bank 0 free from 0x44000000. A 16 MiB iomem mapping at 0x50000000 splits
    # it; one at 0x44000000 only moves its start; a small gap (< 64 MiB) is dropped.
    io = [(0x50000, 0x1000), (0x44000, 0x10), (0x54000, 0x100)]
    assert extended_regions(LAYOUT_CURRENT, 64 * MiB, 40, io) == [
        (0x44010000, 0x50000000 - 0x44010000),      # up to the first mapping
        (0x54100000, 0x100000000 - 0x54100000),     # 0x51000000..0x54000000 is under 64 MiB
        (0x200000000, 0xFE00000000)]


def _partial(passthrough: bool = True, aliases: bool = True, name: str = "passthrough") -> bytes:
    import subprocess
    body = ""
    if passthrough:
        body += f"""{name} {{ compatible = "simple-bus"; ranges; #address-cells = <2>;
                    #size-cells = <2>; pio@1c20800 {{ compatible = "allwinner,sun7i-a20-pinctrl";
                    reg = <0 0x1c20800 0 0x400>; interrupts = <0 28 4>;
                    interrupt-parent = <65000>; }}; }};"""
    if aliases:
        body += 'aliases { serial0 = "/passthrough/pio@1c20800"; };'
    src = f"/dts-v1/; / {{ #address-cells = <2>; #size-cells = <2>; {body} }};"
    return subprocess.run(["dtc", "-I", "dts", "-O", "dtb"], input=src.encode(),
                          capture_output=True, check=True).stdout


def test_partial_device_tree_passthrough_and_aliases_are_merged():
    tree = parse_dtb_summary(make_guest_dtb(
        LAYOUT_CURRENT, nr_vcpus=1, mem_bytes=64 * MiB, cmdline=None, xen_version=(4, 19),
        partial_fdt=_partial(), partial_name="pt.dtb"))
    assert list(tree)[-3:] == ["/passthrough", "/passthrough/pio@1c20800", "/aliases"]
    assert tree["/passthrough/pio@1c20800"]["reg"] == [0, 0x1C20800, 0, 0x400]
    assert tree["/aliases"]["serial0"] == ["/passthrough/pio@1c20800"]
    # /aliases is optional, /passthrough is not (and its name must match exactly).
    make_guest_dtb(LAYOUT_CURRENT, nr_vcpus=1, mem_bytes=64 * MiB, cmdline=None,
                   xen_version=(4, 19), partial_fdt=_partial(aliases=False))
    for bad, msg in ((_partial(passthrough=False), 'pt.dtb: Can\'t copy the node "/passthrough"'),
                     (_partial(name="passthrough@0"), 'pt.dtb: Can\'t copy the node "/passthrough"'),
                     (b"not a tree at all", "pt.dtb: Partial FDT is not a valid Flat Device Tree"),
                     (_partial()[:100], "pt.dtb: Partial FDT totalsize is too big")):
        with pytest.raises(ValueError) as e:
            make_guest_dtb(LAYOUT_CURRENT, nr_vcpus=1, mem_bytes=64 * MiB, cmdline=None,
                           xen_version=(4, 19), partial_fdt=bad, partial_name="pt.dtb")
        assert str(e.value).startswith(msg), str(e.value)
