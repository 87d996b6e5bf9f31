"""Keeping the store across restarts of xenstored within a running board.

State is a snapshot file plus a journal beside it ("<state>.journal"). Every
acknowledged change is first appended to the journal as the full new state of
each changed node (or its removal), with a sequence number. When the journal
grows, a new snapshot (carrying the last sequence number it includes) is
written to a temporary file and renamed over the old one, and only then is the
journal emptied; records a stale journal still holds are skipped by their
sequence number. So a xenstored that dies at any point loses nothing that was
acknowledged: the bytes are in the kernel's page cache once write() returns. A
torn last journal line (a death mid-append) was never acknowledged and is
dropped.

Nothing is fsync'ed: the store describes running domains, which do not survive
the host, so making it survive a host crash would only cost every write a disk
flush (Xen's xenstored keeps its store in memory for the same reason).
"""
from __future__ import annotations

import base64
import errno
import json
import os
from binascii import b2a_base64
from collections.abc import Callable
from pathlib import Path

from .store import Node, Store, child_name, parse_perm

# When the journal is compacted into a new snapshot: once it holds this many records, or once
# it is larger than both this many bytes and the last snapshot (so that a big store is not
# rewritten every few thousand writes: the cost of a snapshot is spread over at least as many
# bytes of records as it has, and a restart replays at most about a snapshot's worth).
_COMPACT_RECORDS = 20000
_COMPACT_BYTES = 1 << 20

# The JSON text of a permission list, by the list's identity: nodes share their perms tuples
# (a new node takes its parent's), so a handful of entries serve every write.
_perms_text: dict[int, tuple[tuple, str, bool]] = {}


