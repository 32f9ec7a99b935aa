"""Stratified sampling (BlendServe paper §5.4): a few requests of every shared-prefix group run first, so output
lengths are learned before the order matters. Pure. The single-worker policy probes each new job instead
(policy.py); many workers (core/dispatch/pending.py) and the first build's policy (sim `blendserve-v1`) sample."""

from __future__ import annotations

from collections.abc import Iterable

from blendserve.core.sched.ordering import footprint
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest


def sample_requests(
    tree: PrefixTree,
    fraction: float = 0.01,
    cap: int = 512,
    unobserved_only: bool = False,
    among: Iterable[TreeRequest] | None = None,
) -> list[TreeRequest]:
    """Paper §5.4: a small stratified sample to run first, so output lengths are learned for every shared-prefix
    group before the order matters. Groups are the nodes that hold requests' parents (requests with the same
    shared prefix); each gets max(1, fraction of its size) evenly spaced picks, at most `cap` in all, largest
    groups first. `among`: only these requests (those still in the tree) are grouped and picked, e.g. the lines
    that just arrived, instead of every request in the tree. The picks leave the tree."""
    groups: dict[int, list[TreeRequest]] = {}
    for req in tree.iter_subtree(tree.root) if among is None else (r for r in among if r.node is not None):
        anchor = req.node.parent if req.node is not None and req.node.parent is not None else req.node
        if unobserved_only and anchor is not None and anchor.obs_n > 0:
            continue  # this group's output lengths are known already
        groups.setdefault(id(anchor), []).append(req)
    picks: list[TreeRequest] = []
    for members in sorted(groups.values(), key=len, reverse=True):
        if len(members) < 2:
            continue  # a group of one teaches nothing about its siblings
        k = max(1, round(fraction * len(members)))
        step = len(members) / k
        picks.extend(members[int(i * step)] for i in range(k))
        if len(picks) >= cap:
            break
    picks = picks[:cap]
    for req in picks:
        req.footprint = footprint(req)
        tree.remove(req)
    return picks
