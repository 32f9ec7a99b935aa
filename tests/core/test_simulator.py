from __future__ import annotations

import pytest

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sim import baselines as policies
from blendserve.core.sim.bench import t_opt
from blendserve.core.sim.engine import EngineConfig, ListPolicy, SimRequest, simulate, sum_of_max
from blendserve.core.sim.workloads import TRACES, TokenPool, measure, trace

PERF = PerfModel.preset()


@pytest.mark.parametrize(
    "c, b, m, s",
    [(5.0, 1.0, 1.0, 10), (1.0, 5.0, 1.0, 7), (3.0, 3.0, 0.0, 4), (10.0, 0.0, 0.5, 100), (2.0, 1.0, 3.0, 1)],
)
def test_sum_of_max_closed_form(c, b, m, s):
    assert sum_of_max(c, b, m, s) == pytest.approx(sum(max(c, b + m * t) for t in range(s)))


def _req(rid, segs, out, max_tokens=None):
    return SimRequest(rid, tuple(segs), out, max_tokens or out)


def test_single_request_time_is_the_roofline_sum():
    cfg = EngineConfig(kv_capacity=100_000, chunk=1000)
    res = simulate(ListPolicy([_req(0, [(1, 100)], 10)]), PERF, cfg, 1)
    assert res.prompt_tokens == 100 and res.output_tokens == 10 and res.cached_tokens == 0
    assert res.time_s > 0 and res.steps == 11


def test_prefix_cache_hits_and_lru_eviction():
    shared = (7, 500)
    reqs = [_req(i, [shared, (100 + i, 10)], 5) for i in range(4)]
    res = simulate(ListPolicy(reqs), PERF, EngineConfig(kv_capacity=100_000), 4)
    assert res.cached_tokens >= 500  # later requests reuse the shared 500 tokens
    tiny = EngineConfig(kv_capacity=700, max_running=1)  # no room to keep anything: evictions
    res_tiny = simulate(ListPolicy(reqs + [_req(9, [(8, 600)], 5)] + reqs[:1]), PERF, tiny, 6)
    assert res_tiny.output_tokens == 25 + 5


def test_overflow_retracts_and_still_finishes():
    reqs = [_req(i, [(i, 50)], 400, max_tokens=10) for i in range(6)]  # reservations far below the truth
    res = simulate(ListPolicy(reqs), PERF, EngineConfig(kv_capacity=1500, reserve_ratio=0.1), 6)
    assert res.retractions > 0 and res.output_tokens == 6 * 400


def test_overlapped_is_never_slower_than_sequential():
    reqs = trace(3, 600, PERF, seed=1)
    seq = simulate(policies.fcfs(reqs), PERF, EngineConfig(kv_capacity=PERF.kv_capacity_tokens), len(reqs))
    ovl = simulate(
        policies.fcfs(reqs),
        PERF,
        EngineConfig(kv_capacity=PERF.kv_capacity_tokens, overlap=1.0, balanced_chunk=False),
        len(reqs),
    )
    assert ovl.time_s <= seq.time_s
    bound = sum(r.prompt_len + r.output_len for r in reqs) / t_opt(reqs, PERF)
    assert ovl.throughput <= bound * 1.0001  # nothing beats the bound


def test_dfs_shares_more_prefix_than_random():
    reqs = trace(1, 3000, PERF, seed=2)
    pool = TokenPool(size=1 << 16)
    cfg = EngineConfig(kv_capacity=60_000)  # small cache: order decides what is still cached
    dfs = simulate(policies.dfs(reqs, PERF, pool), PERF, cfg, len(reqs))
    rnd = simulate(policies.randomized(reqs, 0), PERF, cfg, len(reqs))
    assert dfs.cache_hit_ratio > rnd.cache_hit_ratio


def test_blend_policy_runs_everything_once():
    reqs = trace(4, 800, PERF, seed=3)
    policy = policies.BlendPolicy(reqs, PERF, TokenPool(size=1 << 16), kv_budget=PERF.kv_capacity_tokens)
    res = simulate(policy, PERF, EngineConfig(kv_capacity=PERF.kv_capacity_tokens), len(reqs))
    assert res.output_tokens == sum(r.output_len for r in reqs)
    assert len(policy.tree) == 0 and not policy.sent
    policy.tree.check_integrity()


@pytest.mark.parametrize("number", sorted(TRACES))
def test_traces_hit_their_targets(number):
    rho, sharing = TRACES[number]
    got_rho, got_sharing = measure(trace(number, 20_000, PERF, seed=0), PERF)
    assert got_rho == pytest.approx(rho, rel=0.1)
    assert got_sharing == pytest.approx(sharing, abs=0.03)


def test_traces_are_seeded():
    assert trace(2, 200, PERF, seed=5) == trace(2, 200, PERF, seed=5)
    assert trace(2, 200, PERF, seed=5) != trace(2, 200, PERF, seed=6)
