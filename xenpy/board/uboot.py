"""The board's firmware: U-Boot running a boot script, as on a Cubieboard2 booting Xen.

What it runs: a script given as `boot.cmd` text, or as `boot.scr`, the legacy image mkimage makes
with `mkimage -C none -A arm -T script -d boot.cmd boot.scr` (a 64-byte header, then a list of
big-endian lengths ended by 0, then the text). The commands the Xen boot scripts use:

    setenv / env set, printenv, echo              with ${var} / $var expansion, "..." and '...'
                                                  quoting, \\ escapes and # comments (hush rules)
    fatload / ext4load / load <if> <dev[:part]> [addr [file [bytes [pos]]]]
                                                  from the SD card (mmc 0), a host directory
    fdt addr / resize / chosen / set / mknod / rm / print / list / get value
    bootz [addr [initrd|- [fdt]]]                 an ARM zImage (Xen's arm32 image is one)
    bootm [addr [initrd|- [fdt]]]                 a legacy uImage of type kernel

RAM is the board's (an anonymous mapping the size of the board's RAM, so a load really lands at
its address: a file loaded over the device tree corrupts it, as it would on the board). bootz and
bootm end the script by handing the CPU over: the result is a Handoff (entry point, r2 = device
tree) for the board to act on.

Differences from U-Boot, on purpose: the first failing command stops the script with a one-line
FirmwareError `SCRIPT:LINE: COMMAND: reason` (U-Boot would print and carry on to the next line);
a script that ends without booting is an error too (U-Boot would wait at its prompt).
"""
from __future__ import annotations

import gzip
import mmap
import os
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xenpy.common.bootfdt import read_fdt_blocks
from xenpy.loader.fdt import Fdt, FdtError, format_tree, format_value, is_printable_strings
from xenpy.loader.kernel import UIMAGE_HEADER_LEN, UIMAGE_MAGIC, UImageHeader

ZIMAGE_MAGIC = 0x016F2818
BAREBOX_MAGIC = 0x00786F62
IH_OS_LINUX, IH_ARCH_ARM = 5, 2
IH_TYPE_KERNEL, IH_TYPE_SCRIPT, IH_TYPE_KERNEL_NOLOAD = 2, 6, 14
IH_COMP_NONE, IH_COMP_GZIP = 0, 1
FDT_PAD = 0x3000                      # CONFIG_SYS_FDT_PAD: room U-Boot adds before booting
_TYPE_NAMES = {IH_TYPE_KERNEL: "Kernel Image", IH_TYPE_SCRIPT: "Script",
               IH_TYPE_KERNEL_NOLOAD: "Kernel Image (no loading done)"}


class FirmwareError(Exception):
    """A boot that cannot go on; the message is one line naming the script, line and command."""

    def __init__(self, message: str) -> None:
        # A quoted argument may hold a newline: show it escaped, keep the message one line.
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


class CommandError(Exception):
    """A command failed: its reason (the runner adds where)."""


@dataclass
class Handoff:
    """The firmware jumped to a kernel: where, with which device tree, from which command."""
    entry: int
    fdt_addr: int
    command: str
    line: int
    script: str
    ram: "Ram"


# -- RAM -----------------------------------------------------------------------------------------

class Ram:
    def __init__(self, base: int, size: int) -> None:
        self.base, self.size = base, size
        self.mem = mmap.mmap(-1, size)        # pages appear as they are written

    def _check(self, addr: int, size: int) -> int:
        off = addr - self.base
        if off < 0 or size < 0 or off + size > self.size:
            raise CommandError(f"0x{addr:08x}+0x{size:x} is outside RAM "
                               f"(0x{self.base:08x}-0x{self.base + self.size - 1:08x})")
        return off

    def read(self, addr: int, size: int) -> bytes:
        off = self._check(addr, size)
        return self.mem[off:off + size]

    def write(self, addr: int, data: bytes) -> None:
        off = self._check(addr, len(data))
        self.mem[off:off + len(data)] = data

    def close(self) -> None:
        self.mem.close()


# -- legacy images (mkimage) ---------------------------------------------------------------------

def make_legacy_image(payload: bytes, *, image_type: int, os_: int = IH_OS_LINUX,
                      arch: int = IH_ARCH_ARM, comp: int = IH_COMP_NONE, load: int = 0,
                      entry: int = 0, name: str = "", timestamp: int = 0) -> bytes:
    """What mkimage writes for a single-file image (all fields big-endian, CRC32s of zlib)."""
    def header(hcrc: int) -> bytes:
        return struct.pack(">7I4B32s", UIMAGE_MAGIC, hcrc, timestamp, len(payload), load, entry,
                           zlib.crc32(payload), os_, arch, image_type, comp,
                           name.encode("latin-1")[:32])
    return header(zlib.crc32(header(0))) + payload


