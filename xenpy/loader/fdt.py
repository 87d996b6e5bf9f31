"""Flattened device trees: read a blob, edit the tree, write it back; compile a DTS subset.

Shared by the board's firmware (U-Boot's `fdt` command edits the host tree in RAM), by the
hypervisor's early boot (Xen reads /memory, /cpus and /chosen from it) and by the board's build of
its own tree from `bootscripts/<board>/<board>.dts`. Property values are kept as raw bytes, as
libfdt keeps them, so nothing is reinterpreted on the way through.

Every error is an FdtError whose message is one line; `code` is libfdt's name for it where libfdt
has one (FDT_ERR_BADMAGIC, FDT_ERR_NOTFOUND, ...), so the firmware can print what U-Boot prints.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
HEADER_SIZE = 40                  # version 17 header
VERSION, LAST_COMP_VERSION = 17, 16
MAX_DEPTH = 32


class FdtError(Exception):
    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Node:
    name: str
    props: dict[str, bytes] = field(default_factory=dict)    # insertion order is blob order
    children: list["Node"] = field(default_factory=list)

    def child(self, name: str) -> "Node | None":
        """libfdt's name match: "serial" finds "serial@1c28000", "serial@1c28000" only itself."""
        for c in self.children:
            if c.name == name or ("@" not in name and c.name.split("@", 1)[0] == name):
                return c
        return None

    def add_child(self, name: str) -> "Node":
        if not name or "/" in name:
            raise FdtError(f"bad node name {name!r}", "FDT_ERR_BADPATH")
        if any(c.name == name for c in self.children):
            raise FdtError(f"node {name} already exists", "FDT_ERR_EXISTS")
        node = Node(name)
        self.children.append(node)
        return node

    def u32(self, prop: str, default: int | None = None) -> int | None:
        raw = self.props.get(prop)
        if raw is None or len(raw) < 4:
            return default
        return struct.unpack_from(">I", raw)[0]

    def strings(self, prop: str) -> list[str] | None:
        raw = self.props.get(prop)
        if raw is None:
            return None
        return [s.decode("latin-1") for s in raw.split(b"\0")[:-1]] if raw.endswith(b"\0") else \
            [raw.decode("latin-1")]

    def string(self, prop: str) -> str | None:
        values = self.strings(prop)
        return values[0] if values else None

    def walk(self, path: str = ""):
        """(path, node) for this node and every node below it, depth first."""
        here = path if path else "/"
        yield here, self
        for c in self.children:
            yield from c.walk(f"{path}/{c.name}")


