"""Transactions and node access, as tools/xenstored/transaction.c does them.

A transaction is not a copy of the database. The first time a transaction
touches a node it records the node's generation (or its absence) and keeps a
private copy; later accesses see that copy. Commit fails with EAGAIN if any node
the transaction read has since changed in the global database (which also
covers nodes it wrote: a write always reads the node first). Watch events for
changes inside a transaction are queued and fire only on a successful commit.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .store import NO_GENERATION, Node, Perm, Store, XsErr, quota_exceeded
from .watch import Match


@dataclass
class Accessed:
    generation: int  # generation when first read; NO_GENERATION if it did not exist
    check_gen: bool  # was it read (so a concurrent change is a conflict)?
    node: Node | None  # the transaction's view; None once deleted
    orig_perms: tuple[Perm, ...] | None  # for watch permission checks at commit
    modified: bool = False
    fire_watch: bool = False
    watch_match: Match = Match.EXACT


@dataclass
class Transaction:
    id: int
    generation: int
    accessed: dict[str, Accessed] = field(default_factory=dict)
    fail: bool = False  # a failed change could not be undone: commit gives ENOMEM
    node_created: bool = False
    node_delta: Counter[int] = field(default_factory=Counter)  # owned-node changes


def _account(delta: Counter[int], old: Node | None, new: Node | None) -> None:
    if old is not None:
        delta[old.owner] -= 1
    if new is not None:
        delta[new.owner] += 1


class Access:
    """Reads and writes nodes for one request, either in the global database or
    in a transaction. Nodes returned by read() must not be mutated."""

    def __init__(self, store: Store, tx: Transaction | None, transnodes_limit: int = 0) -> None:
        self.store = store
        self.tx = tx
        self.transnodes_limit = transnodes_limit

    def _entry(self, name: str, reading: bool) -> Accessed:
        tx = self.tx
        assert tx is not None
        entry = tx.accessed.get(name)
        if entry is None:
            if quota_exceeded(self.transnodes_limit, len(tx.accessed) + 1):
                tx.fail = True
                raise XsErr("ENOSPC")
            current = self.store.get(name)
            entry = Accessed(
                generation=current.generation if current else NO_GENERATION,
                check_gen=reading,
                node=current.copy() if current else None,
                orig_perms=current.perms if current else None,
            )
            tx.accessed[name] = entry
        return entry

    def read(self, name: str) -> Node | None:
        if self.tx is None:
            return self.store.get(name)
        return self._entry(name, reading=True).node

    def count_owned(self, domid: int) -> int:
        extra = self.tx.node_delta[domid] if self.tx else 0
        return self.store.owned[domid] + extra

    def write(self, name: str, node: Node) -> None:
        node.generation = self.store.next_generation()
        if self.tx is None:
            self.store.put(name, node)
            return
        entry = self._entry(name, reading=False)
        _account(self.tx.node_delta, entry.node, node)
        entry.node = node
        entry.modified = True

    def delete(self, name: str) -> None:
        self.store.next_generation()
        if self.tx is None:
            self.store.delete(name)
            return
        entry = self._entry(name, reading=False)
        _account(self.tx.node_delta, entry.node, None)
        entry.node = None
        entry.modified = True

    def queue_watch(self, name: str, match: Match) -> None:
        """Remember an event for commit time; a subtree event replaces an exact one."""
        assert self.tx is not None
        entry = self.tx.accessed.get(name)
        if entry is None:
            self.tx.fail = True
            return
        if not entry.fire_watch:
            entry.fire_watch = True
            entry.watch_match = match
        elif match is Match.SUBTREE:
            entry.watch_match = Match.SUBTREE


def finalize(store: Store, tx: Transaction) -> list[tuple[str, Match, tuple[Perm, ...] | None]]:
    """Check for conflicts, then apply the transaction's changes to the global
    database. Returns the watch events to fire, in access order."""
    for name, entry in tx.accessed.items():
        if entry.check_gen:
            current = store.get(name)
            if (current.generation if current else NO_GENERATION) != entry.generation:
                raise XsErr("EAGAIN")
    events = []
    for name, entry in tx.accessed.items():
        if entry.modified:
            if entry.node is not None:
                node = entry.node.copy()
                node.generation = store.next_generation()
                store.put(name, node)
            else:
                store.delete(name)
        if entry.fire_watch:
            events.append((name, entry.watch_match, entry.orig_perms))
    return events
