"""Stratified sampling (BlendServe paper §5.4): a few requests of every shared-prefix group run first, so output
lengths are learned before the order matters. Pure. The single-worker policy probes each new job instead
(probe_lines, policy.py); many workers (core/dispatch/pending.py) and the first build's policy (sim `blendserve-v1`)
sample."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def probe_lines(tree: PrefixTree, members: Mapping[TreeRequest, None], group: object, count: int) -> list[TreeRequest]:
    """A new job's first `count` lines to run ahead of the order (at least one when it has any), all from one
    subtree so its prefix is prefilled once for all of them: the subtree of its first pending line's parent
    (siblings share its prefix), or the line's own node's when that is the root (empty prompt) or a child of it.
    `members`: the job's pending lines in arrival order. They stay in the tree (the caller takes them out)."""
    if not members:
        return []
    node = next(iter(members)).node
    assert node is not None  # pending: in the tree
    anchor = node.parent if node.parent is not None and node.parent is not tree.root else node
    picked: list[TreeRequest] = []
    for req in tree.iter_subtree(anchor):
        if req.group == group:
            picked.append(req)
            if len(picked) >= count:
                break
    return picked
