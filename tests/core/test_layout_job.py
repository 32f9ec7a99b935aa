"""Layouts and re-estimations done in slices (layout_job.py, reestimation.py, ordering's *_steps): the same
result as at once when the tree does not change, and every request admitted exactly once when it does."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.sched import ordering
from blendserve.core.sched.layout_job import LayoutJob
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.policy import AdmissionPolicy
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sched.reestimation import ReestimateQueue

PERF = PerfModel.preset()
# tiny alphabet: shared prefixes and wide nodes; output lengths from a few values: ties in rho
specs = st.lists(
    st.tuples(st.lists(st.integers(0, 3), max_size=8), st.sampled_from([1, 2, 50, 1500]), st.booleans()),
    max_size=60,
)


def _tree(spec):
    tree = PrefixTree(PERF)
    for i, (toks, d, known) in enumerate(spec):
        tree.insert(TreeRequest(i, [9, *toks], 2000, known=d if known else None))
    return tree


def _keys(order):
    return [r.key for r in order]


@settings(max_examples=80, deadline=None)
@given(specs)
def test_narrow_steps_lay_out_exactly_what_wide_ones_do(spec):
    tree = _tree(spec)
    plan = ordering.plan_splits(tree, 0.2)
    wide = _keys(ordering.blend_order(tree, plan))
    saved = ordering.STEP_ITEMS
    ordering.STEP_ITEMS = 2  # every node wider than 2 is sorted in runs and merged
    try:
        narrow_plan = ordering.plan_splits(tree, 0.2)
        narrow = _keys(ordering.blend_order(tree, narrow_plan))
    finally:
        ordering.STEP_ITEMS = saved
    assert set(narrow_plan.nodes) == set(plan.nodes) and narrow_plan.recompute_tokens == plan.recompute_tokens
    assert narrow == wide


@settings(max_examples=60, deadline=None)
@given(specs, st.integers(1, 7))
def test_a_job_in_slices_equals_the_layout_at_once(spec, budget):
    tree = _tree(spec)
    plan = ordering.plan_splits(tree, 0.01)
    expected = _keys(ordering.blend_order(tree, plan))
    job = LayoutJob(tree, 0.01)
    calls = 1
    while not job.advance(budget):
        calls += 1
    assert _keys(job.order) == expected and set(job.plan.nodes) == set(plan.nodes)
    assert job.advance(budget) and job.started_at == tree.inserts


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_sliced_policy_admits_every_request_once_while_the_tree_changes(seed):
    rng = random.Random(seed)
    policy = AdmissionPolicy(
        PERF, layout_slice=rng.choice([1, 3, 10]), reestimate_slice=rng.choice([1, 2, 5]), layout_at_once=0
    )
    added, removed, admitted, key = set(), set(), [], 0

    def add(n):
        nonlocal key
        for _ in range(n):
            toks = [rng.randint(0, 3) for _ in range(rng.randint(0, 6))]
            policy.add(key, toks, rng.choice([4, 64, 1024]), group=rng.choice(["a", "b", None]))
            added.add(key)
            key += 1

    add(rng.randint(1, 60))
    for _ in range(400):
        picked = policy.next_batch(PERF.kv_capacity_tokens, limit=rng.randint(1, 6))
        for treq, _ in picked:
            admitted.append(treq.key)
            if rng.random() < 0.1:
                policy.requeue(treq.key)
                admitted.pop()
            else:
                policy.observe(treq.key, rng.randint(1, 900))
                policy.done(treq.key)
        if rng.random() < 0.2:
            add(rng.randint(1, 10))
        if rng.random() < 0.1 and policy.pending:
            victim = rng.choice(sorted(policy.pending, key=str))
            assert policy.remove(victim)
            removed.add(victim)
        policy.check_integrity()
        if not picked and not policy.pending and not policy.reestimates.waiting:
            break
    assert not policy.pending
    assert len(admitted) == len(set(admitted)) and set(admitted) == added - removed


def test_reestimation_in_slices_matches_at_once():
    rng = random.Random(3)
    trees = [PrefixTree(PERF), PrefixTree(PERF)]
    for tree in trees:
        for i in range(300):
            tree.insert(TreeRequest(i, [1, 2, rng.randint(0, 50), i], 500, group="job"))
    for tree, size in zip(trees, (None, 7), strict=True):
        for d in (10, 30, 20):
            tree.lengths.observe_job("job", d)
        queue = ReestimateQueue(tree, size)
        lines = list(tree.iter_subtree(tree.root))
        lines.sort(key=lambda r: r.key)
        if queue.push("job", lines):
            continue
        assert len(queue) == 300
        calls = 0
        while queue.waiting:
            completed = queue.advance()
            calls += 1
            tree.check_integrity()
        assert completed and calls == -(-300 // 7)
    a, b = ({r.key: (r.d_est, r.mem) for r in t.iter_subtree(t.root)} for t in trees)
    assert a == b and all(d == 20.0 for d, _ in a.values())
    assert trees[0].root.d_sum == pytest.approx(trees[1].root.d_sum)