def make_script_image(text: str | bytes, name: str = "", timestamp: int = 0) -> bytes:
    """`mkimage -C none -A arm -T script -d boot.cmd boot.scr`: a multi-file payload with one
    file, the script (lengths list ended by a zero word)."""
    raw = text.encode("latin-1") if isinstance(text, str) else text
    return make_legacy_image(struct.pack(">II", len(raw), 0) + raw, image_type=IH_TYPE_SCRIPT,
                             name=name, timestamp=timestamp)


def check_legacy_image(data: bytes) -> UImageHeader:
    """U-Boot's checks of a legacy image: magic, header CRC, size, data CRC."""
    if len(data) < UIMAGE_HEADER_LEN or struct.unpack_from(">I", data)[0] != UIMAGE_MAGIC:
        raise CommandError("Bad Magic Number")
    hdr = UImageHeader.parse(data)
    blank = data[:4] + b"\0\0\0\0" + data[8:UIMAGE_HEADER_LEN]
    if zlib.crc32(blank) != hdr.hcrc:
        raise CommandError("Bad Header Checksum")
    if UIMAGE_HEADER_LEN + hdr.size > len(data):
        raise CommandError(f"image data truncated: the header says {hdr.size} bytes, "
                           f"{len(data) - UIMAGE_HEADER_LEN} follow it")
    if zlib.crc32(data[UIMAGE_HEADER_LEN:UIMAGE_HEADER_LEN + hdr.size]) != hdr.dcrc:
        raise CommandError("Bad Data CRC")
    return hdr


def script_from_image(data: bytes) -> str:
    """The text of a script image (U-Boot's `source` of a legacy image)."""
    hdr = check_legacy_image(data)
    if hdr.type != IH_TYPE_SCRIPT:
        raise CommandError(f"Wrong image type for source: {hdr.type} "
                           f"(a script image is type {IH_TYPE_SCRIPT}, mkimage -T script)")
    if hdr.comp != IH_COMP_NONE:
        raise CommandError("compressed script images are not supported (mkimage -C none)")
    payload = data[UIMAGE_HEADER_LEN:UIMAGE_HEADER_LEN + hdr.size]
    lengths, pos = [], 0
    while True:
        if pos + 4 > len(payload):
            raise CommandError("script image: the list of lengths is not terminated")
        n = struct.unpack_from(">I", payload, pos)[0]
        pos += 4
        if not n:
            break
        lengths.append(n)
    if not lengths or pos + lengths[0] > len(payload):
        raise CommandError("script image: no script data")
    return payload[pos:pos + lengths[0]].decode("latin-1")


# -- the hush subset -----------------------------------------------------------------------------
# A word is a list of parts: (text, is_var, splittable). Variables are expanded when the command
# runs (an earlier setenv changes them); an unquoted expansion is split on whitespace.

@dataclass
class Command:
    line: int
    words: list[list[tuple[str, bool, bool]]] = field(default_factory=list)


_VAR = re.compile(r"\{([A-Za-z0-9_.-]+)\}|([A-Za-z_][A-Za-z0-9_]*)")