@dataclass
class Fdt:
    root: Node
    reserved: list[tuple[int, int]] = field(default_factory=list)   # /memreserve/ entries
    boot_cpuid: int = 0

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def header_size(blob: bytes) -> int:
        """totalsize from a header, after checking the magic (libfdt's fdt_check_header)."""
        if len(blob) < 8:
            raise FdtError("truncated device tree header", "FDT_ERR_TRUNCATED")
        magic, total = struct.unpack_from(">II", blob)
        if magic != FDT_MAGIC:
            raise FdtError(f"not a device tree (magic 0x{magic:08x}, expected "
                           f"0x{FDT_MAGIC:08x})", "FDT_ERR_BADMAGIC")
        return total

    @classmethod
    def parse(cls, blob: bytes) -> "Fdt":
        total = cls.header_size(blob)
        if len(blob) < HEADER_SIZE or total < HEADER_SIZE or total > len(blob):
            raise FdtError(f"truncated device tree: header says {total} bytes, "
                           f"{len(blob)} available", "FDT_ERR_TRUNCATED")
        (_m, _t, off_struct, off_strings, off_rsv, version, last_comp, boot_cpuid,
         size_strings, size_struct) = struct.unpack_from(">10I", blob)
        if version < LAST_COMP_VERSION or last_comp > VERSION:
            raise FdtError(f"unsupported device tree version {version}", "FDT_ERR_BADVERSION")
        for what, off, size in (("structure block", off_struct, size_struct),
                                ("strings block", off_strings, size_strings)):
            if off + size > total or off < HEADER_SIZE:
                raise FdtError(f"device tree {what} runs outside the blob", "FDT_ERR_TRUNCATED")
        reserved = []
        pos = off_rsv
        while True:
            if pos + 16 > total:
                raise FdtError("device tree reserve map is not terminated", "FDT_ERR_TRUNCATED")
            addr, size = struct.unpack_from(">QQ", blob, pos)
            pos += 16
            if not addr and not size:
                break
            reserved.append((addr, size))
        strings = blob[off_strings:off_strings + size_strings]
        sblock = blob[off_struct:off_struct + size_struct]

        def name_at(off: int) -> str:
            end = strings.find(b"\0", off)
            if off >= len(strings) or end < 0:
                raise FdtError("property name outside the strings block", "FDT_ERR_BADSTRUCTURE")
            return strings[off:end].decode("latin-1")

        stack: list[Node] = []
        root: Node | None = None
        pos = 0
        while True:
            if pos + 4 > len(sblock):
                raise FdtError("device tree structure block ends without FDT_END",
                               "FDT_ERR_BADSTRUCTURE")
            tag = struct.unpack_from(">I", sblock, pos)[0]
            pos += 4
            if tag == FDT_BEGIN_NODE:
                end = sblock.find(b"\0", pos)
                if end < 0:
                    raise FdtError("unterminated node name", "FDT_ERR_BADSTRUCTURE")
                name = sblock[pos:end].decode("latin-1")
                pos = (end + 4) & ~3
                node = Node(name)
                if stack:
                    stack[-1].children.append(node)
                elif root is None:
                    root = node
                else:
                    raise FdtError("more than one root node", "FDT_ERR_BADSTRUCTURE")
                stack.append(node)
                if len(stack) > MAX_DEPTH:
                    raise FdtError("device tree nested too deep", "FDT_ERR_BADSTRUCTURE")
            elif tag == FDT_END_NODE:
                if not stack:
                    raise FdtError("unbalanced FDT_END_NODE", "FDT_ERR_BADSTRUCTURE")
                stack.pop()
            elif tag == FDT_PROP:
                if not stack or pos + 8 > len(sblock):
                    raise FdtError("property outside a node", "FDT_ERR_BADSTRUCTURE")
                length, nameoff = struct.unpack_from(">II", sblock, pos)
                pos += 8
                if pos + length > len(sblock):
                    raise FdtError("property value runs past the structure block",
                                   "FDT_ERR_BADSTRUCTURE")
                stack[-1].props[name_at(nameoff)] = bytes(sblock[pos:pos + length])
                pos = (pos + length + 3) & ~3
            elif tag == FDT_NOP:
                continue
            elif tag == FDT_END:
                break
            else:
                raise FdtError(f"unknown structure tag 0x{tag:x}", "FDT_ERR_BADSTRUCTURE")
        if root is None or stack:
            raise FdtError("device tree has no complete root node", "FDT_ERR_BADSTRUCTURE")
        return cls(root, reserved, boot_cpuid)

    # -- writing ------------------------------------------------------------------------------

    def to_blob(self, totalsize: int | None = None) -> bytes:
        """The blob (dtc's layout: header, reserve map, structure, strings), padded with zeros
        to `totalsize` when given, as libfdt leaves a tree opened into a bigger buffer."""
        strings = bytearray()
        offsets: dict[str, int] = {}
        out = bytearray()

        def name_off(name: str) -> int:
            if name not in offsets:
                offsets[name] = len(strings)
                strings.extend(name.encode("latin-1") + b"\0")
            return offsets[name]

        def emit(node: Node, top: bool) -> None:
            name = b"" if top else node.name.encode("latin-1")
            out.extend(struct.pack(">I", FDT_BEGIN_NODE) + name + b"\0")
            out.extend(b"\0" * (-len(out) % 4))
            for prop, value in node.props.items():
                out.extend(struct.pack(">III", FDT_PROP, len(value), name_off(prop)) + value)
                out.extend(b"\0" * (-len(out) % 4))
            for c in node.children:
                emit(c, False)
            out.extend(struct.pack(">I", FDT_END_NODE))

        emit(self.root, True)
        out.extend(struct.pack(">I", FDT_END))
        rsv = b"".join(struct.pack(">QQ", a, s) for a, s in self.reserved) + b"\0" * 16
        off_rsv = HEADER_SIZE
        off_struct = off_rsv + len(rsv)
        off_strings = off_struct + len(out)
        used = off_strings + len(strings)
        total = used if totalsize is None else totalsize
        if total < used:
            raise FdtError(f"device tree needs {used} bytes, only {total} available",
                           "FDT_ERR_NOSPACE")
        header = struct.pack(">10I", FDT_MAGIC, total, off_struct, off_strings, off_rsv, VERSION,
                             LAST_COMP_VERSION, self.boot_cpuid, len(strings), len(out))
        return header + rsv + bytes(out) + bytes(strings) + b"\0" * (total - used)

    def size(self) -> int:
        """Bytes the tree needs (header to the end of the strings block)."""
        return len(self.to_blob())

    # -- paths --------------------------------------------------------------------------------

    def find(self, path: str) -> Node | None:
        """libfdt's fdt_path_offset: an absolute path, or an alias name with an optional rest."""
        if not path.startswith("/"):
            alias, _, rest = path.partition("/")
            aliases = self.root.child("aliases")
            target = aliases.string(alias) if aliases is not None else None
            if target is None or not target.startswith("/"):
                return None
            path = target.rstrip("/") + ("/" + rest if rest else "")
        node = self.root
        for part in [p for p in path.split("/") if p]:
            node = node.child(part)
            if node is None:
                return None
        return node

    def parent_of(self, target: Node) -> Node | None:
        for _path, node in self.root.walk():
            if any(c is target for c in node.children):
                return node
        return None


