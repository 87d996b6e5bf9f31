"""The XenStore database: nodes, permissions, path rules and quotas.

Mirrors the data model of tools/xenstored/core.c: a flat table from full path to
node, each node holding its value, its permission list and the ordered names of
its children. A node's first permission entry names its owner and gives the
access of every domain without an entry of its own.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, fields

# xen/include/public/xen.h
DOMID_SELF = 0x7FF0
DOMID_ANY = 0x7FF5

# tools/include/xenstore_lib.h
XS_PERM_NONE = 0x00
XS_PERM_READ = 0x01
XS_PERM_WRITE = 0x02
XS_PERM_OWNER = 0x08  # internal
XS_PERM_IGNORE = 0x10  # internal

NO_GENERATION = -1

PRIV_DOMID = 0  # the control domain, also the store domain here
_LETTERS = {"n": XS_PERM_NONE, "r": XS_PERM_READ, "w": XS_PERM_WRITE, "b": XS_PERM_READ | XS_PERM_WRITE}
_LETTER_OF = {v: k for k, v in _LETTERS.items()}
# strtol(p, &end, 0): optional blanks and sign, then hex, octal or decimal.
_STRTOL0 = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_VALID_CHARS = re.compile(r"[A-Za-z0-9\-/_@]*")


class XsErr(Exception):
    """A request failed; `name` is the errno name sent in the XS_ERROR reply."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class Perm:
    bits: int
    domid: int

    def __str__(self) -> str:
        letter = _LETTER_OF.get(self.bits & ~XS_PERM_IGNORE & 3, "n")
        signed = self.domid - (1 << 32) if self.domid >= 1 << 31 else self.domid
        return f"{letter}{signed}"  # "%i" of an unsigned int, as xenstored prints it


