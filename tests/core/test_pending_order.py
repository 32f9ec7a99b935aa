"""What is pending (scanner.pending_order() over the arrival log, arrivals.py): every pending request listed once,
without a layout at once when layouts are sliced; small trees as before (a whole layout)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.sched.arrivals import COMPACT_FLOOR, ArrivalLog
from blendserve.core.sched.ordering import blend_order, plan_splits
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.policy import AdmissionPolicy
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest

PERF = PerfModel.preset()


def _listed(policy: AdmissionPolicy) -> list[object]:
    return [r.key for r in policy.scanner.pending_order() if r.node is not None]


def _random_ops(seed: int, policy: AdmissionPolicy, steps: int, check) -> None:
    rng = random.Random(seed)
    key = 0
    for _ in range(steps):
        op = rng.random()
        if op < 0.35:
            for _ in range(rng.randint(1, 8)):
                toks = [rng.randint(0, 3) for _ in range(rng.randint(0, 6))]
                policy.add(key, toks, rng.choice([4, 64, 1024]), group=rng.choice(["a", "b", None]))
                key += 1
        elif op < 0.7:
            for treq, _ in policy.next_batch(PERF.kv_capacity_tokens, limit=rng.randint(1, 5)):
                if rng.random() < 0.3:
                    policy.requeue(treq.key)
                else:
                    policy.observe(treq.key, rng.randint(1, 900))
                    policy.done(treq.key)
        elif op < 0.8 and policy.pending:
            policy.remove(rng.choice(sorted(policy.pending, key=str)))
        check(policy)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from([1, 3, 20]))
def test_sliced_pending_order_lists_every_pending_request_once_and_never_lays_out(seed, layout_slice):
    policy = AdmissionPolicy(PERF, layout_slice=layout_slice, reestimate_slice=2, layout_at_once=0)

    def check(p: AdmissionPolicy) -> None:
        layouts, job = p.scanner.layouts, p.scanner._job
        units = job.units if job is not None else 0
        listed = _listed(p)
        if len(p.tree):  # (an empty tree is "at most layout_at_once": laid out at once, as before)
            assert p.scanner.layouts == layouts and p.scanner._job is job  # nothing laid out, nothing advanced
            assert job is None or job.units == units
        assert len(listed) == len(set(listed)) and set(listed) == set(p.pending)
        p.check_integrity()

    _random_ops(seed, policy, 120, check)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 100_000))
def test_a_small_tree_is_laid_out_again_whole_as_before(seed):
    policy = AdmissionPolicy(PERF)  # LAYOUT_AT_ONCE: a tree this small is laid out at once

    def check(p: AdmissionPolicy) -> None:
        stale, layouts = p.scanner._built_at != p.tree.inserts, p.scanner.layouts
        expected = [r.key for r in blend_order(p.tree, plan_splits(p.tree))]
        order = [r.key for r in p.scanner.pending_order()]
        if stale:  # requests arrived or estimates changed: laid out again, whole, as before
            assert p.scanner.layouts == layouts + 1 and order == expected
        live = [r.key for r in p.scanner.pending_order() if r.node is not None]
        assert set(live) == set(p.pending) and len(live) == len(set(live))

    _random_ops(seed, policy, 60, check)


def test_arrivals_come_after_the_order_in_arrival_order():
    policy = AdmissionPolicy(PERF, layout_slice=5, layout_at_once=0)
    for i in range(30):
        policy.add(i, [1, i % 4, i], 64)
    policy.next_batch(PERF.kv_capacity_tokens, limit=1)  # a slice of the first layout (nothing installed yet)
    for i in range(30, 40):
        policy.add(i, [2, i], 64)
    order = [r.key for r in policy.scanner.pending_order() if r.node is not None]
    assert sorted(order) == sorted(policy.pending)
    while policy.scanner._job is not None:
        policy.next_batch(PERF.kv_capacity_tokens, limit=1)
    order = [r.key for r in policy.scanner.pending_order() if r.node is not None]
    assert order[-10:] == list(range(30, 40))  # arrived after the installed layout began: last, as they came
    assert sorted(order) == sorted(policy.pending)


def test_unnoted_inserts_fall_back_to_a_whole_layout():
    policy = AdmissionPolicy(PERF, layout_slice=5, layout_at_once=0)
    for i in range(20):
        policy.add(i, [1, i], 64)
    policy.tree.insert(TreeRequest("direct", [3, 3], 8))  # behind the policy's back: the log cannot tell
    layouts = policy.scanner.layouts
    keys = [r.key for r in policy.scanner.pending_order()]
    assert policy.scanner.layouts == layouts + 1 and "direct" in keys and len(keys) == 21


def test_the_log_stays_bounded_when_no_layout_is_installed():
    tree, log = PrefixTree(PERF), ArrivalLog()
    for i in range(10 * COMPACT_FLOOR):
        req = TreeRequest(i, [i % 7, i], 4)
        tree.insert(req)
        log.note(req, tree.inserts - 1)
        if i % 10:  # nine in ten leave again (dispatched)
            tree.remove(req)
    assert len(log) <= 2 * len(tree) + COMPACT_FLOOR + 1
    assert log.covers(0, tree.inserts)
    late = log.since(0)
    assert [r.key for r in late] == sorted(r.key for r in tree.iter_subtree(tree.root))  # arrival order


def test_without_late_lists_each_request_once_up_to_its_limit(monkeypatch):
    from blendserve.core.sched import arrivals

    reqs = [TreeRequest(i, [i], 4) for i in range(6)]
    order, late = reqs[:4], [reqs[2], reqs[5]]  # reqs[2]: met by the layout's walk, or requeued
    assert [r.key for r in arrivals.without_late(order, late)] == [0, 1, 3, 2, 5]
    monkeypatch.setattr(arrivals, "DEDUPE_LINES", 3)  # a longer order is not searched (eta samples it)
    assert [r.key for r in arrivals.without_late(order, late)] == [0, 1, 2, 3, 2, 5]