def parse_script(text: str, name: str) -> list[Command]:
    cmds: list[Command] = []
    cmd: Command | None = None
    word: list[tuple[str, bool, bool]] | None = None
    line, i, n = 1, 0, len(text)

    def add(part: tuple[str, bool, bool]) -> None:
        nonlocal word, cmd
        if cmd is None:
            cmd = Command(line)
        if word is None:
            word = []
            cmd.words.append(word)
        word.append(part)

    def end_word() -> None:
        nonlocal word
        word = None

    def end_cmd() -> None:
        nonlocal cmd
        end_word()
        if cmd is not None and cmd.words:
            cmds.append(cmd)
        cmd = None

    def var_at(j: int, quoted: bool) -> int:
        m = _VAR.match(text, j + 1)
        if m is None:
            add(("$", False, False))
            return j + 1
        add((m.group(1) or m.group(2), True, not quoted))
        return m.end()

    while i < n:
        c = text[i]
        if c == "\n":
            end_cmd()
            line += 1
            i += 1
        elif c == ";":
            end_cmd()
            i += 1
        elif c in " \t\r":
            end_word()
            i += 1
        elif c == "#" and word is None:
            while i < n and text[i] != "\n":
                i += 1
        elif c == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                line += 1                     # line continuation
            elif i + 1 < n:
                add((text[i + 1], False, False))
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise FirmwareError(f"{name}:{line}: unterminated ' quote")
            add((text[i + 1:end], False, False))
            line += text.count("\n", i, end)
            i = end + 1
        elif c == '"':
            start_line = line
            add(("", False, False))           # "" is an (empty) word of its own
            i += 1
            while True:
                if i >= n:
                    raise FirmwareError(f'{name}:{start_line}: unterminated " quote')
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                    add((text[i + 1], False, False))
                    i += 2
                elif c == "$":
                    i = var_at(i, True)
                else:
                    line += c == "\n"
                    add((c, False, False))
                    i += 1
        elif c == "$":
            i = var_at(i, False)
        elif c in "&|" and text[i:i + 2] in ("&&", "||"):
            raise FirmwareError(f"{name}:{line}: {text[i:i + 2]}: command lists are not "
                                f"supported by this firmware model")
        else:
            add((c, False, False))
            i += 1
    end_cmd()
    return cmds


def _expand(word: list[tuple[str, bool, bool]], lookup: Callable[[str], str]) -> list[str]:
    """Expand a word's variables and split unquoted expansions on whitespace (hush's fields)."""
    chars: list[tuple[str, bool]] = []
    have = False                      # a literal or quoted part makes a field, even an empty one
    for text, is_var, split in word:
        value = lookup(text) if is_var else text
        have = have or not split
        chars += [(c, split) for c in value]
    fields: list[str] = []
    cur: list[str] = []
    for c, split in chars:
        if split and c.isspace():
            if cur or have:
                fields.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
    if cur or have:
        fields.append("".join(cur))
    return fields


# -- number parsing as U-Boot does it -------------------------------------------------------------

def strtoul(s: str, base: int = 0) -> tuple[int, int]:
    """simple_strtoul: (value, characters consumed)."""
    i = 0
    if s[:1] == "0":
        if s[1:2].lower() == "x":
            base, i = 16, 2
        elif not base:
            base = 8
    base = base or 10
    j = i
    while j < len(s) and s[j].lower() in "0123456789abcdef"[:base]:
        j += 1
    return (int(s[i:j], base) if j > i else 0), j


def hex_arg(s: str, what: str) -> int:
    value, used = strtoul(s, 16)
    if not s or used != len(s):
        raise CommandError(f"bad {what} '{s}' (a hex number)")
    return value


def _c_alt_hex(value: int, width: int) -> str:
    """C's %#0Nlx: zero has no 0x prefix."""
    return f"{value:0{width}x}" if value == 0 else f"0x{value:0{max(width - 2, 0)}x}"


# -- the firmware ----------------------------------------------------------------------------------

DEFAULT_ENV = {
    # include/configs/sunxi-common.h for 32-bit SoCs with >= 256 MiB of DRAM
    "bootm_size": "0xa000000", "kernel_addr_r": "0x42000000", "fdt_addr_r": "0x43000000",
    "scriptaddr": "0x43100000", "pxefile_addr_r": "0x43200000",
    "fdtoverlay_addr_r": "0x43300000", "ramdisk_addr_r": "0x43400000",
    "loadaddr": "0x42000000", "console": "ttyS0,115200", "arch": "arm", "cpu": "armv7",
    "soc": "sunxi", "board": "sunxi",
    # what distro boot sets before it runs boot.scr from the SD card
    "devtype": "mmc", "devnum": "0", "distro_bootpart": "1", "prefix": "/",
}