def _plain(text: str) -> bool:
    """Nothing in `text` that JSON would escape."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _value_text(value: bytes) -> tuple[str, str]:
    """How a node's value is kept: as "t" (the text itself) when JSON can carry the bytes as
    they are (printable ASCII without quotes or backslashes: nearly every XenStore value),
    else as "v" (base64)."""
    if value.isascii():
        text = value.decode("ascii")
        if _plain(text):
            return "t", text
    return "v", b2a_base64(value, newline=False).decode("ascii")


def _node_record(node: Node) -> dict[str, object]:
    key, text = _value_text(node.value)
    return {key: text, "p": [str(p) for p in node.perms], "c": node.children,
            "g": node.generation}


def _record_line(seq: int, generation: int, changed: dict[str, Node], removed: list[str]) -> str:
    """The journal record of one change as JSON text. Node names, children and permission
    strings are XenStore path characters, which JSON leaves alone, so the text is built
    directly (the hot path of every write); anything else goes through json.dumps."""
    items, raw, plain = [], list(removed), True
    for name, node in changed.items():
        perms = node.perms
        cached = _perms_text.get(id(perms))
        if cached is None or cached[0] is not perms:
            if len(_perms_text) > 4096:
                _perms_text.clear()
            texts = [str(p) for p in perms]
            cached = _perms_text[id(perms)] = (perms, '","'.join(texts), _plain("".join(texts)))
        plain = plain and cached[2]
        raw.append(name)
        children = node.children
        if children:
            raw.extend(children)
            kids = '"' + '","'.join(children) + '"'
        else:
            kids = ""
        key, text = _value_text(node.value)
        items.append(f'"{name}":{{"{key}":"{text}","p":["{cached[1]}"],"c":[{kids}],'
                     f'"g":{node.generation}}}')
    if not (plain and _plain("".join(raw))):
        return json.dumps({"seq": seq, "g": generation,
                           "set": {n: _node_record(node) for n, node in changed.items()},
                           "del": removed}, separators=(",", ":"))
    gone = '"' + '","'.join(removed) + '"' if removed else ""
    return f'{{"seq":{seq},"g":{generation},"set":{{{",".join(items)}}},"del":[{gone}]}}'


def _node_from(rec: dict) -> Node:
    perms = tuple(parse_perm(p) for p in rec["p"])
    if not perms:
        raise ValueError("node without permissions")
    children = rec["c"]
    if not isinstance(children, list) or not all(isinstance(c, str) for c in children):
        raise ValueError("bad children list")
    text = rec.get("t")
    if isinstance(text, str):
        value = text.encode("ascii")
    else:
        value = base64.b64decode(rec["v"], validate=True)
    return Node(value, perms, list(children), int(rec["g"]))


class Persist:
    # Where a store that had to survive the host would flush each write (see above: this one
    # does not, so it is a no-op); a test makes it fail as a full disk would.
    fsync: Callable[[int], None] = staticmethod(lambda fd: None)

    def __init__(self, path: Path, log: Callable[[str], None]) -> None:
        self.path = path
        self.journal_path = path.with_name(path.name + ".journal")
        self.log = log
        self._journal = None
        self._records = 0
        self._journal_bytes = 0
        self._compact_bytes = _COMPACT_BYTES
        self._seq = 0  # sequence number of the last change written

    # -- loading -------------------------------------------------------------------
    def load(self) -> tuple[dict[str, Node], int] | None:
        """The saved nodes and generation counter, or None when there is no usable state."""
        nodes: dict[str, Node] = {}
        generation = 0
        try:
            if self.path.exists():
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if data.get("version") != 1:
                    raise ValueError(f"unknown version {data.get('version')!r}")
                generation = int(data["generation"])
                self._seq = int(data.get("seq", 0))
                nodes = {name: _node_from(rec) for name, rec in data["nodes"].items()}
            generation = self._replay(nodes, generation)
            if not nodes:
                return None
            self._check(nodes)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._quarantine(f"{exc}")
            return None
        return nodes, generation

    def _replay(self, nodes: dict[str, Node], generation: int) -> int:
        if not self.journal_path.exists():
            return generation
        raw = self.journal_path.read_bytes()
        lines = raw.split(b"\n")
        complete = lines[:-1]  # the part after the last newline is a torn append
        for i, line in enumerate(complete):
            try:
                rec = json.loads(line)
                seq = int(rec["seq"])
                changes = {name: _node_from(r) for name, r in rec["set"].items()}
                removed = list(rec["del"])
                rec_generation = int(rec["g"])
            except (ValueError, KeyError, TypeError) as exc:
                if i == len(complete) - 1:
                    break  # last record torn without its newline being lost: unacknowledged
                raise ValueError(f"journal record {i + 1} is corrupt: {exc}") from exc
            if seq <= self._seq:
                continue  # already in the snapshot (the journal was not emptied in time)
            self._seq = seq
            generation = max(generation, rec_generation)
            nodes.update(changes)
            for name in removed:
                nodes.pop(name, None)
        return generation

    @staticmethod
    def _check(nodes: dict[str, Node]) -> None:
        if "/" not in nodes:
            raise ValueError("no root node")
        for name, node in nodes.items():
            for c in node.children:
                if child_name(name, c) not in nodes:
                    raise ValueError(f"{name} lists missing child {c}")

    def _quarantine(self, why: str) -> None:
        for p in (self.path, self.journal_path):
            if p.exists():
                aside = p.with_name(p.name + ".corrupt")
                try:
                    os.replace(p, aside)
                except OSError:
                    pass
        self.log(f"xenstored: state in {self.path} is unusable ({why}); kept as *.corrupt, starting with a new store")

    # -- saving --------------------------------------------------------------------
    def snapshot(self, store: Store) -> None:
        """Write the whole store atomically, then start an empty journal."""
        fsync = self.fsync
        data = {"version": 1, "generation": store.generation, "seq": self._seq,
                "nodes": {name: _node_record(node) for name, node in store.nodes.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
                size = f.tell()
                f.flush()
                fsync(f.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)     # a partial copy would only hold on to the space
            raise
        os.replace(tmp, self.path)
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        # All of the journal is in the snapshot: a new, empty one. Removed and created rather
        # than truncated, which on ext4 would make the kernel allocate the old records' blocks
        # first (its auto_da_alloc), a few milliseconds for nothing. Unbuffered: each record
        # reaches the kernel in the write() that acknowledges it.
        self.journal_path.unlink(missing_ok=True)
        self._journal = open(self.journal_path, "wb", buffering=0)
        self._records = 0
        self._journal_bytes = 0
        self._compact_bytes = max(_COMPACT_BYTES, size)
        store.commit()

    def save(self, store: Store) -> None:
        """Make the changes since the last save durable. Raises OSError when they could not
        be (a full disk): the caller decides whether to undo them or keep them in memory."""
        if not store.dirty:
            return
        try:
            self._seq += 1
            if self._journal is None or self._records >= _COMPACT_RECORDS or \
                    self._journal_bytes >= self._compact_bytes:
                self.snapshot(store)
                return
            nodes, dirty = store.nodes, store.dirty
            if len(dirty) == 1:                 # the common case: one node written
                name = next(iter(dirty))
                node = nodes.get(name)
                changed, removed = ({name: node}, []) if node is not None else ({}, [name])
            else:
                changed = {n: nodes[n] for n in dirty if n in nodes}
                removed = [n for n in dirty if n not in nodes]
            record = (_record_line(self._seq, store.generation, changed, removed)
                      + "\n").encode("utf-8")
            if self._journal.write(record) != len(record):   # a disk that filled up mid-record
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._journal_bytes += len(record)
            self.fsync(self._journal.fileno())
            self._records += 1
            store.commit()
        except OSError:
            # The next save is a fresh snapshot: the journal may now end in a torn record.
            self._records = _COMPACT_RECORDS
            self._seq -= 1
            raise

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
