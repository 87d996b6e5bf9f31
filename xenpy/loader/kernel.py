"""Kernel images: recognise them and decide where they go in guest memory.

Two loaders exist in Xen on ARM and they do not agree, so both are modelled:
- the toolstack's (libxenguest: xg_dom_armzimageloader.c and xg_dom_arm.c), used by `xl create`.
  It knows arm32 zImages and arm64 Images only, always loads a zImage at RAM base + 0x8000 and
  copies the whole file; of a zImage header it checks only the magic (the end word is a size in
  some ports and an end past the file's bytes, covering the BSS, in others);
- the hypervisor's (xen/arch/arm/kernel.c and xen/common/device-tree/kernel.c), used for dom0
  and boot-time domains. It also takes uImages and gzip, places a position-independent zImage
  high in the first 128 MiB and copies only `end - start` bytes.

Every error is a LoaderError whose message is one line starting with the file's name.
"""
from __future__ import annotations

import os
import stat
import struct
import zlib
from dataclasses import dataclass, field

from xenpy.public.arch_arm import PAGE_SIZE, GuestLayout

ZIMAGE32_MAGIC_OFFSET = 0x24
ZIMAGE32_START_OFFSET = 0x28
ZIMAGE32_END_OFFSET = 0x2C
ZIMAGE32_HEADER_LEN = 0x30
ZIMAGE32_MAGIC = 0x016F2818

ZIMAGE64_MAGIC_V0 = 0x14000008  # code0 of early arm64 Images
ZIMAGE64_MAGIC_V1 = 0x644D5241  # "ARM\x64" at offset 56
ZIMAGE64_HEADER_LEN = 64

UIMAGE_MAGIC = 0x27051956
UIMAGE_HEADER_LEN = 64
IH_ARCH_ARM = 2
IH_ARCH_ARM64 = 22
IH_COMP_NONE = 0
IH_COMP_GZIP = 1

FDT_MAGIC = 0xD00DFEED
GZIP_MAGIC = b"\x1f\x8b"
DECOMPRESS_MAX = 1 << 30  # XC_DOM_DECOMPRESS_MAX: a bigger size field is not believed

DOMU_ZIMAGE_OFFSET = 0x8000  # libxenguest: "do not load kernel at the very first RAM address"
MB = 1 << 20


class LoaderError(Exception):
    """A kernel image that cannot be loaded; the message is one line naming the file."""