class UBoot:
    """One power-on of the firmware. `sd` is the SD card: a host directory seen as mmc 0,
    partition 1."""

    def __init__(self, sd: str | os.PathLike[str], *, ram_base: int, ram_size: int,
                 board_env: dict[str, str] | None = None,
                 console: Callable[[str], None] | None = None) -> None:
        self.sd = Path(sd)
        self.ram = Ram(ram_base, ram_size)
        self.env = {**DEFAULT_ENV, **(board_env or {})}
        self.local: dict[str, str] = {}
        self.out: list[str] = []
        self._console = console
        self.fdt_addr: int | None = None

    def print(self, text: str = "") -> None:
        for line in text.split("\n"):
            self.out.append(line)
            if self._console:
                self._console(line)

    # -- running a script --------------------------------------------------------------------

    def run_file(self, path: str | os.PathLike[str], name: str | None = None) -> Handoff:
        name = name or os.fspath(path)
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise FirmwareError(f"{name}: no such boot script") from None
        except OSError as e:
            raise FirmwareError(f"{name}: cannot read the boot script ({e.strerror})") from None
        # A mkimage script image, or one that was meant to be (a .scr, or binary): U-Boot's
        # source checks it and refuses it; only a text file is a plain script.
        if data[:4] == struct.pack(">I", UIMAGE_MAGIC) or Path(path).suffix == ".scr" or \
                b"\0" in data[:UIMAGE_HEADER_LEN]:
            try:
                text = script_from_image(data)
            except CommandError as e:
                raise FirmwareError(f"{name}: not a usable script image: {e}") from None
        else:
            text = data.decode("latin-1")
        return self.run_script(text, name)

    def run_script(self, text: str, name: str = "boot.cmd") -> Handoff:
        self.print(f"## Executing script {name}")
        for cmd in parse_script(text, name):
            argv = [f for w in cmd.words for f in _expand(w, self._lookup)]
            if not argv:
                continue
            what = argv[0]
            try:
                handoff = self.run_command(argv, cmd.line, name)
            except CommandError as e:
                raise FirmwareError(f"{name}:{cmd.line}: {what}: {e}") from None
            if handoff is not None:
                return handoff
        raise FirmwareError(f"{name}: the script ended without booting anything "
                            f"(no bootz or bootm ran)")

    def _lookup(self, var: str) -> str:
        if var in self.local:
            return self.local[var]
        return self.env.get(var, "")

    def run_command(self, argv: list[str], line: int = 0, script: str = "") -> Handoff | None:
        name = argv[0]
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", name, re.S)
        if m and len(argv) == 1:
            self.local[m.group(1)] = m.group(2)     # hush: a shell variable, not the env
            return None
        if name == "env" and argv[1:2] in (["set"], ["print"], ["delete"]):
            sub = argv[1]
            if sub == "set":
                self._setenv(argv[2:])
            elif sub == "print":
                self._printenv(argv[2:])
            else:
                for var in argv[2:]:
                    self.env.pop(var, None)
        elif name == "setenv":
            self._setenv(argv[1:])
        elif name == "printenv":
            self._printenv(argv[1:])
        elif name == "echo":
            self.print(" ".join(argv[1:]))
        elif name in ("fatload", "ext4load", "load"):
            self._load(name, argv[1:])
        elif name == "fdt":
            self._fdt(argv[1:])
        elif name in ("bootz", "bootm"):
            entry, fdt_addr = (self._bootz if name == "bootz" else self._bootm)(argv[1:])
            self.print("\nStarting kernel ...\n")
            return Handoff(entry, fdt_addr, name, line, script, self.ram)
        elif name in ("if", "then", "else", "elif", "fi", "for", "while", "until", "do",
                      "done", "run", "source", "test"):
            raise CommandError("not supported by this firmware model (supported: setenv, "
                               "printenv, echo, fatload, ext4load, load, fdt, bootz, bootm)")
        else:
            raise CommandError(f"Unknown command '{name}' - try 'help'")
        return None

    # -- environment ------------------------------------------------------------------------------

    def _setenv(self, args: list[str]) -> None:
        if not args:
            raise CommandError("usage: setenv name [value ...]")
        if "=" in args[0] or not args[0]:
            raise CommandError(f"## Error: illegal character '=' in variable name \"{args[0]}\"")
        if len(args) == 1:
            self.env.pop(args[0], None)
        else:
            self.env[args[0]] = " ".join(args[1:])

    def _printenv(self, names: list[str]) -> None:
        for key in names or sorted(self.env):
            if key not in self.env:
                raise CommandError(f'## Error: "{key}" not defined')
            self.print(f"{key}={self.env[key]}")

    def _env_hex(self, var: str, default: int | None = None) -> int | None:
        value = self.env.get(var)
        if value is None:
            return default
        return hex_arg(value, f"${{{var}}}")

    # -- loading files from the SD card ------------------------------------------------------------

    def _load(self, cmd: str, args: list[str]) -> None:
        if len(args) < 2:
            raise CommandError(f"usage: {cmd} <interface> <dev[:part]> [addr [filename "
                               f"[bytes [pos]]]]")
        iface, devpart = args[0], args[1]
        dev, _, part = devpart.partition(":")
        if iface != "mmc" or dev != "0":
            raise CommandError(f"** Bad device specification {iface} {devpart} ** (this board "
                               f"has one storage device: the SD card, mmc 0)")
        if part not in ("", "1", "auto"):
            raise CommandError(f"** No partition {part} on mmc 0 ** (the SD card directory "
                               f"is partition 1)")
        addr = hex_arg(args[2], "load address") if len(args) > 2 else \
            self._env_hex("loadaddr")
        filename = args[3] if len(args) > 3 else self.env.get("bootfile", "")
        count = hex_arg(args[4], "byte count") if len(args) > 4 else 0
        pos = hex_arg(args[5], "file position") if len(args) > 5 else 0
        if not filename:
            raise CommandError("no file name given (and $bootfile is not set)")
        host = self._sd_file(filename)
        if host is None:
            raise CommandError(f"** File not found {filename} ** (not on the SD card {self.sd})")
        t0 = time.perf_counter()
        data = host.read_bytes()
        if pos > len(data):
            raise CommandError(f"position 0x{pos:x} is past the end of {filename} "
                               f"({len(data)} bytes)")
        data = data[pos:pos + count] if count else data[pos:]
        assert addr is not None
        self.ram.write(addr, data)
        ms = int((time.perf_counter() - t0) * 1000)
        self.print(f"{len(data)} bytes read in {ms} ms")
        self.env["filesize"] = f"{len(data):x}"
        self.env["fileaddr"] = f"{addr:x}"

    def _sd_file(self, filename: str) -> Path | None:
        """The host file for a path on the card; never outside the card's directory."""
        root = self.sd.resolve()
        parts = [p for p in filename.split("/") if p and p != "."]
        if any(p == ".." for p in parts):
            return None
        host = root.joinpath(*parts) if parts else root
        return host if host.is_file() else None

    # -- the device tree ---------------------------------------------------------------------------

    def _working(self) -> tuple[Fdt, int]:
        if self.fdt_addr is None:
            raise CommandError('No FDT memory address configured. Please configure the FDT '
                               'address via "fdt addr <address>" command.')
        return self._read_fdt(self.fdt_addr)

    def _read_fdt(self, addr: int) -> tuple[Fdt, int]:
        """The tree at addr and its totalsize. Only the blocks the header points to are read:
        the free space of a tree opened into a big buffer is not the tree's."""
        try:
            if not self.ram.base <= addr < self.ram.base + self.ram.size:
                self.ram.read(addr, 8)              # the usual outside-RAM message
            blob, total = read_fdt_blocks(self.ram.read, addr,
                                          self.ram.base + self.ram.size - addr)
            return Fdt.parse(blob), total
        except FdtError as e:
            raise CommandError(f"libfdt fdt_check_header(): {e.code or 'FDT_ERR_BADSTRUCTURE'} "
                               f"({e})") from None

    def _store(self, fdt: Fdt, total: int, what: str, addr: int | None = None) -> None:
        """Write the tree as opened into `total` bytes at addr. Like libfdt's fdt_open_into,
        only the blocks are written: the free space after them is left as it is in RAM."""
        at = self.fdt_addr if addr is None else addr
        assert at is not None
        room = self.ram.base + self.ram.size - at
        if total > room or total > 0xFFFFFFFF:
            raise CommandError(f"libfdt {what}(): FDT_ERR_NOSPACE (a {total:#x}-byte tree at "
                               f"0x{at:08x} does not fit in RAM, which ends {room:#x} bytes "
                               f"after it)")
        blob = fdt.to_blob()
        if len(blob) > total:
            try:
                fdt.to_blob(total)              # libfdt's own complaint about the size
            except FdtError as e:
                raise CommandError(f"libfdt {what}(): {e.code} ({e}; use 'fdt resize' or a "
                                   f"bigger size in 'fdt addr')") from None
        blob = bytearray(blob)
        struct.pack_into(">I", blob, 4, total)
        self.ram.write(at, bytes(blob))

    def _fdt(self, args: list[str]) -> None:
        if not args:
            raise CommandError("usage: fdt addr|resize|chosen|set|mknode|rm|print|list|get ...")
        sub, rest = args[0], args[1:]
        if sub.startswith("ad"):
            opts = [a for a in rest if a.startswith("-")]
            rest = [a for a in rest if not a.startswith("-")]
            if any(o not in ("-c", "-q") for o in opts):
                raise CommandError(f"fdt addr: unknown option {opts[0]}")
            if not rest:
                if self.fdt_addr is None:
                    raise CommandError("no working fdt address set")
                self.print(f"Working fdt: {self.fdt_addr:08x}")
                return
            addr = hex_arg(rest[0], "fdt address")
            fdt, total = self._read_fdt(addr)
            self.fdt_addr = addr
            self.env["fdtaddr"] = f"{addr:x}"
            if len(rest) > 1:
                size = hex_arg(rest[1], "fdt size")
                if size < total:
                    self.print(f"New length {size} < existing length {total}, ignoring")
                else:
                    self._store(fdt, size, "fdt_open_into")
            return
        fdt, total = self._working()
        if sub.startswith("re"):                        # resize [extrasize]
            extra = hex_arg(rest[0], "extra size") if rest else 0
            assert self.fdt_addr is not None
            used = fdt.size() + 5 * 16 + extra
            slack = self.fdt_addr & 0xFFF
            actual = ((used + slack + 0xFFF) & ~0xFFF) - slack
            self._store(fdt, actual, "fdt_shrink_to_minimum")
        elif sub.startswith("cho"):                     # chosen [initrd_start initrd_size]
            if len(rest) not in (0, 2):
                raise CommandError("usage: fdt chosen [<start> <size>]")
            self._fixup_chosen(fdt, rest)
            self._store(fdt, total, "fdt_setprop")
        elif sub.startswith("mk"):                      # mknode <path> <node>
            if len(rest) < 2:
                raise CommandError("usage: fdt mknode <path> <node>")
            parent = self._node(fdt, rest[0])
            try:
                parent.add_child(rest[1])
            except FdtError as e:
                raise CommandError(f"libfdt fdt_add_subnode(): {e.code} ({e})") from None
            self._store(fdt, total, "fdt_add_subnode")
        elif sub.startswith("se"):                      # set <path> <prop> [<val>]
            if len(rest) < 2:
                raise CommandError("usage: fdt set <path> <prop> [<val>]")
            node = self._node(fdt, rest[0])
            old = node.props.get(rest[1], b"")
            node.props[rest[1]] = parse_prop(rest[2:], old) if len(rest) > 2 else b""
            self._store(fdt, total, "fdt_setprop")
        elif sub.startswith("rm"):                      # rm <path> [<prop>]
            if not rest:
                raise CommandError("usage: fdt rm <path> [<prop>]")
            node = self._node(fdt, rest[0])
            if len(rest) > 1:
                if rest[1] not in node.props:
                    raise CommandError(f"libfdt fdt_delprop(): FDT_ERR_NOTFOUND ({rest[0]} "
                                       f"has no property {rest[1]})")
                del node.props[rest[1]]
            else:
                parent = fdt.parent_of(node)
                if parent is None:
                    raise CommandError("libfdt fdt_del_node(): cannot delete the root node")
                parent.children.remove(node)
            self._store(fdt, total, "fdt_del_node")
        elif sub[:1] in ("p", "l"):                     # print / list [path [prop]]
            path = rest[0] if rest else "/"
            node = self._node(fdt, path)
            if len(rest) > 1:
                if rest[1] not in node.props:
                    raise CommandError(f"libfdt fdt_getprop(): FDT_ERR_NOTFOUND ({path} has "
                                       f"no property {rest[1]})")
                raw = node.props[rest[1]]
                self.print(f"{path} {rest[1]}" if not raw else
                           f"{rest[1]} = {format_value(raw)}")
            else:
                for out in format_tree(node, 1 if sub[0] == "l" else 32):
                    self.print(out)
        elif sub.startswith("g") and rest[:1] == ["value"]:   # get value <var> <path> <prop>
            if len(rest) != 4:
                raise CommandError("usage: fdt get value <var> <path> <prop>")
            node = self._node(fdt, rest[2])
            raw = node.props.get(rest[3])
            if raw is None:
                raise CommandError(f"libfdt fdt_getprop(): FDT_ERR_NOTFOUND ({rest[2]} has no "
                                   f"property {rest[3]})")
            if is_printable_strings(raw):
                self.env[rest[1]] = raw.split(b"\0")[0].decode("latin-1")
            elif len(raw) % 4 == 0 and len(raw) <= 20:
                words = struct.unpack(f">{len(raw) // 4}I", raw)
                self.env[rest[1]] = " ".join(f"0x{w:08x}" for w in words)
            else:
                self.env[rest[1]] = raw.hex()
        else:
            raise CommandError(f"unsupported sub-command '{sub}' (supported: addr, resize, "
                               f"chosen, set, mknode, rm, print, list, get value)")

    @staticmethod
    def _node(fdt: Fdt, path: str):
        node = fdt.find(path)
        if node is None:
            raise CommandError(f"libfdt fdt_path_offset() returned FDT_ERR_NOTFOUND "
                               f"(no node {path})")
        return node

    def _fixup_chosen(self, fdt: Fdt, initrd: list[str]) -> None:
        """fdt_chosen(): /chosen exists and carries $bootargs; fdt_initrd() for the initrd."""
        chosen = fdt.root.child("chosen") or fdt.root.add_child("chosen")
        if "bootargs" in self.env:
            chosen.props["bootargs"] = self.env["bootargs"].encode("latin-1") + b"\0"
        if initrd:
            start = hex_arg(initrd[0], "initrd start")
            end = start + hex_arg(initrd[1], "initrd size")
            cells = fdt.root.u32("#address-cells", 2) or 2
            fmt = ">Q" if cells == 2 else ">I"
            chosen.props["linux,initrd-start"] = struct.pack(fmt, start)
            chosen.props["linux,initrd-end"] = struct.pack(fmt, end)

    # -- booting ----------------------------------------------------------------------------------

    def _boot_args(self, args: list[str]) -> tuple[int, int | None]:
        addr = hex_arg(args[0], "image address") if args else self._env_hex("loadaddr")
        assert addr is not None
        if len(args) > 1 and args[1] != "-":
            raise CommandError("an initrd is not supported by this board's boot path "
                               "(give '-'): Xen takes its modules from /chosen")
        fdt = hex_arg(args[2], "fdt address") if len(args) > 2 else None
        return addr, fdt

    def _bootz(self, args: list[str]) -> tuple[int, int]:
        addr, fdt_addr = self._boot_args(args)
        magic, start, end = struct.unpack("<III", self.ram.read(addr + 0x24, 12))
        if magic not in (ZIMAGE_MAGIC, BAREBOX_MAGIC):
            raise CommandError(f"zimage: Bad magic! (no ARM zImage at 0x{addr:08x})")
        self.print(f"Kernel image @ {_c_alt_hex(addr, 8)} [ {_c_alt_hex(start, 8)} - "
                   f"{_c_alt_hex(end, 8)} ]")
        return addr, self._prepare_fdt(fdt_addr)

    def _bootm(self, args: list[str]) -> tuple[int, int]:
        addr, fdt_addr = self._boot_args(args)
        head = self.ram.read(addr, UIMAGE_HEADER_LEN)
        if struct.unpack_from(">I", head)[0] != UIMAGE_MAGIC:
            raise CommandError("Wrong Image Format for bootm command; ERROR: can't get kernel "
                               "image!")
        size = UImageHeader.parse(head).size
        data = self.ram.read(addr, UIMAGE_HEADER_LEN + min(size, self.ram.size))
        self.print(f"## Booting kernel from Legacy Image at {addr:08x} ...")
        hdr = check_legacy_image(data)
        self.print(f"   Image Name:   {hdr.name}")
        self.print(f"   Image Type:   ARM Linux {_TYPE_NAMES.get(hdr.type, hdr.type)} "
                   f"({'gzip compressed' if hdr.comp == IH_COMP_GZIP else 'uncompressed'})")
        self.print(f"   Data Size:    {hdr.size} Bytes")
        self.print(f"   Load Address: {hdr.load:08x}")
        self.print(f"   Entry Point:  {hdr.ep:08x}")
        self.print("   Verifying Checksum ... OK")
        if hdr.arch != IH_ARCH_ARM:
            raise CommandError(f"Unsupported Architecture 0x{hdr.arch:x}")
        if hdr.type not in (IH_TYPE_KERNEL, IH_TYPE_KERNEL_NOLOAD):
            raise CommandError(f"Wrong Image Type for bootm command ({hdr.type}: "
                               f"{_TYPE_NAMES.get(hdr.type, 'not a kernel')}); ERROR: can't "
                               f"get kernel image!")
        if hdr.os != IH_OS_LINUX:
            raise CommandError(f"ERROR: booting os ({hdr.os}) is not supported")
        payload = data[UIMAGE_HEADER_LEN:UIMAGE_HEADER_LEN + hdr.size]
        if hdr.comp == IH_COMP_GZIP:
            try:
                payload = gzip.decompress(payload)
            except (OSError, EOFError, zlib.error) as e:
                raise CommandError(f"Error: inflate() returned an error ({e})") from None
        elif hdr.comp != IH_COMP_NONE:
            raise CommandError(f"Unimplemented compression type {hdr.comp}")
        entry = hdr.ep
        if hdr.type == IH_TYPE_KERNEL_NOLOAD:
            entry = addr + UIMAGE_HEADER_LEN + hdr.ep
        elif hdr.load == addr + UIMAGE_HEADER_LEN and hdr.comp == IH_COMP_NONE:
            self.print("   XIP Kernel Image ... OK")
        else:
            self.ram.write(hdr.load, payload)
            self.print("   Loading Kernel Image ... OK")
        return entry, self._prepare_fdt(fdt_addr)

    def _prepare_fdt(self, fdt_addr: int | None) -> int:
        """boot_get_fdt + image_setup_libfdt: relocate (or not), fix up /chosen and /memory."""
        if fdt_addr is None:
            raise CommandError("no device tree given: Xen on ARM needs one "
                               "(bootz <kernel> - <fdt>)")
        self.print(f"## Flattened Device Tree blob at {fdt_addr:08x}")
        self.print(f"   Booting using the fdt blob at {_c_alt_hex(fdt_addr, 8)}")
        try:
            fdt, total = self._read_fdt(fdt_addr)
        except CommandError:
            raise CommandError(f"ERROR: Did not find a cmdline Flattened Device Tree at "
                               f"0x{fdt_addr:08x}") from None
        size = total + FDT_PAD
        high = self._env_hex("fdt_high")
        if high == 0xFFFFFFFF:
            where = fdt_addr
            self.print(f"   Using Device Tree in place at {where:08x}, end {where + size - 1:08x}")
        else:
            bootm_low = self._env_hex("bootm_low", self.ram.base) or self.ram.base
            limit = min(bootm_low + (self._env_hex("bootm_size", self.ram.size) or 0),
                        self.ram.base + self.ram.size)
            if high:
                limit = min(limit, high)
            where = (limit - size) & ~0xFFF
            self.print(f"   Loading Device Tree to {where:08x}, end {where + size - 1:08x} ... OK")
        self._fixup_chosen(fdt, [])
        memory = fdt.find("/memory")
        if memory is not None:                      # fdt_fixup_memory_banks: the real DRAM
            ac = fdt.root.u32("#address-cells", 2) or 2
            sc = fdt.root.u32("#size-cells", 1) or 1
            cells = [(self.ram.base, ac), (self.ram.size, sc)]
            memory.props["reg"] = b"".join(v.to_bytes(4 * n, "big") for v, n in cells)
        self._store(fdt, size, "fdt_open_into", where)
        return where


