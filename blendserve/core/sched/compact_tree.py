"""The pending tree, holding each prompt token once: a waiting request keeps no token array of its own.

In a radix tree the path from the root to a request's node IS its prompt, so while a request waits its tokens
live only in the tree's edges (a shared prefix once, a unique tail once, int32). A request gets its array back
when it leaves the tree (dispatched, cancelled, sampled): then the runtime and the learner read it. This keeps
a million pending requests at about 4 bytes per unique prompt token (the shared part counted once), instead of
4 bytes per token per request (bench/scale_bench.py)."""

from __future__ import annotations

from array import array

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest


class PromptLength:
    """Stands in for a waiting request's token array: the tree only asks for its length."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def path_tokens(node: Node) -> array:
    """The tokens from the root to the end of node's edge."""
    parts: list[array] = []
    probe: Node | None = node
    while probe is not None and probe.parent is not None:
        parts.append(probe.edge())
        probe = probe.parent
    out = array("i")
    for part in parts[::-1]:
        out.extend(part)
    return out


class CompactTree(PrefixTree):
    def __init__(self, perf: PerfModel) -> None:
        super().__init__(perf)
        self._lengths: dict[int, PromptLength] = {}  # one stand-in per distinct length, shared

    def insert(self, req: TreeRequest) -> None:
        super().insert(req)
        node = req.node
        assert node is not None
        if node.key is None and node.off == 0:
            node.key, node.src = node.src, None  # the leaf's edge is the whole array: keep it, no copy
        else:
            node.edge()  # a new leaf's edge is a slice of the request's array: copy the tail, the array can go
        n = len(req.tokens)
        req.tokens = self._lengths.get(n) or self._lengths.setdefault(n, PromptLength(n))  # type: ignore[assignment]

    def remove(self, req: TreeRequest) -> None:
        self.restore(req)
        super().remove(req)

    @staticmethod
    def restore(req: TreeRequest) -> None:
        """Give a waiting request its token array back (before it leaves the tree)."""
        if isinstance(req.tokens, PromptLength) and req.node is not None:
            req.tokens = path_tokens(req.node)