def parse_perm(text: str) -> Perm:
    """One permission string ('b5'), as xenstore_strings_to_perms reads it."""
    if not text or text[0] not in _LETTERS:
        raise XsErr("EINVAL")
    m = _STRTOL0.fullmatch(text, 1)
    if not m:
        raise XsErr("EINVAL")
    digits = m.group(2)
    if digits[:2] in ("0x", "0X"):
        value = int(digits, 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    if m.group(1) == "-":
        value = -value
    return Perm(_LETTERS[text[0]], value & 0xFFFFFFFF)


def format_perms(perms: tuple[Perm, ...]) -> list[str]:
    return [str(p) for p in perms]


@dataclass
class Node:
    value: bytes
    perms: tuple[Perm, ...]
    children: list[str] = field(default_factory=list)
    generation: int = 0

    @property
    def owner(self) -> int:
        return self.perms[0].domid

    def copy(self) -> Node:
        return Node(self.value, self.perms, list(self.children), self.generation)

    def acc_size(self) -> int:
        """Bytes xenstored accounts for the node (calc_node_acc_size): a 16-byte
        header, 8 bytes per permission, the value and the NUL-separated children."""
        return 16 + 8 * len(self.perms) + len(self.value) + sum(len(c) + 1 for c in self.children)


@dataclass
class Quota:
    """xenstored's hard quotas (tools/xenstored/domain.c); 0 disables one.

    They bind unprivileged domains only. As in xenstored 4.22 an operation fails
    when the resulting value reaches the quota (value >= quota)."""

    nodes: int = 1000  # nodes owned by one domain
    watches: int = 128  # watches per domain connection
    outstanding: int = 20  # requests whose reply the guest has not taken
    memory: int = 2 * 1024 * 1024 + 512 * 1024  # bytes queued for one guest
    transactions: int = 10  # open transactions per domain connection
    transaction_nodes: int = 1024  # nodes accessed in one transaction
    node_permissions: int = 5  # permission entries per node
    path_max: int = 2048  # path length below /local/domain/<domid>
    node_size: int = 2048  # acc_size() of one node

    # Wire names used by GET_QUOTA/SET_QUOTA and CONTROL quota, in xenstored's order.
    NAMES = ("nodes", "watches", "outstanding", "memory", "transactions",
             "transaction-nodes", "node-permissions", "path-max", "node-size")
    DESCR = ("Nodes per domain", "Watches per domain", "Outstanding requests per domain",
             "Total Xenstore memory per domain", "Active transactions per domain",
             "Max. number of accessed nodes per transaction", "Max. number of permissions per node",
             "Max. length of a node path", "Max. size of a node")

    def get(self, name: str) -> int:
        return getattr(self, name.replace("-", "_"))

    def set(self, name: str, value: int) -> None:
        setattr(self, name.replace("-", "_"), value)

    def copy(self) -> Quota:
        return Quota(**{f.name: getattr(self, f.name) for f in fields(self)})


def quota_exceeded(limit: int, value: int) -> bool:
    return limit != 0 and value >= limit


def valid_chars(path: str) -> bool:
    return _VALID_CHARS.fullmatch(path) is not None


def get_parent(name: str) -> str:
    """Parent of a node; "/" for top-level nodes and for special "@" nodes."""
    slash = name.rfind("/", 1)
    return name[:slash] if slash > 0 else "/"


def basename(name: str) -> str:
    return name[name.rfind("/") + 1:]


def child_name(parent: str, child: str) -> str:
    return f"/{child}" if parent == "/" else f"{parent}/{child}"


def domain_path(domid: int) -> str:
    return f"/local/domain/{domid}"


class Store:
    """The global table of nodes plus what xenstored keeps beside it: the
    generation counter and the number of nodes each domain owns."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.generation = 0
        self.owned: Counter[int] = Counter()
        self.dirty: set[str] = set()  # names changed since the last persist
        self.undo: dict[str, Node | None] = {}   # their nodes as last persisted (None: absent)

    def setup_structure(self) -> None:
        """The initial tree of xenstored's setup_structure()."""
        n0 = (Perm(XS_PERM_NONE, PRIV_DOMID),)
        self.put("/", Node(b"", n0, ["tool"], self.next_generation()))
        self.put("/tool", Node(b"", n0, ["xenstored"], self.next_generation()))
        self.put("/tool/xenstored", Node(b"", n0, [], self.next_generation()))
        self.put("@releaseDomain", Node(b"", n0 + (Perm(XS_PERM_READ, DOMID_ANY),), [], self.next_generation()))
        self.put("@introduceDomain", Node(b"", n0, [], self.next_generation()))

    def next_generation(self) -> int:
        self.generation += 1
        return self.generation

    def get(self, name: str) -> Node | None:
        return self.nodes.get(name)

    def put(self, name: str, node: Node) -> None:
        old = self.nodes.get(name)
        self.undo.setdefault(name, old)
        if old is None:
            self.owned[node.owner] += 1
        elif old.owner != node.owner:
            self.owned[old.owner] -= 1
            self.owned[node.owner] += 1
        self.nodes[name] = node
        self.dirty.add(name)

    def delete(self, name: str) -> None:
        old = self.nodes.pop(name, None)
        if old is not None:
            self.undo.setdefault(name, old)
            self.owned[old.owner] -= 1
            self.dirty.add(name)

    def commit(self) -> None:
        """The changes are persisted (or will never be): forget how to undo them."""
        self.dirty.clear()
        self.undo.clear()

    def rollback(self) -> None:
        """Put back the nodes as last persisted (nodes are replaced, never changed in place,
        so the old objects are the old state)."""
        undo, self.undo = self.undo, {}
        for name, node in undo.items():
            if node is None:
                self.delete(name)
            else:
                self.put(name, node)
        self.undo.clear()
        self.dirty.clear()

    def load(self, nodes: dict[str, Node], generation: int) -> None:
        self.nodes = nodes
        self.generation = max(generation, max((n.generation for n in nodes.values()), default=0))
        self.owned = Counter(n.owner for n in nodes.values())
        self.commit()
