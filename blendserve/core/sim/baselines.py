"""Orderings fed to the simulator: FCFS (file order), DFS (longest-prefix-match), random, BlendServe. Pure."""

from __future__ import annotations

import random
from collections import deque

from blendserve.core.sched.ordering import dfs_order
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sched.scanner import LEFT, RIGHT, DualScanner, sample_requests
from blendserve.core.sim.engine import Engine, ListPolicy, SimRequest
from blendserve.core.sim.workloads import TokenPool


def build_tree(requests: list[SimRequest], perf: PerfModel, pool: TokenPool) -> PrefixTree:
    tree = PrefixTree(perf)
    for req in requests:
        tree.insert(TreeRequest(req.rid, pool.tokens(req), req.max_tokens, payload=req))
    return tree


def fcfs(requests: list[SimRequest]) -> ListPolicy:
    return ListPolicy(list(requests))


def randomized(requests: list[SimRequest], seed: int = 0) -> ListPolicy:
    order = list(requests)
    random.Random(seed).shuffle(order)
    return ListPolicy(order)


def dfs(requests: list[SimRequest], perf: PerfModel, pool: TokenPool) -> ListPolicy:
    return ListPolicy([r.payload for r in dfs_order(build_tree(requests, perf, pool))])


class BlendPolicy:
    """The dual scanner over the global tree. A 1% stratified sample runs first; output lengths of finished
    requests refine the estimates of their subtrees, and the order is laid out again when all samples are back
    and whenever the observations have grown by `rebuild_growth` (paper §5.4: learn d from what ran)."""

    def __init__(
        self,
        requests: list[SimRequest],
        perf: PerfModel,
        pool: TokenPool,
        kv_budget: float,
        refill: int = 64,
        sample_fraction: float = 0.01,
        rebuild_growth: float = 2.0,
        blend: str = "rate",
    ) -> None:
        self.pool = pool
        self.tree = build_tree(requests, perf, pool)
        self.scanner = DualScanner(self.tree, blend=blend)
        self.kv_budget = kv_budget
        self.refill = refill
        self.queue: deque[tuple[TreeRequest, str]] = deque()
        self.inflight = {LEFT: 0.0, RIGHT: 0.0}
        self.sent: dict[int, tuple[float, str, TreeRequest]] = {}
        self.observed = 0
        self.next_rebuild = 16
        self.rebuild_growth = rebuild_growth  # re-lay the order each time observations grow by this factor
        samples = sample_requests(self.tree, sample_fraction) if sample_fraction > 0 else []
        self.samples = len(samples)
        for req in samples:
            self.inflight[LEFT] += req.footprint
            self.sent[req.key] = (req.footprint, LEFT, req)
        self.queue.extend((req, LEFT) for req in samples)

    def peek(self, engine: Engine) -> SimRequest | None:
        if not self.queue:
            picked = self.scanner.next_requests(
                self.kv_budget, self.inflight[LEFT], self.inflight[RIGHT], limit=self.refill
            )
            for req, side in picked:
                self.inflight[side] += req.footprint
                self.sent[req.key] = (req.footprint, side, req)
            self.queue.extend(picked)
        return self.queue[0][0].payload if self.queue else None

    def pop(self) -> SimRequest:
        return self.queue.popleft()[0].payload

    def requeue(self, req: SimRequest) -> None:
        cost, side, treq = self.sent[req.rid]
        self.queue.appendleft((treq, side))

    def on_finish(self, req: SimRequest, engine: Engine) -> None:
        cost, side, treq = self.sent.pop(req.rid)
        self.inflight[side] -= cost
        self.scanner.done(treq)
        self.tree.observe(treq.tokens, req.output_len)
        self.observed += 1
        if self.observed >= self.next_rebuild or self.observed == self.samples:
            self.next_rebuild = max(16, int(self.observed * self.rebuild_growth))
            self.scanner.invalidate()
