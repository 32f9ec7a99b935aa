"""The schedule forecast (core/sched/eta.py) and the throughput meter that calibrates it."""

from __future__ import annotations

import pytest

from blendserve.core.dispatch.stats import LineEvent
from blendserve.core.dispatch.throughput import MIN_CALIBRATION_LINES, ThroughputMeter
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
