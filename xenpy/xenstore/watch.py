"""Watches: which changes reach which watch (tools/xenstored/watch.c)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Match(Enum):
    EXACT = 1  # only a watch on exactly this path (nodes removed below an rm'ed node)
    SUBTREE = 2  # watches on this path or any parent of it (a write, the rm'ed node)
    DEPTH = 3  # special events with a domid: "@releaseDomain/5"
    NODEPTH = 4  # special events without a domid: "@releaseDomain"


@dataclass
class Watch:
    node: str  # canonical (absolute or "@...") path
    token: str
    depth: int = -1  # -1: no depth limit
    prefix_len: int = 0  # strip this from event paths of a watch set with a relative path

    def event_path(self, name: str) -> str:
        return name[self.prefix_len:]

    def matches(self, name: str, match: Match) -> bool:
        if match is Match.EXACT:
            return name == self.node
        if match is Match.SUBTREE:
            return is_child(name, self.node, self.depth)
        if match is Match.DEPTH:
            return name == self.node or (self.depth > 0 and is_child(name, self.node, self.depth))
        return name == self.node and self.depth < 0


def is_child(child: str, parent: str, depth: int = -1) -> bool:
    """Is `child` `parent` or below it, at most `depth` levels down (-1: any)?"""
    plen = len(parent)
    if not child.startswith(parent):
        return False
    rest = child[plen:]
    if plen > 1 and rest and rest[0] != "/":
        return False
    if depth < 0 or not rest:
        return True
    # "/" is one level above "/a"; "/a" is one level above "/a/b".
    levels = rest.count("/") + (1 if plen == 1 else 0)
    return levels <= depth
