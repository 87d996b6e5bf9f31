"""Kernel image recognition and placement (xenpy.loader.kernel) and the guest memory maps."""
from __future__ import annotations

import gzip
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenpy.loader.kernel import (FDT_MAGIC, UIMAGE_MAGIC, ZIMAGE32_MAGIC, ZIMAGE64_MAGIC_V0,
                                 ZIMAGE64_MAGIC_V1, LoaderError, load_kernel, place_dom0,
                                 place_domu, probe, probe_module)
from xenpy.public import arch_arm
from xenpy.public.arch_arm import LAYOUT_4_4, LAYOUT_CURRENT, LAYOUTS

MiB = 1 << 20


def zimage(size: int = 0x1000, start: int = 0, end: int | None = None,
           tail: bytes = b"") -> bytes:
    """A zImage: the 0x30-byte header (magic, start, end at 0x24) and `size` bytes in all."""
    body = bytearray(size)
    body[0:4] = b"\x00\x00\xa0\xe1"  # mov r0, r0
    struct.pack_into("<III", body, 0x24, ZIMAGE32_MAGIC, start,
                     start + size if end is None else end)
    return bytes(body) + tail


def fdt_blob(totalsize: int = 0x40) -> bytes:
    return struct.pack(">II", FDT_MAGIC, totalsize) + bytes(totalsize - 8)


def arm64_image(size: int = 0x2000, text_offset: int = 0x80000, version: int = 1) -> bytes:
    body = bytearray(size)
    struct.pack_into("<IIQ", body, 0, ZIMAGE64_MAGIC_V0 if version == 0 else 0x91005a4d, 0,
                     text_offset)
    if version == 1:
        struct.pack_into("<I", body, 56, ZIMAGE64_MAGIC_V1)
    return bytes(body)


def uimage(payload: bytes, *, load: int = 0, ep: int = 0, arch: int = 2, comp: int = 0,
           size: int | None = None, name: bytes = b"erika") -> bytes:
    hdr = struct.pack(">7I4B32s", UIMAGE_MAGIC, 0, 0, len(payload) if size is None else size,
                      load, ep, 0, 5, arch, 2, comp, name)
    return hdr + payload


