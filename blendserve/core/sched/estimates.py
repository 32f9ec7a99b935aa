"""Output-length estimates for pending requests (BlendServe paper §4.3/§5.4). Pure.

A request's output length d is unknown until it finishes. The estimate, most specific evidence first:
  1. known: the caller knows it (the simulator's oracle ablation, or a replay that carries it);
  2. its batch job's observed lengths: one job is one task with one template, so its finished lines predict
     the rest far better than max_tokens (a few-shot job answers in 1-8 tokens under max_tokens 16; a chat
     job averages ~200 under max_tokens 4096). Its lines still running count too, as lower bounds
     (censored.py): short lines finish first, so finished lines alone underestimate a job while it runs;
  3. its subtree's observed lengths: own node, then the parent's subtree (siblings), never the whole tree;
  4. max_tokens.
Every estimate is capped at max_tokens. Besides the mean, the estimator keeps E[d^2] where it can (jobs),
because KV read time grows with d^2/2: mem(p, d) averaged over a job is p E[d] + E[d^2]/2, not p E[d] + E[d]^2/2.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from blendserve.core.sched.censored import JobLengths

if TYPE_CHECKING:  # the tree imports this module; only annotations point back
    from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest

MIN_SAMPLES = 1  # observations a subtree needs before its mean replaces max_tokens
MIN_JOB_SAMPLES = 1  # observations a job needs before its mean replaces the subtree / max_tokens
FALLBACK_LEVELS = 2  # own node, then the parent's subtree (siblings); never the whole tree


class OutputLengths:
    """The estimator a PrefixTree consults at insert and on re-estimation; learns from observe()."""

    def __init__(self, mem_per_token: float) -> None:
        self.mem_per_token = mem_per_token
        self.jobs: dict[object, JobLengths] = {}

    def job_stats(self, group: object) -> JobLengths | None:
        return self.jobs.get(group) if group is not None else None

    def _stats(self, group: object) -> JobLengths:
        stats = self.jobs.get(group)
        if stats is None:  # not setdefault(group, JobLengths()): that builds one per call, twice per admission
            stats = self.jobs[group] = JobLengths()
        return stats

    def admitted(self, group: object, key: object, round_: int) -> None:
        """A line of a job started in admission round `round_` (non-decreasing): while it runs, lines of its
        round or later that finish bound its length from below."""
        if group is not None:
            self._stats(group).admitted(key, round_)

    def dropped(self, group: object, key: object) -> None:
        """A started line ended without a length (failed, cancelled, requeued). No-op after observe_job."""
        stats = self.jobs.get(group) if group is not None else None
        if stats is not None:
            stats.dropped(key)

    def estimate(self, req: TreeRequest, node: Node, root: Node) -> None:
        """Set req.d_est and req.mem from the best evidence available (module docstring order)."""
        cap = float(req.max_tokens)
        group = req.group
        stats = self.jobs.get(group) if group is not None else None
        if req.known is not None:
            d = min(cap, float(req.known))
            d2 = d * d
        elif stats is not None and stats.n >= MIN_JOB_SAMPLES:  # the common case, inline: re-estimates run it 1M times
            d, d2 = stats.mean, stats.second_moment
        else:
            d, d2 = self._subtree_evidence(node, root, cap)
        d = cap if d > cap else 1.0 if d < 1.0 else d  # max(1, min(d, cap)); cap >= 1
        cap2, dd = cap * cap, d * d
        d2 = dd if d2 < dd else cap2 if d2 > cap2 else d2  # E[d^2] >= E[d]^2 always; capped like d
        req.d_est = d
        req.mem = (len(req.tokens) * d + d2 / 2.0) * self.mem_per_token  # = perf.mem(p, d) with E[d^2]

    def _subtree_evidence(self, node: Node, root: Node, cap: float) -> tuple[float, float]:
        if node is not root:  # own node, else the parent's subtree (FALLBACK_LEVELS = 2), never the root
            if node.obs_n >= MIN_SAMPLES:
                d = node.obs_sum / node.obs_n
                return d, d * d
            parent = node.parent
            if parent is not root and parent is not None and parent.obs_n >= MIN_SAMPLES:
                d = parent.obs_sum / parent.obs_n
                return d, d * d
        return cap, cap * cap

    def observe_job(self, group: object, output_tokens: int, key: object = None) -> bool:
        """Record one finished line of a job. True when the job's pending lines should be re-estimated (its
        count reached a power of two: the distribution is refreshed then, amortised O(n log^2 n) per job)."""
        if group is None:
            return False
        stats = self._stats(group)
        stats.finished(key, float(output_tokens))
        if stats.n & (stats.n - 1):
            return False
        stats.refresh()
        return True

    def observe_subtree(self, tree: PrefixTree, tokens: Sequence[int], output_tokens: int) -> list[Node]:
        """Record on the deepest node of the prompt's path and its parent; returns the nodes whose sample count
        reached a power of two (their pending requests should be re-estimated)."""
        probe: Node | None = tree.locate(tokens if isinstance(tokens, array) else array("i", tokens))
        refresh: list[Node] = []
        for _ in range(FALLBACK_LEVELS):
            if probe is None or probe is tree.root:
                break
            probe.obs_n += 1
            probe.obs_sum += output_tokens
            if probe.obs_n & (probe.obs_n - 1) == 0:
                refresh.append(probe)
            probe = probe.parent
        return refresh


def reestimate(tree: PrefixTree, requests: Iterable[TreeRequest]) -> None:
    """Re-run the estimate of pending requests and move the differences up their paths: each request's own node
    at once, then a level at a time with the deltas summed per node, so a node shared by many of them is updated
    once per level, not once per request (a job's million lines share a handful of ancestors)."""
    above: dict[Node, list[float]] = {}  # parent -> [d delta, mem delta], in first-seen order (deterministic sums)
    estimate, root = tree.lengths.estimate, tree.root
    for req in list(requests):
        node = req.node
        if node is None:
            continue
        old_d, old_mem = req.d_est, req.mem
        estimate(req, node, root)
        d, mem = req.d_est - old_d, req.mem - old_mem
        if d or mem:
            _add_and_pass_up(node, d, mem, above)
    while above:
        level, above = above, {}
        for node, (d, mem) in level.items():
            _add_and_pass_up(node, d, mem, above)


def _add_and_pass_up(node: Node, d: float, mem: float, above: dict[Node, list[float]]) -> None:
    """Add the deltas to `node` and to its parent's entry in `above` (the next level up)."""
    node.d_sum += d
    node.mem += mem
    parent = node.parent
    if parent is not None:
        delta = above.get(parent)
        if delta is None:
            above[parent] = [d, mem]
        else:
            delta[0] += d
            delta[1] += mem
