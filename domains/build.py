#!/usr/bin/env python3
"""Build the guest images in domains/ with zig cc (from the ziglang package).

    python domains/build.py [NAME ...]        build domains/NAME/NAME.zImage
    python domains/build.py --check [NAME]    rebuild elsewhere, compare bytes
    python domains/build.py --out DIR         write DIR/NAME.zImage instead

A guest is a directory domains/NAME/ holding a `sources.txt`:

    # comment
    main.c                  a source (.c or .S) relative to the guest
    drivers/*.c             globs are fine (matched files are sorted)
    cflags: -DNR_CPUS=2     extra compiler flags (shell quoting), repeatable
    lib: none               link without the runtime in domains/lib
    lib: console.c mmu.c    ... or with only these runtime files
    ldscript: my.ld         instead of lib/guest.ld

The runtime in domains/lib is compiled per guest, with the guest's cflags,
and linked after the guest's own sources.  Builds are deterministic: the
compiler runs in domains/ on relative paths, without debug info or build
ids, and the image is the raw bytes of the loadable sections.  A guest may
add `cflags: -g` for debug info in its NAME.elf (`--elf`, for gdb); the
image is the same bytes either way.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import importlib.util
import os
import shlex
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DOMAINS = Path(__file__).resolve().parent
LIB = DOMAINS / "lib"
SOURCE_SUFFIXES = (".c", ".S")
DEFAULT_LDSCRIPT = "lib/guest.ld"

ZIMAGE_MAGIC = 0x016F2818
LOAD_ADDR = 0x80008000          # Xen 4.4 layout: RAM base 0x80000000 + 0x8000

CFLAGS = [
    "-target", "arm-freestanding-eabi",
    # zig drops -mno-unaligned-access; strict_align is how it takes it.  With
    # the MMU off every access is strongly ordered and must be aligned.
    "-mcpu=cortex_a7+strict_align",
    "-marm",                    # A32 everywhere: HVC is 0xE140EA71
    "-mfloat-abi=soft",         # the FPU is off at boot
    "-ffreestanding", "-fno-builtin",
    "-std=gnu11", "-O2", "-g0",
    "-fno-pic", "-fno-stack-protector",
    "-fno-unwind-tables", "-fno-asynchronous-unwind-tables",
    "-fomit-frame-pointer", "-ffunction-sections", "-fdata-sections",
    "-Wall", "-Wextra", "-Werror",
    "-I", "lib",
]
LDFLAGS = [
    "-target", "arm-freestanding-eabi",
    "-nostdlib", "-static",
    "-Wl,--build-id=none", "-Wl,--gc-sections",
]


class BuildError(Exception):
    pass


@dataclass
class Guest:
    name: str
    sources: list[str]                  # relative to DOMAINS
    cflags: list[str] = field(default_factory=list)
    lib: list[str] | None = None        # None: the whole runtime
    ldscript: str = DEFAULT_LDSCRIPT

    @property
    def image(self) -> Path:
        return DOMAINS / self.name / f"{self.name}.zImage"


def zig_command() -> list[str]:
    if importlib.util.find_spec("ziglang") is None:
        raise BuildError("zig not found: install the ziglang package "
                         "(pip install 'ziglang==0.17.1', or pip install -e '.[dev]')")
    return [sys.executable, "-m", "ziglang"]


def zig_version(zig: list[str]) -> str:
    out = subprocess.run(zig + ["version"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def guest_names() -> list[str]:
    return sorted(p.parent.name for p in DOMAINS.glob("*/sources.txt"))


def load_guest(name: str) -> Guest:
    gdir = DOMAINS / name
    spec = gdir / "sources.txt"
    if not spec.is_file():
        known = ", ".join(guest_names()) or "none"
        raise BuildError(f"{name}: no guest domains/{name}/sources.txt (guests: {known})")
    guest = Guest(name, [])
    for lineno, raw in enumerate(spec.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"domains/{name}/sources.txt:{lineno}"
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("cflags", "lib", "ldscript"):
            key, value = key.strip(), value.strip()
            if key == "cflags":
                guest.cflags += shlex.split(value)
            elif key == "lib":
                guest.lib = [] if value == "none" else value.split()
                for f in guest.lib:
                    if not (LIB / f).is_file():
                        raise BuildError(f"{where}: no runtime file lib/{f}")
            else:
                if not (gdir / value).is_file():
                    raise BuildError(f"{where}: no linker script {value}")
                guest.ldscript = f"{name}/{value}"
            continue
        matches = sorted(glob.glob(line, root_dir=gdir))
        if not matches:
            raise BuildError(f"{where}: no file matches {line!r}")
        for m in matches:
            if not m.endswith(SOURCE_SUFFIXES):
                raise BuildError(f"{where}: {m} is neither .c nor .S")
            guest.sources.append(f"{name}/{Path(m).as_posix()}")
    if not guest.sources:
        raise BuildError(f"{name}: sources.txt lists no sources")
    return guest


def runtime_sources(guest: Guest) -> list[str]:
    if guest.lib is not None:
        return [f"lib/{f}" for f in guest.lib]
    return sorted(f"lib/{p.name}" for p in LIB.iterdir() if p.name.endswith(SOURCE_SUFFIXES))


def run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, cwd=DOMAINS, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise BuildError(f"{what} failed:\n{detail}")


def check_header(name: str, data: bytes, expect_start: int | None) -> None:
    """The header fields a loader relies on: magic, start, and end = start + size (or, in an
    RTOS port's header, end = size)."""
    if len(data) < 0x34:
        raise BuildError(f"{name}: image is only {len(data)} bytes")
    magic, start, end = struct.unpack_from("<III", data, 0x24)
    if magic != ZIMAGE_MAGIC:
        raise BuildError(f"{name}: zImage magic is {magic:#010x}, not {ZIMAGE_MAGIC:#010x}")
    if expect_start is not None and start != expect_start:
        raise BuildError(f"{name}: zImage start is {start:#010x}, not {expect_start:#010x}")
    if start and end - start != len(data) and end != len(data):
        raise BuildError(f"{name}: zImage end {end:#010x} does not match the "
                         f"image size {len(data)} (start {start:#010x})")


def build(guest: Guest, zig: list[str], workdir: Path, jobs: int) -> bytes:
    """Compile and link one guest inside workdir; return the image bytes."""
    prefix_map = f"-ffile-prefix-map={DOMAINS}=."
    # zig cc honours a -g0 anywhere on the line, so a guest asking for debug info (cflags: -g)
    # drops the default one. Debug sections are not loadable: the image stays the same bytes.
    debug = any(f.startswith("-g") and f != "-g0" for f in guest.cflags)
    base = [f for f in CFLAGS if not (debug and f == "-g0")]
    objs = []
    steps = []
    for src in guest.sources + runtime_sources(guest):
        obj = workdir / (src.replace("/", "__") + ".o")
        objs.append(str(obj))
        cmd = zig + ["cc"] + base + [prefix_map] + guest.cflags + ["-c", src, "-o", str(obj)]
        steps.append((cmd, f"{guest.name}: compiling {src}"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for fut in [pool.submit(run, cmd, what) for cmd, what in steps]:
            fut.result()

    elf = workdir / f"{guest.name}.elf"
    image = workdir / f"{guest.name}.zImage"
    run(zig + ["cc"] + LDFLAGS + ["-T", guest.ldscript, "-o", str(elf)] + objs,
        f"{guest.name}: linking")
    run(zig + ["objcopy", "-O", "binary", str(elf), str(image)],
        f"{guest.name}: objcopy")
    data = image.read_bytes()
    # Our link map puts start at the toolstack's load address; a guest with
    # its own linker script may choose another (0: position independent).
    check_header(guest.name, data, LOAD_ADDR if guest.ldscript == DEFAULT_LDSCRIPT else None)
    return data


def display_path(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(DOMAINS.parent))
    except ValueError:
        return str(p)


def first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="build.py", description="Build the xenpy guest images (domains/NAME/NAME.zImage).")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="guests to build (default: every domains/*/sources.txt)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild in a temporary directory and compare with the committed images")
    ap.add_argument("--out", type=Path, metavar="DIR",
                    help="write DIR/NAME.zImage instead of domains/NAME/NAME.zImage")
    ap.add_argument("--elf", action="store_true",
                    help="also write NAME.elf (with symbols) beside each image")
    ap.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="parallel compiler runs (default: %(default)s)")
    args = ap.parse_args(argv)

    try:
        zig = zig_command()
        names = args.names or guest_names()
        if not names:
            raise BuildError("no guests found (no domains/*/sources.txt)")
        guests = [load_guest(n) for n in names]
        failed = 0
        for guest in guests:
            with tempfile.TemporaryDirectory(prefix=f"xenpy-{guest.name}-") as tmp:
                data = build(guest, zig, Path(tmp), max(1, args.jobs))
                if args.elf:
                    dest = (args.out or guest.image.parent)
                    dest.mkdir(parents=True, exist_ok=True)
                    (dest / f"{guest.name}.elf").write_bytes((Path(tmp) / f"{guest.name}.elf").read_bytes())
            rel = display_path(guest.image)
            if args.check:
                if not guest.image.is_file():
                    print(f"{guest.name}: FAIL: no committed image {rel}")
                    failed += 1
                    continue
                old = guest.image.read_bytes()
                if old != data:
                    print(f"{guest.name}: FAIL: {rel} differs from a fresh build "
                          f"({len(old)} vs {len(data)} bytes, first difference at "
                          f"{first_difference(old, data):#x}; zig {zig_version(zig)})")
                    failed += 1
                    continue
                print(f"{guest.name}: ok ({len(data)} bytes, matches {rel})")
            else:
                dest = (args.out / f"{guest.name}.zImage") if args.out else guest.image
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                print(f"{guest.name}: {len(data)} bytes -> {display_path(dest)}")
        return 1 if failed else 0
    except BuildError as e:
        print(f"build.py: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