def _roundup(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def _kib(n: int) -> int:
    return (n + 1023) >> 10


def _le32(data: bytes, off: int) -> int:
    return struct.unpack_from("<I", data, off)[0]


def _be32(data: bytes, off: int) -> int:
    return struct.unpack_from(">I", data, off)[0]


@dataclass(frozen=True)
class UImageHeader:
    """The 64-byte legacy U-Boot header (all fields big-endian)."""

    magic: int
    hcrc: int
    time: int
    size: int
    load: int
    ep: int
    dcrc: int
    os: int
    arch: int
    type: int
    comp: int
    name: str

    @classmethod
    def parse(cls, data: bytes) -> UImageHeader:
        fields = struct.unpack_from(">7I4B32s", data, 0)
        name = fields[11].split(b"\0", 1)[0].decode("latin-1")
        return cls(*fields[:11], name=name)


@dataclass(frozen=True)
class KernelImage:
    """A recognised kernel.

    `data` is what follows any uImage header, decompressed. `start`/`end` are the zImage header
    words (uImage: load address and load + length; Image: 0 and the size), `entry` an explicit
    entry point or 0, `length` the bytes the hypervisor copies (zImage: end - start plus an
    appended DTB).
    """

    format: str  # "zImage" | "Image" | "uImage"
    data: bytes = field(repr=False)
    start: int
    end: int
    entry: int
    length: int
    text_offset: int
    arch: str  # "arm32" | "arm64"
    name: str = "kernel"
    gzipped: bool = False
    appended_dtb: int = 0  # size of a DTB appended to a zImage, 0 if none
    uimage: UImageHeader | None = None

    @property
    def payload(self) -> bytes:
        """The bytes the hypervisor copies into guest memory."""
        return self.data[:self.length]


@dataclass(frozen=True)
class Placement:
    """Where a kernel and its boot modules go in guest physical memory."""

    load_addr: int
    entry: int
    dtb_addr: int
    ramdisk_addr: int | None = None
    image: bytes = field(default=b"", repr=False)  # the bytes to copy at load_addr

    @property
    def kernel_end(self) -> int:
        return self.load_addr + len(self.image)


# -------------------------------------------------------------------- recognising images

def _gunzip(data: bytes, name: str) -> bytes:
    """Decompress a gzip kernel; the size comes from the gzip trailer, as in Xen and libxenguest."""
    if len(data) < 6:
        raise LoaderError(f"{name}: truncated gzip data ({len(data)} bytes)")
    size = _le32(data, len(data) - 4)
    if size > DECOMPRESS_MAX:
        raise LoaderError(f"{name}: gzip trailer claims {size >> 20} MiB uncompressed, "
                          f"over the {DECOMPRESS_MAX >> 20} MiB limit")
    dec = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = dec.decompress(data, size + 1)  # one byte of slack reveals a lying trailer
    except zlib.error as e:
        raise LoaderError(f"{name}: corrupt gzip data ({e})") from None
    if len(out) > size or not dec.eof:
        raise LoaderError(f"{name}: gzip data does not match its trailer "
                          f"(truncated or corrupt)")
    return out


def _probe_image64(data: bytes, name: str, gzipped: bool) -> KernelImage | None:
    n = len(data)
    v0 = n >= 4 and _le32(data, 0) == ZIMAGE64_MAGIC_V0
    v1 = n >= 60 and _le32(data, 56) == ZIMAGE64_MAGIC_V1
    if not (v0 or v1):
        return None
    if n < ZIMAGE64_HEADER_LEN:
        raise LoaderError(f"{name}: truncated header: {n} bytes, an arm64 Image header needs "
                          f"{ZIMAGE64_HEADER_LEN}")
    text_offset = struct.unpack_from("<Q", data, 8)[0]
    # There is no length in the header: Xen and libxenguest use the whole file.
    return KernelImage("Image", data, start=0, end=n, entry=0, length=n,
                       text_offset=text_offset, arch="arm64", name=name, gzipped=gzipped)


def _probe_zimage32(data: bytes, name: str, gzipped: bool, *, domu: bool) -> KernelImage:
    n = len(data)
    if domu:
        # xc_dom_probe_zimage32_kernel: a minimum size, then the magic. Nothing else in the
        # header is looked at: the whole file is loaded, and the end word means different
        # things to different ports (a size, or an end past the file that covers the BSS).
        if n < ZIMAGE32_HEADER_LEN:
            raise LoaderError(f"{name}: truncated header: {n} bytes, a zImage header needs "
                              f"{ZIMAGE32_HEADER_LEN}")
        magic = _le32(data, ZIMAGE32_MAGIC_OFFSET)
        if magic != ZIMAGE32_MAGIC:
            raise LoaderError(f"{name}: not a zImage / Image / uImage (bad magic 0x{magic:08x})")
        return KernelImage("zImage", data, start=_le32(data, ZIMAGE32_START_OFFSET),
                           end=_le32(data, ZIMAGE32_END_OFFSET), entry=0, length=n,
                           text_offset=0, arch="arm32", name=name, gzipped=gzipped)
    if n >= ZIMAGE32_MAGIC_OFFSET + 4:
        magic = _le32(data, ZIMAGE32_MAGIC_OFFSET)
        if magic != ZIMAGE32_MAGIC:
            raise LoaderError(f"{name}: not a zImage / Image / uImage (bad magic 0x{magic:08x})")
    if n < ZIMAGE32_HEADER_LEN:
        raise LoaderError(f"{name}: truncated header: {n} bytes, a zImage header needs "
                          f"{ZIMAGE32_HEADER_LEN}")
    # The hypervisor's kernel_zimage32_probe copies end - start bytes, so it checks them.
    start = _le32(data, ZIMAGE32_START_OFFSET)
    end = _le32(data, ZIMAGE32_END_OFFSET)
    if end < start:
        raise LoaderError(f"{name}: zImage end 0x{end:08x} is below its start 0x{start:08x}")
    length = end - start
    if length > n:
        raise LoaderError(f"{name}: zImage header claims 0x{length:x} bytes (end - start) "
                          f"but the file has only 0x{n:x}")
    dtb = 0
    # A DTB appended to the zImage (CONFIG_ARM_APPENDED_DTB) is part of what must be loaded.
    if length + 8 <= n and _be32(data, length) == FDT_MAGIC:
        dtb = _be32(data, length + 4)
        if length + dtb > n:
            raise LoaderError(f"{name}: appended device tree ({dtb} bytes) runs past the end "
                              f"of the file")
    return KernelImage("zImage", data, start=start, end=end + dtb, entry=0, length=length + dtb,
                       text_offset=0, arch="arm32", name=name, gzipped=gzipped,
                       appended_dtb=dtb)


def _probe_uimage(data: bytes, name: str) -> KernelImage:
    """kernel_uimage_probe(): the checks Xen makes, in its order."""
    n = len(data)
    if n < UIMAGE_HEADER_LEN:
        raise LoaderError(f"{name}: truncated header: {n} bytes, a uImage header needs "
                          f"{UIMAGE_HEADER_LEN}")
    h = UImageHeader.parse(data)
    if h.size > n - UIMAGE_HEADER_LEN:
        raise LoaderError(f"{name}: uImage header claims {h.size} bytes of data but only "
                          f"{n - UIMAGE_HEADER_LEN} follow it")
    if h.comp not in (IH_COMP_NONE, IH_COMP_GZIP):
        raise LoaderError(f"{name}: unsupported uImage compression type {h.comp} "
                          f"(Xen takes none or gzip)")
    if h.load == 0 and h.ep != 0:
        # Load address 0 means "position independent"; a fixed entry would then be meaningless.
        raise LoaderError(f"{name}: uImage entry point 0x{h.ep:08x} must be 0 when the load "
                          f"address is 0 (position independent)")
    if h.comp == IH_COMP_GZIP:
        rest = data[UIMAGE_HEADER_LEN:]  # Xen hands the gunzipper everything after the header
        if not rest.startswith(GZIP_MAGIC):
            raise LoaderError(f"{name}: uImage says gzip but its data is not gzip")
        payload = _gunzip(rest, name)
    else:
        payload = data[UIMAGE_HEADER_LEN:UIMAGE_HEADER_LEN + h.size]
    arch = {IH_ARCH_ARM: "arm32", IH_ARCH_ARM64: "arm64"}.get(h.arch)
    if arch is None:
        raise LoaderError(f"{name}: unsupported uImage arch type {h.arch} "
                          f"(ARM is {IH_ARCH_ARM}, ARM64 is {IH_ARCH_ARM64})")
    # Xen ignores any zImage/Image header inside: the uImage header alone decides placement.
    return KernelImage("uImage", payload, start=h.load, end=h.load + len(payload), entry=h.ep,
                       length=len(payload), text_offset=0, arch=arch, name=name,
                       gzipped=h.comp == IH_COMP_GZIP, uimage=h)


def _uimage_refused(name: str) -> LoaderError:
    return LoaderError(f"{name}: a U-Boot uImage is not a supported domU kernel format "
                       f"(libxenguest: no loader found); give xl the zImage or Image inside it")


def _common_start(data: bytes, name: str) -> bytes:
    data = bytes(data)
    if not data:
        raise LoaderError(f"{name}: empty file, not a kernel image")
    return data


def probe(data: bytes, name: str = "kernel") -> KernelImage:
    """Recognise a domU kernel as xl's loader (libxenguest) does, with the hypervisor's
    zImage sanity checks on top. A gzip file is decompressed first. A uImage is recognised
    and refused: libxenguest has no loader for it."""
    data = _common_start(data, name)
    gzipped = data.startswith(GZIP_MAGIC)
    if gzipped:
        data = _gunzip(data, name)
    if len(data) >= 4 and _be32(data, 0) == UIMAGE_MAGIC:
        raise _uimage_refused(name)
    img = _probe_image64(data, name, gzipped)
    return img if img is not None else _probe_zimage32(data, name, gzipped, domu=True)


def probe_module(data: bytes, name: str = "kernel") -> KernelImage:
    """Recognise a boot module as the hypervisor does for dom0 (kernel_probe): uImage first
    (its header sits on top even of a compressed image), then gzip, then Image, then zImage."""
    data = _common_start(data, name)
    if len(data) >= 4 and _be32(data, 0) == UIMAGE_MAGIC:
        return _probe_uimage(data, name)
    gzipped = data.startswith(GZIP_MAGIC)
    if gzipped:
        data = _gunzip(data, name)
    img = _probe_image64(data, name, gzipped)
    return img if img is not None else _probe_zimage32(data, name, gzipped, domu=False)


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def read_image_file(path: str | os.PathLike[str], what: str = "kernel",
                    max_size: int | None = None) -> bytes:
    """Read a boot file (kernel, device tree, ramdisk) the toolstack loads into a domain.

    Only a regular file is read (/dev/zero or a FIFO would never end), and no more than
    `max_size` bytes (the domain's memory: a bigger file cannot fit, so it is refused before
    it is read). Errors are one-line LoaderErrors naming the file."""
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise LoaderError(f"{name}: no such {what} file") from None
    except OSError as e:
        raise LoaderError(f"{name}: cannot read {what} ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise LoaderError(f"{name}: {what} is {kind}, not a regular file")
    with os.fdopen(fd, "rb", buffering=0) as f:
        if max_size is not None and st.st_size > max_size:
            raise LoaderError(f"{name}: {what} ({_kib(st.st_size)} KiB) is larger than the "
                              f"domain's memory ({max_size >> 10} KiB)")
        limit = st.st_size if max_size is None else max_size
        try:
            data = bytearray()
            while len(data) <= limit:        # a file growing under us stops at the cap
                chunk = f.read(min(1 << 20, limit + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            raise LoaderError(f"{name}: cannot read {what} ({e.strerror})") from None
    if max_size is not None and len(data) > max_size:
        raise LoaderError(f"{name}: {what} grew past the domain's memory "
                          f"({max_size >> 10} KiB) while it was read")
    return bytes(data)


def load_kernel(path: str | os.PathLike[str], *, hypervisor: bool = False,
                max_size: int | None = None) -> KernelImage:
    """Read and probe a kernel file; `hypervisor` selects the dom0 rules (probe_module);
    `max_size` caps the read (the domain's memory)."""
    name = os.fspath(path)
    data = read_image_file(path, "kernel", max_size)
    return probe_module(data, name) if hypervisor else probe(data, name)


# -------------------------------------------------------------------- placement

def _check_arch(img: KernelImage, guest_arch: str) -> None:
    if guest_arch not in ("arm32", "arm64"):
        raise ValueError(f"guest_arch must be 'arm32' or 'arm64', not {guest_arch!r}")
    if img.arch != guest_arch:
        what = "an arm64 Image" if img.arch == "arm64" else "an arm32 kernel"
        raise LoaderError(f"{img.name}: this is {what}; an {guest_arch} guest cannot boot it")


def _check_start_in_image(img: KernelImage, layout: GuestLayout, ram_end: int,
                          load: int, size: int) -> None:
    """libxenguest jumps to a non-zero zImage start without looking ("the guest will crash in
    its own context"); catch the cases where that cannot work, with the reason."""
    if not img.start:
        return
    if not layout.ram_base <= img.start < ram_end:
        raise LoaderError(f"{img.name}: start address 0x{img.start:08x} is outside guest RAM "
                          f"0x{layout.ram_base:08x}-0x{ram_end - 1:08x} ({layout.name} layout); "
                          f"the image is linked for another memory map")
    if not load <= img.start < load + size:
        raise LoaderError(f"{img.name}: start address 0x{img.start:08x} is not inside the "
                          f"image, which the toolstack loads at 0x{load:08x}-0x{load + size - 1:08x}")


def place_domu(img: KernelImage, layout: GuestLayout, mem_bytes: int, *,
               dtb_size: int = PAGE_SIZE, ramdisk_size: int = 0,
               guest_arch: str = "arm32") -> Placement:
    """Place an xl domU's kernel, ramdisk and DTB as libxenguest does for `layout`'s Xen
    version. Pass the real DTB size (len(dtb)) as `dtb_size`."""
    name = img.name
    if img.format == "uImage":
        raise _uimage_refused(name)
    _check_arch(img, guest_arch)
    try:
        layout.check_mem(mem_bytes)
    except ValueError as e:
        raise LoaderError(f"{name}: {e}") from None
    if dtb_size <= 0 or ramdisk_size < 0:
        raise ValueError("dtb_size must be positive and ramdisk_size not negative")

    rambase = layout.ram_base
    ram_end = layout.ram_end(mem_bytes)
    size = len(img.data)  # libxenguest copies the whole file
    if img.format == "zImage":
        load = rambase + DOMU_ZIMAGE_OFFSET
        entry = img.start or load
    else:
        load = rambase + img.text_offset
        entry = load
    if load >= ram_end:
        raise LoaderError(f"{name}: load address 0x{load:x} is outside guest RAM "
                          f"0x{rambase:x}-0x{ram_end - 1:x}")
    if load + size > ram_end:
        raise LoaderError(f"{name}: image ({_kib(size)} KiB) does not fit in guest memory "
                          f"({mem_bytes >> 10} KiB)")
    _check_start_in_image(img, layout, ram_end, load, size)

    what = "device tree and ramdisk" if ramdisk_size else "device tree"
    no_room = LoaderError(f"{name}: no room for the {what} after the kernel in guest memory "
                          f"({mem_bytes >> 10} KiB)")
    if layout.magic_base is None:
        return _place_domu_4_4(img, layout, mem_bytes, load, entry, dtb_size, ramdisk_size,
                               no_room)

    # xg_dom_arm.c meminit(): modules at 128 MiB, else at the top of bank 0. Its last resort,
    # just below the kernel, is always refused afterwards: libxenguest allocates segments in
    # rising address order, kernel first ("segment boundary too low"). So it fails here too.
    kernend = _roundup(load + size, 2 * MB)
    ramdisk_len = _roundup(ramdisk_size, PAGE_SIZE)
    modsize = _roundup(dtb_size, PAGE_SIZE) + ramdisk_len
    if modsize + (kernend - load) > layout.ram_max:
        raise LoaderError(f"{name}: not enough memory for the kernel+dtb+initrd "
                          f"({_kib(modsize + kernend - load)} KiB > {layout.ram_max >> 10} KiB)")
    ram128 = rambase + 128 * MB
    if ram_end >= ram128 + modsize and kernend < ram128:
        modbase = ram128
    elif ram_end - modsize > kernend:
        modbase = ram_end - modsize
    else:
        raise no_room
    # The ramdisk goes first, the DTB after it.
    return Placement(load, entry, modbase + ramdisk_len,
                     modbase if ramdisk_size else None, img.data)


def _place_domu_4_4(img: KernelImage, layout: GuestLayout, mem_bytes: int, load: int,
                    entry: int, dtb_size: int, ramdisk_size: int,
                    no_room: LoaderError) -> Placement:
    """Xen 4.4 libxc: the ramdisk follows the kernel; the DTB goes at RAM base + 128 MiB if
    it fits below the end of RAM, else at the top of RAM."""
    ram_end = layout.ram_base + mem_bytes
    # Segments are allocated in rising address order after the kernel, so nothing may go
    # below its page-rounded end ("segment start too low").
    alloc_end = _roundup(load + len(img.data), PAGE_SIZE)
    ramdisk_addr = None
    if ramdisk_size:
        ramdisk_addr = alloc_end
        alloc_end = _roundup(alloc_end + ramdisk_size, PAGE_SIZE)
        if alloc_end > ram_end:
            raise LoaderError(f"{img.name}: kernel and ramdisk ({_kib(alloc_end - load)} KiB) "
                              f"do not fit in guest memory ({mem_bytes >> 10} KiB)")
    dtb_len = _roundup(dtb_size, PAGE_SIZE)
    if ram_end >= layout.ram_base + 128 * MB + dtb_len:
        dtb = layout.ram_base + 128 * MB
    else:
        dtb = ram_end - dtb_len
    if dtb < alloc_end:
        raise no_room
    return Placement(load, entry, dtb, ramdisk_addr, img.data)


def place_dom0(img: KernelImage, bank_start: int, bank_size: int, *,
               dtb_size: int = PAGE_SIZE, initrd_size: int = 0,
               guest_arch: str = "arm32") -> Placement:
    """Place a kernel in a hypervisor-built domain's first RAM bank (kernel_zimage_place and
    place_dtb_initrd). The DTB and initrd sizes are rounded to 2 MiB; the initrd follows the DTB."""
    name = img.name
    _check_arch(img, guest_arch)
    if bank_size <= 0:
        raise ValueError("bank_size must be positive")
    bank_end = bank_start + bank_size
    size = img.length
    if size > bank_size:
        raise LoaderError(f"{name}: image ({_kib(size)} KiB) does not fit in guest memory "
                          f"({bank_size >> 10} KiB)")
    if img.arch == "arm64" and img.start == 0:
        load = bank_start + img.text_offset
    elif img.start == 0:
        # Position independent: Linux's Booting doc asks for below 128 MiB; go as high as
        # possible within that, 2 MiB aligned.
        load_end = min(bank_start + 128 * MB, bank_end)
        if load_end - bank_start < size:
            raise LoaderError(f"{name}: image ({_kib(size)} KiB) does not fit below "
                              f"RAM base + 128 MiB")
        load = (load_end - size) & ~(2 * MB - 1)
    else:
        load = img.start
    kernend = load + size
    if load < bank_start or kernend > bank_end:
        raise LoaderError(f"{name}: load address 0x{load:x} puts the image outside guest RAM "
                          f"0x{bank_start:x}-0x{bank_end - 1:x}")
    entry = img.entry or load

    dtb_len = _roundup(dtb_size, 2 * MB)
    initrd_len = _roundup(initrd_size, 2 * MB)
    total = dtb_len + initrd_len
    if total + _roundup(kernend, 2 * MB) - load > bank_size:
        raise LoaderError(f"{name}: not enough memory in the first bank for the "
                          f"kernel+dtb+initrd")
    ram128 = bank_start + 128 * MB
    if bank_end >= ram128 + total and kernend < ram128:
        dtb = ram128
    elif bank_end - total > _roundup(kernend, 2 * MB):
        dtb = bank_end - total
    elif load - bank_start > total:
        dtb = load - total
    else:
        raise LoaderError(f"{name}: unable to find a suitable location for the dtb+initrd")
    return Placement(load, entry, dtb, dtb + dtb_len if initrd_size else None, img.payload)
