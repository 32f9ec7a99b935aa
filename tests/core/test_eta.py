"""The schedule forecast (core/sched/eta.py) and the throughput meter that calibrates it."""

from __future__ import annotations

import random

import pytest

from blendserve.core.dispatch.stats import LineEvent
from blendserve.core.dispatch.throughput import MIN_CALIBRATION_LINES, ThroughputMeter
from blendserve.core.sched import eta as ec
from blendserve.core.sched.eta import Running, forecast, shared_prefix
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sched.scanner import DualScanner

BIG_KV = 1e12


def _tree(groups: dict[str, list[tuple[list[int], int]]]) -> tuple[PrefixTree, dict[int, str]]:
    tree, owner, key = PrefixTree(PerfModel.preset()), {}, 0
    for name, reqs in groups.items():
        for tokens, max_tokens in reqs:
            tree.insert(TreeRequest(key, tokens, max_tokens))
            owner[key] = name
            key += 1
    return tree, owner


def _order(tree: PrefixTree) -> list[TreeRequest]:
    return DualScanner(tree).pending_order()


def test_one_at_a_time_drains_in_the_sum_of_the_work():
    tree, owner = _tree({"a": [([1, 2, 3, i], 50) for i in range(10)], "b": [([9, i] * 100, 5) for i in range(5)]})
    order = _order(tree)
    f = forecast(tree, order, lambda r: owner[r.key], window=1, kv_capacity=BIG_KV, latency_ratio=2.0)
    assert f.lines == 15 and f.groups["a"].lines == 10 and f.groups["b"].lines == 5
    assert f.drain_s == pytest.approx(2.0 * f.work_s)  # serial: each request waits for the one before
    assert f.sides["L"] + f.sides["R"] == 15
    first = min(f.groups.values(), key=lambda g: g.first_position)
    assert first.first_start_s == 0.0 and first.first_position == 0


def test_a_wider_window_finishes_sooner_and_running_work_delays_the_queue():
    tree, owner = _tree({"a": [([1, i, 7] * 30, 100) for i in range(40)]})
    order = _order(tree)
    serial = forecast(tree, order, lambda r: "a", 1, BIG_KV, 1.0)
    wide = forecast(tree, order, lambda r: "a", 8, BIG_KV, 1.0)
    assert wide.drain_s < serial.drain_s / 4
    busy = forecast(tree, order, lambda r: "a", 1, BIG_KV, 1.0, running=[Running(5.0, 0.0, 0.0, 0.0)])
    assert busy.groups["a"].first_start_s == pytest.approx(5.0)
    assert busy.drain_s == pytest.approx(serial.drain_s + 5.0)


def test_kv_budget_limits_concurrency():
    tree, owner = _tree({"a": [([5, i] * 200, 100) for i in range(20)]})
    order = _order(tree)
    roomy = forecast(tree, order, lambda r: "a", 64, BIG_KV, 1.0)
    tight = forecast(tree, order, lambda r: "a", 64, 500.0, 1.0)  # about one request's footprint at a time
    assert tight.drain_s > 5 * roomy.drain_s


def test_cached_share_counts_shared_prefixes_once_per_group():
    system = list(range(1000, 1400))
    tree, owner = _tree(
        {"shared": [(system + [i], 10) for i in range(10)], "unique": [([i] * 400 + [7], 10) for i in range(1, 11)]}
    )
    f = forecast(tree, _order(tree), lambda r: owner[r.key], 4, BIG_KV, 1.0)
    shared, unique = f.groups["shared"], f.groups["unique"]
    # 10 requests share a 400-token prefix: all but the first hit it
    assert shared.cached_tokens == pytest.approx(400 * 9, rel=0.01)
    assert unique.cached_tokens < shared.cached_tokens / 10
    req = next(r for r in _order(tree) if owner[r.key] == "shared")
    assert shared_prefix(req)[:2] == (400, 10)


