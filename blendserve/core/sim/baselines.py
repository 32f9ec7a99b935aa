"""The orders compared on the same simulator, requests and seeds (pure).

  fcfs               submission order: job after job, lines in file order (vLLM run-batch, LiteLLM, a hosted queue)
  dfs                client-sorted longest-prefix-first: the lines sorted by prompt, so shared prefixes are
                     adjacent (SGLang's own LPM falls back to FCFS above 128 queued requests: this is what a client
                     that sorts its file gets)
  shuffled           a random order of what has arrived
  blendserve         the admission policy (core/sched/policy.py) with learned output lengths
  blendserve-oracle  the same policy told the true output lengths (what the estimator costs)
  blendserve-<blend>, blendserve-oracle-<blend>
                     the same policies with another blend (scanner.BLENDS: cumulative, rate, kv)
  blendserve-v1      the first build's scheduler, for reference: `rate` blend, subtree-only estimates, a 1%
                     stratified sample of every shared-prefix group run up front
(the blend variants and blendserve-v1 are for comparison: `--policies` names them.)
Requests that arrive later are ordered the same way among themselves and queue behind what is waiting
(dfs re-sorts the whole waiting queue; blendserve inserts them into its tree).
"""

from __future__ import annotations

import random
from collections import deque

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.policy import AdmissionPolicy
from blendserve.core.sched.prefix_tree import TreeRequest
from blendserve.core.sched.sampling import sample_requests
from blendserve.core.sched.scanner import BLENDS, LEFT, Side
from blendserve.core.sim.engine import Engine
from blendserve.core.sim.request import ListPolicy, SimRequest
from blendserve.core.sim.workloads import TokenPool

BLEND_VARIANTS = tuple(f"blendserve{o}-{b}" for b in BLENDS for o in ("", "-oracle"))
POLICIES = ("fcfs", "dfs", "shuffled", "blendserve", "blendserve-oracle", *BLEND_VARIANTS, "blendserve-v1")
SIMPLE = ("fcfs", "dfs", "shuffled")


class Shuffled(ListPolicy):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    def arrange(self, arrived: list[SimRequest]) -> None:
        self.rng.shuffle(arrived)
        self.queue.extend(arrived)


class ClientSortedDfs(ListPolicy):
    def arrange(self, arrived: list[SimRequest]) -> None:
        waiting = list(self.queue) + arrived
        waiting.sort(key=lambda r: tuple(seg_id for seg_id, _ in r.segments))  # lexicographic = depth-first
        self.queue = deque(waiting)


class BlendServe:
    """The admission policy driven by the simulator: asked for `refill` requests at a time, told every finish.
    Retractions stay on this side (the runtime retracts and re-runs them; the policy still counts them in
    flight), as SGLang does internally."""

    def __init__(
        self, perf: PerfModel, pool: TokenPool, kv_budget: float, oracle: bool = False, refill: int = 64, **kwargs
    ) -> None:
        self.policy = AdmissionPolicy(perf, **kwargs)
        self.pool, self.kv_budget, self.oracle, self.refill = pool, kv_budget, oracle, refill
        self.queue: deque[tuple[TreeRequest, Side]] = deque()
        self.retracted: deque[SimRequest] = deque()

    def add(self, req: SimRequest) -> None:
        known = req.output_len if self.oracle else None
        self.policy.add(req.rid, self.pool.tokens(req), req.max_tokens, group=req.job, payload=req, known_output=known)

    def peek(self, engine: Engine) -> SimRequest | None:
        if self.retracted:
            return self.retracted[0]
        if not self.queue:
            self.queue.extend(self.policy.next_batch(self.kv_budget, limit=self.refill))
        return self.queue[0][0].payload if self.queue else None  # type: ignore[return-value]

    def pop(self) -> SimRequest:
        if self.retracted:
            return self.retracted.popleft()
        return self.queue.popleft()[0].payload  # type: ignore[return-value]

    def requeue(self, req: SimRequest) -> None:
        self.retracted.appendleft(req)

    def on_finish(self, req: SimRequest, engine: Engine) -> None:
        self.policy.observe(req.rid, req.output_len)
        self.policy.done(req.rid)


class BlendServeV1(BlendServe):
    """The first build's policy (see the module docstring): what the estimator and blend replaced."""

    def __init__(self, perf: PerfModel, pool: TokenPool, kv_budget: float, refill: int = 64) -> None:
        super().__init__(perf, pool, kv_budget, refill=refill, blend="rate", probe=0, pace=False)
        self.sampled = False

    def add(self, req: SimRequest) -> None:
        self.policy.add(req.rid, self.pool.tokens(req), req.max_tokens, payload=req)  # no job: subtree learning only

    def peek(self, engine: Engine) -> SimRequest | None:
        if not self.sampled:  # the stratified sample runs first, ahead of the scanner
            self.sampled = True
            policy = self.policy
            for req in sample_requests(policy.tree, 0.01):
                policy._forget_pending(req)
                policy.inflight[req.key] = (req, LEFT)
                policy.inflight_kv[LEFT] += req.footprint
                self.queue.append((req, LEFT))
        return super().peek(engine)


def make_policy(
    name: str, perf: PerfModel, pool: TokenPool, kv_budget: float, seed: int, mode: str = "sglang", **kwargs
):
    """A fresh policy by name (POLICIES). BlendServe's own paces decode (pacing.py) for the engine modes that run a
    step's operators in sequence, and not for `overlapped`, whose steps hide a wide batch's compute."""
    kwargs.setdefault("pace", mode != "overlapped")
    if name == "fcfs":
        return ListPolicy()
    if name == "shuffled":
        return Shuffled(seed)
    if name == "dfs":
        return ClientSortedDfs()
    if name in ("blendserve", "blendserve-oracle"):
        return BlendServe(perf, pool, kv_budget, oracle=name == "blendserve-oracle", **kwargs)
    if name in BLEND_VARIANTS:
        blend = name.rsplit("-", 1)[1]
        return BlendServe(perf, pool, kv_budget, oracle="-oracle-" in name, blend=blend, **kwargs)
    if name == "blendserve-v1":
        return BlendServeV1(perf, pool, kv_budget)  # the first build's: no pacing
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