# ---------------------------------------------------------------------------------------------
# A DTS subset: enough for a board's tree (dtc syntax, so dtc compiles the same file).
#
#   /dts-v1/;   nodes `name { ... };` with optional `label:`,   props `name;`  `name = "a", "b";`
#   `name = <1 0x2 &label>, <3>;`   `name = [00 ab];`   // and /* */ comments.
# A `&label` cell is the phandle of the labelled node; such nodes get a `phandle` property last,
# as dtc gives them.

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<directive>/dts-v1/|/memreserve/)
  | (?P<punct>[{};=<>,\[\]])
  | (?P<ref>&[A-Za-z_][A-Za-z0-9_]*)
  | (?P<word>[A-Za-z0-9_,.+\-#@/?]+:?)
""", re.X | re.S)


def _tokens(text: str, name: str):
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FdtError(f"{name}:{line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        if kind != "ws":
            yield kind, m.group(), line
        line += m.group().count("\n")
        pos = m.end()
    yield "eof", "", line


def _unescape(s: str) -> bytes:
    out = bytearray()
    it = iter(s)
    for ch in it:
        if ch != "\\":
            out += ch.encode("latin-1")
            continue
        nxt = next(it, "")
        out += {"n": b"\n", "t": b"\t", "r": b"\r", "0": b"\0", "\\": b"\\", '"': b'"'}.get(
            nxt, nxt.encode("latin-1"))
    return bytes(out)


def compile_dts(text: str, name: str = "dts") -> bytes:
    """Compile DTS source to a blob; errors are one line naming `name:LINE`."""
    toks = list(_tokens(text, name))
    i = 0
    labels: dict[str, Node] = {}
    fixups: list[tuple[Node, str, int, str, int]] = []    # (node, prop, byte offset, label, line)

    def peek() -> tuple[str, str, int]:
        return toks[i]

    def take(kind: str | None = None, value: str | None = None) -> tuple[str, str, int]:
        nonlocal i
        k, v, line = toks[i]
        if (kind and k != kind) or (value is not None and v != value):
            want = value or kind
            raise FdtError(f"{name}:{line}: expected {want!r}, found {v or 'end of file'!r}")
        i += 1
        return k, v, line

    def number(word: str, line: int) -> int:
        try:
            return int(word, 0)
        except ValueError:
            raise FdtError(f"{name}:{line}: {word!r} is not a number") from None

    def value(node: Node, prop: str) -> bytes:
        data = bytearray()
        while True:
            k, v, line = peek()
            if k == "string":
                take()
                data += _unescape(v[1:-1]) + b"\0"
            elif v == "<":
                take()
                while peek()[1] != ">":
                    k2, v2, line2 = take()
                    if k2 == "ref":
                        fixups.append((node, prop, len(data), v2[1:], line2))
                        data += b"\0\0\0\0"
                    elif k2 == "word":
                        data += struct.pack(">I", number(v2, line2) & 0xFFFFFFFF)
                    else:
                        raise FdtError(f"{name}:{line2}: unexpected {v2!r} in a cell list")
                take("punct", ">")
            elif v == "[":
                take()
                while peek()[1] != "]":
                    _k2, v2, line2 = take("word")
                    if not re.fullmatch(r"([0-9A-Fa-f]{2})+", v2):
                        raise FdtError(f"{name}:{line2}: {v2!r} is not hex bytes")
                    data += bytes.fromhex(v2)
                take("punct", "]")
            else:
                raise FdtError(f"{name}:{line}: expected a value, found {v or 'end of file'!r}")
            if peek()[1] != ",":
                return bytes(data)
            take()

    def body(node: Node) -> None:
        while peek()[1] != "}":
            k, v, line = take()
            if k != "word":
                raise FdtError(f"{name}:{line}: expected a property or node, found "
                               f"{v or 'end of file'!r}")
            label = None
            if v.endswith(":"):
                label = v[:-1]
                k, v, line = take("word")
            nxt = peek()[1]
            if nxt == "{":
                take()
                try:
                    child = node.add_child(v)
                except FdtError as e:
                    raise FdtError(f"{name}:{line}: {e}") from None
                if label:
                    labels[label] = child
                body(child)
                take("punct", "}")
                take("punct", ";")
            elif label:
                raise FdtError(f"{name}:{line}: a label must name a node")
            elif nxt == ";":
                take()
                node.props[v] = b""
            else:
                take("punct", "=")
                node.props[v] = value(node, v)
                take("punct", ";")

    take("directive", "/dts-v1/")
    take("punct", ";")
    reserved = []
    while peek()[1] == "/memreserve/":
        take()
        a = number(take("word")[1], peek()[2])
        s = number(take("word")[1], peek()[2])
        take("punct", ";")
        reserved.append((a, s))
    take("word", "/")
    take("punct", "{")
    root = Node("/")
    body(root)
    take("punct", "}")
    take("punct", ";")
    if peek()[0] != "eof":
        raise FdtError(f"{name}:{peek()[2]}: unexpected {peek()[1]!r} after the root node")
    phandles: dict[int, int] = {}
    for node, prop, off, label, line in fixups:
        target = labels.get(label)
        if target is None:
            raise FdtError(f"{name}:{line}: reference to undefined label &{label}")
        if id(target) not in phandles:
            phandles[id(target)] = len(phandles) + 1
            target.props["phandle"] = struct.pack(">I", phandles[id(target)])
        raw = bytearray(node.props[prop])
        raw[off:off + 4] = struct.pack(">I", phandles[id(target)])
        node.props[prop] = bytes(raw)
    return Fdt(root, reserved).to_blob()


# ---------------------------------------------------------------------------------------------
# Values as U-Boot's `fdt print` shows them.

def is_printable_strings(raw: bytes) -> bool:
    if not raw or not raw.endswith(b"\0"):
        return False
    return all(part and all(0x20 <= b < 0x7F for b in part) for part in raw[:-1].split(b"\0"))


def format_value(raw: bytes) -> str:
    if is_printable_strings(raw):
        return ", ".join(f'"{s.decode("latin-1")}"' for s in raw[:-1].split(b"\0"))
    if len(raw) % 4 == 0:
        words = struct.unpack(f">{len(raw) // 4}I", raw)
        return "<" + " ".join(f"0x{w:08x}" for w in words) + ">"
    return "[" + " ".join(f"{b:02x}" for b in raw) + "]"


def format_tree(node: Node, depth: int = MAX_DEPTH, level: int = 0) -> list[str]:
    """U-Boot's fdt print / fdt list layout (tabs, `name {`, `prop = value;`, `};`)."""
    tabs = "\t" * level
    lines = [f"{tabs}{node.name or '/'} {{"]
    if level < depth:
        for prop, raw in node.props.items():
            lines.append(f"{tabs}\t{prop};" if not raw else f"{tabs}\t{prop} = {format_value(raw)};")
        for c in node.children:
            lines += format_tree(c, depth, level + 1)
    lines.append(f"{tabs}}};")
    return lines


__all__ = ["Fdt", "FdtError", "Node", "compile_dts", "format_tree", "format_value",
           "is_printable_strings", "FDT_MAGIC"]
