"""Token-edge matching for the radix tree (pure): how far a prompt agrees with a node's edge."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blendserve.core.sched.prefix_tree import Node


def match_len(edge: array, off: int, width: int, tokens: array, start: int) -> int:
    """Length of the common prefix of edge[off:off+width] and tokens[start:]. A few tokens one by one first
    (a diverging suffix usually differs at once), then whole-slice compares (C speed) and bisection."""
    n = min(width, len(tokens) - start)
    i = 0
    while i < n and i < 8:
        if edge[off + i] != tokens[start + i]:
            return i
        i += 1
    if i == n or edge[off + i : off + n] == tokens[start + i : start + n]:
        return n
    lo, hi = i, n - 1  # edge and tokens agree on [0, lo) and differ somewhere in [lo, n)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if edge[off + lo : off + mid] == tokens[start + lo : start + mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def edge_of(node: Node) -> tuple[array, int, int]:
    """(array, offset, length) of a node's edge, without copying a lazy leaf's tail."""
    if node.key is not None:
        return node.key, 0, len(node.key)
    return node.src, node.off, len(node.src) - node.off  # type: ignore[return-value,arg-type]