def err(fn, *args, **kw) -> str:
    with pytest.raises(LoaderError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ probing: zImage

def test_zimage_fields():
    img = probe(zimage(0x1000), "k.zImage")
    assert (img.format, img.arch, img.start, img.end, img.length) == ("zImage", "arm32", 0, 0x1000, 0x1000)
    assert img.entry == 0 and img.appended_dtb == 0 and not img.gzipped and img.name == "k.zImage"


def test_zimage_linked_at_fixed_address():
    img = probe(zimage(0x800, start=0x80008000), "k")
    assert img.start == 0x80008000 and img.end == 0x80008800 and img.length == 0x800


def test_zimage_appended_dtb_counts_in_length():
    img = probe_module(zimage(0x1000, tail=fdt_blob(0x40)), "k")
    assert img.appended_dtb == 0x40
    assert img.length == 0x1040 and img.end == 0x1040
    assert img.payload == img.data  # everything Xen copies


def test_zimage_shorter_than_file_copies_only_end_minus_start_on_dom0():
    data = zimage(0x1000, end=0x800)
    img = probe_module(data, "k")
    assert img.length == 0x800
    assert place_dom0(img, 0x40000000, 64 * MiB).image == data[:0x800]
    # libxenguest copies the whole file
    assert place_domu(probe(data, "k"), LAYOUT_CURRENT, 64 * MiB).image == data


def test_zimage_appended_dtb_past_end_of_file():
    data = zimage(0x1000, tail=fdt_blob(0x40)[:0x20])
    assert err(probe_module, data, "k.zImage") == \
        "k.zImage: appended device tree (64 bytes) runs past the end of the file"


def test_zimage_claims_more_than_file():
    assert err(probe_module, zimage(0x1000, end=0x2000), "k.zImage") == \
        "k.zImage: zImage header claims 0x2000 bytes (end - start) but the file has only 0x1000"


def test_zimage_end_below_start():
    assert err(probe_module, zimage(0x1000, start=0x80008000, end=0x80000000), "k") == \
        "k: zImage end 0x80000000 is below its start 0x80008000"


def test_domu_zimage_end_word_is_a_size():
    # An RTOS port that stores the image size in the end word, below its link address.
    data = zimage(0x1000, start=0x80008000, end=0x1000)
    img = probe(data, "rtos")
    assert img.length == 0x1000 and img.payload == data
    p = place_domu(img, LAYOUT_4_4, 16 * MiB)
    assert p.image == data and p.entry == 0x80008000 and p.load_addr == 0x80008000


def test_domu_zimage_end_past_the_file_covers_bss():
    # An end past the file's bytes (the BSS follows the image): the file is loaded as it is.
    data = zimage(0x1000, end=0x40000)
    img = probe(data, "bss")
    assert img.length == 0x1000
    assert place_domu(img, LAYOUT_CURRENT, 64 * MiB).image == data


def test_domu_zimage_appended_dtb_is_just_file_bytes():
    data = zimage(0x1000, tail=fdt_blob(0x40)[:0x20])
    assert probe(data, "k").payload == data


def test_truncated_zimage_header():
    assert err(probe, zimage(0x30)[:0x2C], "k.zImage") == \
        "k.zImage: truncated header: 44 bytes, a zImage header needs 48"
    assert err(probe, b"\x01" * 20, "tiny") == "tiny: truncated header: 20 bytes, a zImage header needs 48"


def test_empty_file():
    assert err(probe, b"", "k") == "k: empty file, not a kernel image"
    assert err(probe_module, b"", "k") == "k: empty file, not a kernel image"


def test_bad_magic_names_the_word_found():
    data = bytearray(0x100)
    struct.pack_into("<I", data, 0x24, 0x12345678)
    assert err(probe, bytes(data), "hello.elf") == \
        "hello.elf: not a zImage / Image / uImage (bad magic 0x12345678)"
    assert err(probe_module, bytes(data), "hello.elf") == \
        "hello.elf: not a zImage / Image / uImage (bad magic 0x12345678)"


def test_gzip_zimage_is_decompressed():
    raw = zimage(0x3000)
    img = probe(gzip.compress(raw), "k.gz")
    assert img.gzipped and img.data == raw and img.format == "zImage"
    assert probe_module(gzip.compress(raw), "k.gz").data == raw


def test_corrupt_gzip():
    bad = gzip.compress(zimage())[:40]
    assert err(probe, bad, "k.gz").startswith("k.gz: ")
    assert "gzip" in err(probe, b"\x1f\x8b\x08\x00garbage-garbage", "k.gz")


# ------------------------------------------------------------------ probing: arm64 Image

@pytest.mark.parametrize("version", [0, 1])
def test_arm64_image_recognised(version):
    img = probe(arm64_image(text_offset=0x80000, version=version), "Image")
    assert (img.format, img.arch, img.text_offset, img.length) == ("Image", "arm64", 0x80000, 0x2000)


def test_arm64_image_refused_for_arm32_guest():
    img = probe(arm64_image(), "Image")
    assert err(place_domu, img, LAYOUT_CURRENT, 128 * MiB) == \
        "Image: this is an arm64 Image; an arm32 guest cannot boot it"
    assert err(place_dom0, img, 0x40000000, 128 * MiB) == \
        "Image: this is an arm64 Image; an arm32 guest cannot boot it"


def test_arm64_image_placed_at_text_offset_for_arm64_guest():
    img = probe(arm64_image(text_offset=0x80000), "Image")
    p = place_domu(img, LAYOUT_CURRENT, 256 * MiB, guest_arch="arm64")
    assert p.load_addr == p.entry == 0x40080000 and p.dtb_addr == 0x48000000
    assert place_dom0(img, 0x40000000, 256 * MiB, guest_arch="arm64").load_addr == 0x40080000


def test_arm64_image_text_offset_outside_ram():
    img = probe(arm64_image(text_offset=0x40000000), "Image")
    assert err(place_domu, img, LAYOUT_CURRENT, 256 * MiB, guest_arch="arm64") == \
        "Image: load address 0x80000000 is outside guest RAM 0x40000000-0x4fffffff"


def test_truncated_arm64_header():
    assert err(probe, arm64_image(version=0)[:0x38], "Image") == \
        "Image: truncated header: 56 bytes, an arm64 Image header needs 64"


# ------------------------------------------------------------------ probing: uImage

def test_uimage_refused_for_xl_domu():
    data = uimage(zimage())
    msg = err(probe, data, "erika.uImage")
    assert msg.startswith("erika.uImage: a U-Boot uImage is not a supported domU kernel format")
    assert "no loader found" in msg
    assert err(place_domu, probe_module(data, "erika.uImage"), LAYOUT_4_4, 64 * MiB) == msg


def test_uimage_accepted_on_dom0_path():
    payload = zimage(0x1000, start=0x80008000)
    img = probe_module(uimage(payload, load=0x80008000, ep=0x80008040), "erika.uImage")
    assert (img.format, img.arch, img.start, img.entry, img.length) == \
        ("uImage", "arm32", 0x80008000, 0x80008040, 0x1000)
    assert img.data == payload and img.uimage.name == "erika" and img.text_offset == 0
    p = place_dom0(img, 0x80000000, 256 * MiB)
    assert p.load_addr == 0x80008000 and p.entry == 0x80008040 and p.image == payload


def test_uimage_gzip_payload():
    payload = zimage(0x2000)
    img = probe_module(uimage(gzip.compress(payload), comp=1), "k.uImage")
    assert img.gzipped and img.data == payload and img.length == 0x2000


def test_uimage_position_independent_placed_like_zimage():
    img = probe_module(uimage(zimage(0x1000)), "k")
    assert place_dom0(img, 0x40000000, 256 * MiB).load_addr == 0x47E00000


@pytest.mark.parametrize("kw, expected", [
    (dict(size=0x2000), "k: uImage header claims 8192 bytes of data but only 4096 follow it"),
    (dict(comp=2), "k: unsupported uImage compression type 2 (Xen takes none or gzip)"),
    (dict(ep=0x100), "k: uImage entry point 0x00000100 must be 0 when the load address is 0 "
                     "(position independent)"),
    (dict(arch=5), "k: unsupported uImage arch type 5 (ARM is 2, ARM64 is 22)"),
    (dict(comp=1), "k: uImage says gzip but its data is not gzip"),
])
def test_uimage_checks(kw, expected):
    assert err(probe_module, uimage(zimage(0x1000), **kw), "k") == expected


def test_uimage_arm64():
    img = probe_module(uimage(arm64_image(), arch=22, load=0x40080000), "k")
    assert img.arch == "arm64" and img.text_offset == 0


def test_truncated_uimage_header():
    assert err(probe_module, uimage(b"")[:40], "k") == \
        "k: truncated header: 40 bytes, a uImage header needs 64"


# ------------------------------------------------------------------ load_kernel

def test_load_kernel_reads_and_names_file(tmp_path):
    path = tmp_path / "kernel.zImage"
    path.write_bytes(zimage())
    img = load_kernel(path)
    assert img.name == str(path) and img.format == "zImage"


def test_load_kernel_hypervisor_path_accepts_uimage(tmp_path):
    path = tmp_path / "k.uImage"
    path.write_bytes(uimage(zimage()))
    assert load_kernel(path, hypervisor=True).format == "uImage"
    assert "not a supported domU kernel format" in err(load_kernel, path)


def test_load_kernel_missing_file(tmp_path):
    path = tmp_path / "nope.zImage"
    assert err(load_kernel, path) == f"{path}: no such kernel file"


def test_load_kernel_directory(tmp_path):
    assert err(load_kernel, tmp_path) == f"{tmp_path}: kernel is a directory, not a regular file"


def test_load_kernel_refuses_devices_and_fifos(tmp_path):
    import os
    assert err(load_kernel, "/dev/zero") == \
        "/dev/zero: kernel is a character device, not a regular file"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert err(load_kernel, fifo) == f"{fifo}: kernel is a FIFO, not a regular file"


def test_load_kernel_larger_than_memory_refused_unread(tmp_path):
    path = tmp_path / "big.zImage"
    with open(path, "wb") as f:
        f.write(zimage())
        f.truncate(64 * MiB + 1)     # sparse: reading it all would take 64 MiB
    assert err(load_kernel, path, max_size=64 * MiB) == \
        f"{path}: kernel (65537 KiB) is larger than the domain's memory (65536 KiB)"
    assert load_kernel(tmp_path / "big.zImage", max_size=65 * MiB).length == 64 * MiB + 1


def test_read_image_file_names_what(tmp_path):
    from xenpy.loader.kernel import read_image_file
    assert err(read_image_file, tmp_path / "x.dtb", "device tree") == \
        f"{tmp_path / 'x.dtb'}: no such device tree file"
    (tmp_path / "y.dtb").write_bytes(b"12345")
    assert read_image_file(tmp_path / "y.dtb", "device tree", 5) == b"12345"
    assert "is larger than" in err(read_image_file, tmp_path / "y.dtb", "device tree", 4)


# ------------------------------------------------------------------ domU placement

def test_4_4_layout_512mib_guest():
    p = place_domu(probe(zimage(0x1000), "k"), LAYOUT_4_4, 512 * MiB)
    assert (p.load_addr, p.entry, p.dtb_addr, p.ramdisk_addr) == (0x80008000, 0x80008000, 0x88000000, None)


def test_current_layout_512mib_guest():
    p = place_domu(probe(zimage(0x1000), "k"), LAYOUT_CURRENT, 512 * MiB)
    assert (p.load_addr, p.entry, p.dtb_addr) == (0x40008000, 0x40008000, 0x48000000)


def test_entry_is_zimage_start_when_set():
    p = place_domu(probe(zimage(0x1000, start=0x80008000), "k"), LAYOUT_4_4, 64 * MiB)
    assert p.load_addr == 0x80008000 and p.entry == 0x80008000


@pytest.mark.parametrize("layout, mem, dtb_size, expected", [
    (LAYOUT_CURRENT, 64 * MiB, 0x1000, 0x43FFF000),  # below 128 MiB: top of bank 0
    (LAYOUT_CURRENT, 64 * MiB, 0x1001, 0x43FFE000),  # sizes round up to pages
    (LAYOUT_4_4, 64 * MiB, 0x1000, 0x83FFF000),
    (LAYOUT_4_4, 128 * MiB, 0x1000, 0x87FFF000),  # 128 MiB + DTB does not fit
    (LAYOUT_CURRENT, 4096 * MiB, 0x1000, 0x48000000),
])
def test_dtb_placement_small_guests(layout, mem, dtb_size, expected):
    p = place_domu(probe(zimage(), "k"), layout, mem, dtb_size=dtb_size)
    assert p.dtb_addr == expected


def test_kernel_reaching_past_128mib_pushes_dtb_to_top_of_ram():
    # an Image whose text_offset makes it straddle RAM base + 128 MiB (cheaper than a 128 MiB file)
    img = probe(arm64_image(0x2000, text_offset=128 * MiB - 0x1000), "big")
    p = place_domu(img, LAYOUT_CURRENT, 256 * MiB, guest_arch="arm64")
    assert p.load_addr == 0x47FFF000 and p.dtb_addr == 0x50000000 - 0x1000
    # 4.4 still picks 128 MiB, which is inside the kernel: libxc refuses the segment
    assert err(place_domu, img, LAYOUT_4_4, 256 * MiB, guest_arch="arm64") == \
        "big: no room for the device tree after the kernel in guest memory (262144 KiB)"


def test_kernel_filling_ram_leaves_no_room_for_dtb():
    img = probe(zimage(4 * MiB - 0x8000 - 0x800), "k.zImage")
    assert err(place_domu, img, LAYOUT_CURRENT, 4 * MiB) == \
        "k.zImage: no room for the device tree after the kernel in guest memory (4096 KiB)"


def test_ramdisk_before_dtb_current_after_kernel_4_4():
    img = probe(zimage(), "k")
    p = place_domu(img, LAYOUT_CURRENT, 512 * MiB, ramdisk_size=MiB + 1)
    assert p.ramdisk_addr == 0x48000000 and p.dtb_addr == 0x48000000 + MiB + 0x1000
    p = place_domu(img, LAYOUT_4_4, 512 * MiB, ramdisk_size=MiB)
    assert p.ramdisk_addr == 0x80009000 and p.dtb_addr == 0x88000000


def test_image_larger_than_guest_memory():
    img = probe(zimage(2 * MiB), "kernel.zImage")
    assert err(place_domu, img, LAYOUT_4_4, MiB) == \
        "kernel.zImage: image (2048 KiB) does not fit in guest memory (1024 KiB)"


def test_image_linked_for_other_layout():
    img = probe(zimage(0x1000, start=0x40008000), "erika.zImage")
    assert err(place_domu, img, LAYOUT_4_4, 64 * MiB) == (
        "erika.zImage: start address 0x40008000 is outside guest RAM 0x80000000-0x83ffffff "
        "(4.4 layout); the image is linked for another memory map")
    assert place_domu(img, LAYOUT_CURRENT, 64 * MiB).entry == 0x40008000


def test_start_in_ram_but_not_where_the_image_is_loaded():
    img = probe(zimage(0x1000, start=0x80100000), "k")
    assert err(place_domu, img, LAYOUT_4_4, 64 * MiB) == (
        "k: start address 0x80100000 is not inside the image, which the toolstack loads at "
        "0x80008000-0x80008fff")


@pytest.mark.parametrize("mem, expected", [
    (0, "k: guest memory must be a positive multiple of 4 KiB, not 0"),
    (MiB + 1, "k: guest memory must be a positive multiple of 4 KiB, not 1048577"),
    (768 * MiB, "k: guest memory (786432 KiB) exceeds the 4.4 layout's maximum (786424 KiB)"),
])
def test_bad_guest_memory(mem, expected):
    assert err(place_domu, probe(zimage(), "k"), LAYOUT_4_4, mem) == expected


# ------------------------------------------------------------------ dom0 (hypervisor) placement

def test_dom0_position_independent_zimage_high_below_128mib():
    img = probe_module(zimage(0x1000), "k")
    p = place_dom0(img, 0x40000000, 512 * MiB, initrd_size=3 * MiB)
    assert p.load_addr == p.entry == 0x47E00000
    assert p.dtb_addr == 0x48000000 and p.ramdisk_addr == 0x48200000  # DTB rounded to 2 MiB


def test_dom0_small_bank_dtb_at_top():
    p = place_dom0(probe_module(zimage(0x1000), "k"), 0x40000000, 64 * MiB)
    assert p.load_addr == 0x43E00000  # 2 MiB aligned below the end of the bank
    # kernel ends above every 2 MiB slot but its own: no room above, so below it
    assert p.dtb_addr == 0x43C00000


def test_dom0_dtb_below_fixed_kernel():
    img = probe_module(zimage(2 * MiB, start=0x47F00000), "k")
    p = place_dom0(img, 0x40000000, 130 * MiB)
    assert p.load_addr == 0x47F00000 and p.dtb_addr == 0x47D00000


def test_dom0_fixed_start_outside_bank():
    img = probe_module(zimage(0x1000, start=0x80008000), "k")
    assert err(place_dom0, img, 0x40000000, 256 * MiB) == \
        "k: load address 0x80008000 puts the image outside guest RAM 0x40000000-0x4fffffff"


def test_dom0_image_larger_than_bank():
    img = probe_module(zimage(3 * MiB), "k")
    assert err(place_dom0, img, 0x40000000, 2 * MiB) == \
        "k: image (3072 KiB) does not fit in guest memory (2048 KiB)"


# ------------------------------------------------------------------ layouts and ABI constants

def test_layout_tables():
    assert LAYOUTS == {"4.4": LAYOUT_4_4, "current": LAYOUT_CURRENT}
    assert (LAYOUT_4_4.ram_base, LAYOUT_4_4.gicd_base, LAYOUT_4_4.gicd_size, LAYOUT_4_4.gicc_base,
            LAYOUT_4_4.gicc_size, LAYOUT_4_4.gnttab_base, LAYOUT_4_4.gnttab_size) == \
        (0x80000000, 0x2C001000, 0x1000, 0x2C002000, 0x100, 0xB0000000, 0x20000)
    assert LAYOUT_4_4.magic_base is None and LAYOUT_4_4.ram1_size == 0
    assert (LAYOUT_CURRENT.ram_base, LAYOUT_CURRENT.ram_max, LAYOUT_CURRENT.ram1_base,
            LAYOUT_CURRENT.gicd_base, LAYOUT_CURRENT.gicc_base, LAYOUT_CURRENT.gicc_size,
            LAYOUT_CURRENT.gnttab_base, LAYOUT_CURRENT.magic_base, LAYOUT_CURRENT.nr_magic_pages) == \
        (0x40000000, 0xC0000000, 0x200000000, 0x03001000, 0x03002000, 0x2000, 0x38000000,
         0x39000000, 4)


def test_magic_pages():
    assert (LAYOUT_4_4.console_pfn(512 * MiB), LAYOUT_4_4.store_pfn(512 * MiB)) == (0xA0000, 0xA0001)
    assert (LAYOUT_4_4.console_pfn(64 * MiB), LAYOUT_4_4.store_pfn(64 * MiB)) == (0x84000, 0x84001)
    assert (LAYOUT_CURRENT.console_pfn(64 * MiB), LAYOUT_CURRENT.store_pfn(64 * MiB)) == (0x39000, 0x39001)
    assert LAYOUT_CURRENT.magic_pfns(64 * MiB) == [0x39000, 0x39001, 0x39002, 0x39003]


def test_ram_banks_fill_bank0_first():
    assert LAYOUT_CURRENT.ram_banks(4096 * MiB) == [(0x40000000, 0xC0000000), (0x200000000, 0x40000000)]
    assert LAYOUT_4_4.ram_banks(64 * MiB) == [(0x80000000, 64 * MiB)]


def test_abi_constants():
    a = arch_arm
    assert a.XEN_HYPERCALL_TAG == 0xEA1
    assert a.HVC_XEN_A32 == a.hvc_a32(0xEA1) == 0xE140EA71
    assert a.HVC_XEN_T32 == a.hvc_t32(0xEA1) == (0xF7E0, 0x8EA1)
    assert a.HVC_XEN_A64 == a.hvc_a64(0xEA1) == 0xD401D422
    assert a.hvc_a32(0) == 0xE1400070
    assert a.callback_irq_ppi() == 0x020000000000021F
    assert a.callback_irq_ppi(31, edge=True, active_low=False) == 0x020000000000011F
    assert (a.PSR_GUEST32_INIT, a.PSR_GUEST64_INIT, a.SCTLR_GUEST_INIT) == (0x400001D3, 0x3C5, 0x00C50078)
    assert LAYOUT_4_4.psr_guest32_init == 0x1D3 and LAYOUT_CURRENT.psr_guest32_init == 0x400001D3
    assert (a.GUEST_TIMER_VIRT_PPI, a.GUEST_TIMER_PHYS_S_PPI, a.GUEST_TIMER_PHYS_NS_PPI,
            a.GUEST_EVTCHN_PPI, a.GUEST_PHANDLE_GIC, a.HVM_PARAM_CALLBACK_TYPE_PPI) == (27, 29, 30, 31, 65000, 2)


# ------------------------------------------------------------------ properties

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_only_raise_loader_error(data):
    for fn in (probe, probe_module):
        try:
            fn(data, "fuzz")
        except LoaderError:
            pass


_magic_prefixes = st.sampled_from([
    b"", b"\x1f\x8b", struct.pack(">I", UIMAGE_MAGIC), struct.pack("<I", ZIMAGE64_MAGIC_V0)])


@st.composite
def near_images(draw):
    """Headers with valid magics and random fields, so the deeper checks run."""
    size = draw(st.integers(0x30, 0x400))
    body = bytearray(draw(st.binary(min_size=size, max_size=size)))
    kind = draw(st.sampled_from(["zimage", "image64", "uimage", "prefix"]))
    if kind == "zimage":
        struct.pack_into("<III", body, 0x24, ZIMAGE32_MAGIC,
                         draw(st.sampled_from([0, 0x40008000, 0x80008000, draw(st.integers(0, 2**32 - 1))])),
                         draw(st.integers(0, 2**32 - 1)) if draw(st.booleans()) else size)
        if draw(st.booleans()):
            body += struct.pack(">II", FDT_MAGIC, draw(st.integers(0, 0x100)))
    elif kind == "image64" and size >= 64:
        struct.pack_into("<I", body, 56, ZIMAGE64_MAGIC_V1)
    elif kind == "uimage" and size >= 64:
        struct.pack_into(">I", body, 0, UIMAGE_MAGIC)
        struct.pack_into(">I", body, 12, draw(st.integers(0, size)))
        body[29] = draw(st.sampled_from([2, 22, 5]))
        body[31] = draw(st.sampled_from([0, 1, 3]))
    else:
        prefix = draw(_magic_prefixes)
        body[:len(prefix)] = prefix
    return bytes(body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_images(), st.sampled_from([LAYOUT_4_4, LAYOUT_CURRENT]),
       st.integers(1, 300 * 256).map(lambda pages: pages * 4096))
def test_near_images_and_placement_invariants(data, layout, mem):
    for fn in (probe, probe_module):
        try:
            img = fn(data, "fuzz")
        except LoaderError:
            continue
        try:
            p = place_domu(img, layout, mem, guest_arch=img.arch)
        except LoaderError:
            pass
        else:
            ram_end = layout.ram_base + mem
            assert layout.ram_base <= p.load_addr and p.kernel_end <= ram_end
            assert p.kernel_end <= p.dtb_addr and p.dtb_addr + 4096 <= ram_end
            assert p.dtb_addr % 4096 == 0
        try:
            p = place_dom0(img, 0x40000000, mem, guest_arch=img.arch)
        except LoaderError:
            pass
        else:
            assert 0x40000000 <= p.load_addr and p.kernel_end <= 0x40000000 + mem
            assert 0x40000000 <= p.dtb_addr and p.dtb_addr + 2 * MiB <= 0x40000000 + mem
            assert p.dtb_addr + 2 * MiB <= p.load_addr or p.dtb_addr >= p.kernel_end
