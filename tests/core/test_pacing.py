"""Decode pacing (core/sched/pacing.py): the virtual step clock, the cap, the policy's use of it, and what it buys
on the simulator in the engine modes it is for."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.dispatch.pending import PendingSet
from blendserve.core.sched.pacing import SLACK, DecodePacer, Unpaced, ridge_lines
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.policy import AdmissionPolicy
from blendserve.core.sim.baselines import make_policy
from blendserve.core.sim.engine import EngineConfig, simulate
from blendserve.core.sim.request import SimRequest
from blendserve.core.sim.step_cost import Hardware
from blendserve.core.sim.workloads import TokenPool

PERF = PerfModel.preset()
RIDGE = ridge_lines(PERF)


def test_ridge_is_where_a_steps_compute_reaches_its_weight_read():
    assert RIDGE * PERF.comp_per_token == pytest.approx(PERF.weight_read_time)
    assert 200 < RIDGE < 300  # Llama-3.1-8B on an H100 by the perf model's efficiencies


def test_finishes_move_the_clock_to_start_plus_output():
    pacer = DecodePacer(ridge=10)
    pacer.admitted("a", 100)
    pacer.admitted("b", 50)
    pacer.finished("b", 40)
    assert pacer.clock == 40
    pacer.admitted("c", 10)  # starts at step 40
    pacer.finished("c", 5)
    assert pacer.clock == 45
    pacer.finished("a", 30)  # an earlier finish never moves the clock back
    assert pacer.clock == 45 and not pacer.spans


def test_without_a_long_generation_the_cap_is_far_above_the_ridge():
    pacer = DecodePacer(ridge=RIDGE)
    assert pacer.cap(pending_tokens=1_000_000, pending_longest=500) == pytest.approx(SLACK * 1_000_000 / 500)


def test_a_long_generation_in_flight_caps_the_others_at_the_ridge_until_its_end_nears():
    pacer = DecodePacer(ridge=RIDGE)
    pacer.admitted("long", 20_000)
    assert pacer.cap(pending_tokens=100_000, pending_longest=300) == RIDGE  # 1.2 * 120k / 20k = 7.2 lines
    pacer.admitted("short", 300)
    pacer.finished("short", 19_900)  # the clock says the long line has 100 steps left
    assert pacer.cap(pending_tokens=100_000, pending_longest=300) == pytest.approx(SLACK * 100_100 / 300)


def test_while_the_cap_binds_lines_start_in_waves_that_fill_a_prefill_step():
    pacer = DecodePacer(ridge=240)
    pacer.admitted("long", 20_000)
    for i in range(200):
        pacer.admitted(i, 100)
    # 40 slots free; lines of 20 new prompt tokens: a wave is 240 / 20 = 12 lines
    assert pacer.room(201, [], 10_000, 100, prompt_per_line=20) == 39
    for i in range(200, 230):
        pacer.admitted(i, 100)
    assert pacer.room(231, [], 10_000, 100, prompt_per_line=20) == 0  # 9 free: wait for a wave of 12
    assert pacer.room(231, [], 10_000, 100, prompt_per_line=2_000) == 9  # one line fills a step: no waiting
    assert pacer.room(0, [], 10_000, 100, prompt_per_line=1) >= 1  # nothing in flight: never waits
    # a wave never asks for more than half the cap: a line of 1 token would otherwise wait for 240 free slots
    assert pacer.room(119, [], 10_000, 100, prompt_per_line=1) == 121


def test_unknown_keys_are_ignored_and_idle_resets_the_sums():
    pacer = DecodePacer(ridge=5)
    pacer.finished("nope", 10)
    assert pacer.left("nope") is None and pacer.clock == 0
    pacer.admitted("a", 7.5)
    pacer.left("a")
    assert pacer.sum_ends == 0 and not pacer._latest
    assert pacer.cap(0, 0) == float("inf")  # nothing anywhere: no critical path to pace against


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("afl"), st.integers(0, 9), st.integers(1, 5000)), max_size=80))
def test_sums_clock_and_cap_stay_consistent(ops):
    pacer = DecodePacer(ridge=RIDGE)
    clock = 0.0
    for op, key, n in ops:
        if op == "a" and key not in pacer.spans:
            pacer.admitted(key, float(n))
        elif op == "f":
            pacer.finished(key, n)
        else:
            pacer.left(key)
        assert pacer.clock >= clock
        clock = pacer.clock
        assert pacer.sum_ends == pytest.approx(sum(end for _, end in pacer.spans.values()), abs=1e-6)
        assert pacer.cap(float(n), float(key)) >= RIDGE


def _policy(pace: bool, n_short: int = 2_000) -> AdmissionPolicy:
    policy = AdmissionPolicy(PERF, pace=pace, probe=0)
    policy.add("long", [1, 2, 3], 30_000, known_output=30_000)
    for i in range(n_short):
        policy.add(i, [9, i % 50, i], 200, known_output=200)
    return policy


def test_the_policy_holds_back_the_others_while_the_long_line_runs():
    paced, greedy = _policy(pace=True), _policy(pace=False)
    first = paced.next_batch(1e9, limit=10_000)
    assert first[0][0].key == "long"  # the critical path is never held back
    assert len(first) == int(RIDGE)
    assert len(greedy.next_batch(1e9, limit=10_000)) == 2_001
    assert paced.next_batch(1e9, limit=10_000) == []  # full: nothing more until lines finish
    for req, _ in first[1:41]:
        paced.observe(req.key, 200)
        paced.done(req.key)
    # lines of ~2 new prompt tokens: a wave that fills a prefill step is half the cap (121), 40 free wait for it
    assert paced.next_batch(1e9, limit=10_000) == []
    for req, _ in first[41:131]:
        paced.observe(req.key, 200)
        paced.done(req.key)
    assert len(paced.next_batch(1e9, limit=10_000)) == 130
    paced.check_integrity()


def test_with_nothing_in_flight_at_least_one_line_comes_back():
    pacer = DecodePacer(ridge=0.0)  # no pending output tokens: a cap of 0 lines
    assert pacer.cap(0.0, 10.0) == 0.0
    assert pacer.room(0, [], 0.0, 10.0, 1.0) == 1  # nothing in flight: one line all the same
    pacer.admitted("a", 10.0)
    assert pacer.room(1, [], 0.0, 10.0, 1.0) == 0


def _long_and_short(n_short: int) -> list[SimRequest]:
    reqs = [SimRequest(0, ((1, 200),), 12_000, 16_000, "longgen")]
    reqs += [SimRequest(i, ((2, 500), (10 + i, 300)), 400, 1000, "chat") for i in range(1, n_short + 1)]
    return reqs


@pytest.mark.parametrize("mode, faster", [("sglang", True), ("sglang-mixed", True), ("overlapped", False)])
def test_pacing_spreads_work_over_the_critical_path_in_sequential_modes(mode, faster):
    """One 12k-token generation beside 3k chat lines: greedy admission decodes the chat lines in wide,
    compute-bound batches, then the long line alone; paced, they ride its weight-bound steps. In overlapped mode
    make_policy leaves pacing off (a wide batch's compute hides under memory time there)."""
    hw, reqs = Hardware.from_perf(PERF), _long_and_short(3_000)
    cfg = EngineConfig(kv_capacity=PERF.kv_capacity_tokens, mode=mode)
    times = {}
    for pace in (True, False):
        policy = make_policy("blendserve-oracle", PERF, TokenPool(size=1 << 16), cfg.kv_capacity, 0, mode, pace=pace)
        times[pace] = simulate(policy, hw, cfg, reqs).time_s
    if faster:
        assert times[True] < 0.97 * times[False]
    default = make_policy("blendserve-oracle", PERF, TokenPool(size=1 << 16), cfg.kv_capacity, 0, mode)
    assert isinstance(default.policy.pacer, Unpaced) != faster


def test_the_pending_set_reports_the_cap_the_dispatcher_paces_at():
    pending = PendingSet(PERF)
    assert pending.pacing_cap() == float("inf")
    policy = pending.policy
    policy.add("long", array("i", [1, 2]), 30_000, known_output=30_000)
    policy.add("short", array("i", [3, 4]), 100, known_output=100)
    assert pending.pacing_cap() == RIDGE  # 1.2 x 30,100 tokens / 30,000 steps is below the ridge
    assert PendingSet(PERF, pace=False).pacing_cap() == float("inf")
    pending.set_lanes(["w0", "w1"])  # many workers: the lanes take the lines, unpaced, and the gauge says so
    assert pending.pacing_cap() == float("inf")