def test_meter_calibrates_from_results_and_restarts_after_idle():
    now = [1000.0]
    meter = ThroughputMeter(clock=lambda: now[0])
    assert meter.calibration().work_rate is None and meter.calibration().latency_ratio is None
    for _ in range(MIN_CALIBRATION_LINES + 2):  # one result a second, each 0.5 model-s of work taking 2 s
        now[0] += 1.0
        meter.record(LineEvent("succeeded", seconds=2.0, work_s=0.5, prompt_tokens=10, completion_tokens=3))
    cal = meter.calibration()
    assert cal.work_rate == pytest.approx(0.5) and cal.latency_ratio == pytest.approx(4.0)
    meter.record(LineEvent("retried", seconds=9.0, work_s=0.0))  # failures do not count
    assert meter.calibration().lines == MIN_CALIBRATION_LINES + 2
    now[0] += 600.0  # idle: the window starts again instead of averaging the pause in
    meter.record(LineEvent("succeeded", seconds=2.0, work_s=0.5))
    assert meter.calibration().work_rate is None
    series = meter.series()
    assert series[-1]["t"] <= now[0] and any(p["lines_per_s"] > 0 for p in series)


def _workload(lines: int, seed: int = 7) -> tuple[PrefixTree, dict[int, str]]:
    """Batches of different shapes: shared system prompts or none, short and long prompts and outputs."""
    rng = random.Random(seed)
    shapes = [  # (name, share of lines, system prompt tokens, user tokens, max_tokens)
        ("chat", 0.35, 300, 200, 1024),
        ("eval", 0.25, 600, 90, 8),
        ("docs", 0.15, 0, 2000, 64),
        ("long", 0.05, 0, 40, 8000),
        ("mid", 0.15, 150, 300, 256),
        ("tiny", 0.05, 50, 20, 32),
    ]
    tree, owner = PrefixTree(PerfModel.preset()), {}
    for key in range(lines):
        name, _, system, user, max_tokens = rng.choices(shapes, weights=[s[1] for s in shapes])[0]
        head = [1000 * len(name) + ord(name[0]) * 7 + j for j in range(system)]
        tail = [rng.randrange(50_000) for _ in range(max(1, int(rng.expovariate(1 / user))))]
        tree.insert(TreeRequest(key, head + tail, max(1, int(rng.uniform(0.2, 1.0) * max_tokens))))
        owner[key] = name
    return tree, owner


@pytest.mark.parametrize(("window", "kv"), [(64, BIG_KV), (256, 4e5)])
def test_a_sampled_forecast_stays_close_to_the_exact_replay(window, kv):
    """Stated tolerance: each batch's first start and last finish within 6% of the drain, the drain within 2%
    (measured: at most 3.5% / 0.3% at window 64, 5.5% / 1.4% at window 256; coarser samples do worse: 1500 units
    here, a stretch of 27 lines, put a long-generation batch's finish 22% of the drain early)."""
    tree, owner = _workload(40_000)
    order = _order(tree)
    running = [Running(3.0 * (i + 1), 1e-4, 1e-4, 300.0) for i in range(8)]
    args = (tree, order, lambda r: owner[r.key], window, kv, 1.5, running)
    exact = forecast(*args, exact_lines=len(order))
    sampled = forecast(*args)
    assert len(order) > ec.EXACT_LINES  # the default bounds this one
    assert sampled.lines == exact.lines == len(order)  # nothing taken: every stretch is pending
    assert sampled.drain_s == pytest.approx(exact.drain_s, rel=0.02)
    assert sampled.work_s == pytest.approx(exact.work_s, rel=0.02)
    assert set(sampled.groups) == set(exact.groups)
    tolerance = 0.06 * exact.drain_s
    for name, want in exact.groups.items():
        got = sampled.groups[name]
        assert abs(got.last_finish_s - want.last_finish_s) <= tolerance, name
        assert abs(got.first_start_s - want.first_start_s) <= tolerance, name
        assert got.lines == pytest.approx(want.lines, rel=0.05), name
        assert got.cached_tokens == pytest.approx(want.cached_tokens, rel=0.05, abs=100), name


def test_small_queues_are_replayed_line_by_line():
    tree, owner = _workload(600)
    order = _order(tree)
    args = (tree, order, lambda r: owner[r.key], 16, BIG_KV, 1.0)
    assert forecast(*args) == forecast(*args, exact_lines=len(order), units=1)
    coarse = forecast(*args, exact_lines=100, units=60)  # 10 lines a unit: a quarter of the units, same total
    assert coarse.lines == 600 and coarse.work_s == pytest.approx(forecast(*args).work_s, rel=0.1)
    assert sum(g.lines for g in coarse.groups.values()) == 600 and coarse.drain_s > 0