def parse_prop(args: list[str], old: bytes = b"") -> bytes:
    """fdt_parse_prop: <cells> (a '?' keeps the old cell), [hex bytes], or strings, from argv."""
    first = args[0]
    data = bytearray()
    if first.startswith("<"):
        idx, s = 0, first[1:]
        while not s.startswith(">"):
            if not s:
                idx += 1
                if idx >= len(args):
                    raise CommandError("Unexpected end of the cell list: no closing '>'")
                s = args[idx]
                continue
            if s[0] == "?":
                cell = len(data)
                data += old[cell:cell + 4].ljust(4, b"\0")
                s = s[1:]
            else:
                value, used = strtoul(s)
                if used == 0:
                    raise CommandError(f'Sorry, I could not convert "{s}"')
                data += struct.pack(">I", value & 0xFFFFFFFF)
                s = s[used:]
            s = s.lstrip(" ")
        return bytes(data)
    if first.startswith("["):
        idx, s = 0, first[1:]
        while True:
            s = s.lstrip(" ")
            if not s:
                idx += 1
                if idx >= len(args):
                    raise CommandError("Unexpected end of the byte list: no closing ']'")
                s = args[idx]
                continue
            if s.startswith("]"):
                return bytes(data)
            value, used = strtoul(s, 16)
            if used == 0:
                raise CommandError(f"Unexpected character '{s[0]}'")
            data.append(value & 0xFF)
            s = s[used:]
    for a in args:
        data += a.encode("latin-1") + b"\0"
    return bytes(data)


__all__ = ["FirmwareError", "Handoff", "Ram", "UBoot", "check_legacy_image", "make_legacy_image",
           "make_script_image", "parse_prop", "parse_script", "script_from_image"]
