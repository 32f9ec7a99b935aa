from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.sched.ordering import blend_order, dfs_order, plan_splits, req_comp_tokens
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sched.scanner import LEFT, RIGHT, DualScanner, split_fraction

PERF = PerfModel.preset()


def _tree(specs):
    tree = PrefixTree(PERF)
    reqs = [TreeRequest(i, toks, d) for i, (toks, d) in enumerate(specs)]
    for r in reqs:
        tree.insert(r)
    return tree, reqs


def _mixed_tree(rng, n=400):
    heads = {"compute": [1] * 400, "memory": [2] * 20, "chat": [3] * 100}
    specs = []
    for i in range(n):
        kind = rng.choice(list(heads))
        d = {"compute": 2, "memory": 1500, "chat": 200}[kind]
        specs.append((heads[kind] + [1000 + i, 50000 + i], d))
    return _tree(specs)


def test_blend_order_is_a_permutation_sorted_by_density_at_the_top():
    tree, reqs = _mixed_tree(random.Random(0))
    order = blend_order(tree)
    assert sorted(r.key for r in order) == sorted(r.key for r in reqs)
    kinds = [r.tokens[0] for r in order]
    # compute-heavy (1) first, memory-heavy (2) last, each class contiguous (prefix sharing kept)
    assert kinds == sorted(kinds, key=lambda k: {1: 0, 3: 1, 2: 2}[k])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 3), max_size=8), st.integers(1, 300)), max_size=40))
def test_orders_are_permutations_and_keep_subtrees_contiguous(specs):
    tree, reqs = _tree(specs)
    for order in (blend_order(tree, plan_splits(tree, 0.0)), dfs_order(tree)):
        assert sorted(r.key for r in order) == sorted(r.key for r in reqs)
        # without splits every subtree is one contiguous run: requests sharing a first token are adjacent
        firsts = [r.tokens[0] for r in order if len(r.tokens)]  # empty prompts sit on the root, alone
        runs = [f for i, f in enumerate(firsts) if i == 0 or firsts[i - 1] != f]
        assert len(runs) == len(set(runs))


def _reference_order(tree):
    """blend_order without splits as the paper states it: depth-first, an inner node's own requests and children by
    rho descending, ties in their order (own requests first, then children as the node lists them); a leaf's
    requests as they stand (they share their whole prompt)."""
    cpt, out = tree.comp_per_token, []

    def emit(node):
        if not node.children:
            out.extend(node.requests)
            return
        items = [(cpt * req_comp_tokens(r) / r.mem if r.mem else float("inf"), r) for r in node.requests]
        items += [(tree.rho(c), c) for c in node.children.values()]
        for _, item in sorted(items, key=lambda x: -x[0]):
            if isinstance(item, TreeRequest):
                out.append(item)
            else:
                emit(item)

    emit(tree.root)
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 2), max_size=5), st.sampled_from([1, 2, 300])), max_size=50))
def test_blend_order_equals_a_plain_recursive_sort(specs):
    # few tokens and lengths: many ties in rho, which the layout's reverse-stable sort must keep in order
    tree, _ = _tree(specs)
    assert [r.key for r in blend_order(tree, plan_splits(tree, 0.0))] == [r.key for r in _reference_order(tree)]


def test_split_respects_budget_and_separates_mixed_children():
    specs = []
    shared = list(range(500, 700))  # a long shared prefix with mixed children under it
    for i in range(60):
        specs.append((shared + [1, i, i + 7000], 2))  # compute-heavy children
        specs.append((shared + [2, i, i + 9000], 2000))  # memory-heavy children
    for i in range(60):
        specs.append(([5] * 300 + [i + 100, i], 100))
    tree, _ = _tree(specs)
    plan = plan_splits(tree, 0.01)
    assert plan.recompute_tokens <= plan.budget_tokens
    assert not plan_splits(tree, 0.0).nodes
    generous = plan_splits(tree, 0.5)
    assert generous.nodes, "a mixed node should be split when the budget allows"
    order = blend_order(tree, generous)
    assert len(order) == len(specs)
    pos_compute = [i for i, r in enumerate(order) if r.tokens[200] == 1 and r.tokens[0] == 500]
    pos_memory = [i for i, r in enumerate(order) if r.tokens[200] == 2 and r.tokens[0] == 500]
    assert max(pos_compute) < min(pos_memory)


@pytest.mark.parametrize(
    "rl, rr, target, expected",
    [
        (4.0, 0.5, 1.0, (1.0 - 0.5) / 3.5),
        (4.0, 0.5, 10.0, 1.0),  # root denser than both windows: all to the left
        (4.0, 0.5, 0.1, 0.0),  # root sparser than both (rho_root < 1): all to the right
        (1.0, 1.0, 1.0, 0.5),  # no contrast: even split
        (0.5, 4.0, 1.0, 3.0 / 3.5),  # inverted windows (tree changed): the same blend equation holds
        (0.5, 4.0, 9.0, 0.0),  # target beyond both: everything to the denser (here right) side
    ],
)
def test_split_fraction_defined_everywhere(rl, rr, target, expected):
    assert split_fraction(rl, rr, target) == pytest.approx(expected)


@given(st.floats(0.01, 100), st.floats(0.01, 100), st.floats(0.01, 100))
def test_split_fraction_in_unit_interval(a, b, c):
    assert 0.0 <= split_fraction(a, b, c) <= 1.0


def test_dual_scanner_blends_both_ends_and_drains_everything():
    rng = random.Random(3)
    tree, reqs = _mixed_tree(rng)
    scanner = DualScanner(tree)
    first = scanner.next_requests(kv_budget=50_000, inflight_left=0, inflight_right=0)
    sides = {s for _, s in first}
    assert sides == {LEFT, RIGHT}
    assert first and all(r.node is None for r, _ in first)  # taken requests leave the tree
    left = [r for r, s in first if s == LEFT]
    right = [r for r, s in first if s == RIGHT]
    assert left[0].tokens[0] == 1 and right[0].tokens[0] == 2  # each cursor starts at its own end
    assert [r.tokens[0] for r in left] == sorted((r.tokens[0] for r in left), key=[1, 3, 2].index)
    taken = list(first)
    while True:
        batch = scanner.next_requests(kv_budget=50_000, inflight_left=0, inflight_right=0)
        if not batch:
            break
        taken += batch
    assert sorted(r.key for r, _ in taken) == sorted(r.key for r in reqs)
    assert len(tree) == 0
    tree.check_integrity()


def test_budget_respected_and_idle_runtime_gets_work():
    tree, _ = _tree([([1] * 10 + [i], 5000) for i in range(10)])
    scanner = DualScanner(tree)
    assert scanner.next_requests(kv_budget=100, inflight_left=50, inflight_right=50) == []
    assert len(scanner.next_requests(kv_budget=1, inflight_left=0, inflight_right=0)) == 1


def test_tree_changes_under_the_cursors():
    tree, reqs = _tree([([1] * 50 + [i], 5) for i in range(20)] + [([2] * 5 + [i], 900) for i in range(20)])
    scanner = DualScanner(tree)
    got = scanner.next_requests(kv_budget=3000, inflight_left=0, inflight_right=0)
    got_keys = {r.key for r, _ in got}
    cancelled = [r for r in reqs if r.node is not None][:5]  # a batch is cancelled
    for r in cancelled:
        tree.remove(r)
    late = [TreeRequest(f"new{i}", [3] * 30 + [i], 50) for i in range(5)]  # a batch arrives
    for r in late:
        tree.insert(r)
    rest = []
    while batch := scanner.next_requests(kv_budget=3000, inflight_left=0, inflight_right=0):
        rest += [r for r, _ in batch]
    rest_keys = {r.key for r in rest}
    assert not rest_keys & {r.key for r in cancelled} and not rest_keys & got_keys
    expected = {r.key for r in reqs + late} - got_keys - {r.key for r in cancelled}
    assert rest_keys == expected


def test_rate_blend_keeps_running_rates_at_root_density_and_done_releases():
    rng = random.Random(5)
    tree, reqs = _mixed_tree(rng, n=600)
    scanner = DualScanner(tree, blend="rate")
    rho_root = tree.rho(tree.root)
    picked = scanner.next_requests(kv_budget=20_000, inflight_left=0, inflight_right=0)
    assert {s for _, s in picked} == {LEFT, RIGHT}
    # after each pick the side that was short is fed: the running ratio straddles the target
    ratio = scanner.rate_comp / scanner.rate_mem
    assert 0.2 * rho_root < ratio < 5 * rho_root
    for req, _ in picked:
        scanner.done(req)
    assert abs(scanner.rate_comp) < 1e-9 and abs(scanner.rate_mem) < 1e-9 and not scanner.taken_rates


def test_kv_blend_follows_alg3_split():
    tree, _ = _mixed_tree(random.Random(6), n=300)
    scanner = DualScanner(tree, blend="kv")
    picked = scanner.next_requests(kv_budget=30_000, inflight_left=0, inflight_right=0)
    x = scanner.last_split
    assert 0.0 <= x <= 1.0
    left = sum(r.footprint for r, s in picked if s == LEFT)
    right = sum(r.footprint for r, s in picked if s == RIGHT)
    assert left <= x * 30_000 + max(r.footprint for r, _ in picked)
    assert right <= (1 - x) * 30_000 + max(r.footprint for r, _ in picked)
    with pytest.raises(ValueError):
        DualScanner(tree, blend="nope")


def test_sampling_is_stratified_and_leaves_the_tree():
    from blendserve.core.sched.sampling import sample_requests

    tree, reqs = _mixed_tree(random.Random(8), n=500)
    samples = sample_requests(tree, fraction=0.02)
    groups = {r.tokens[0] for r in samples}
    assert groups == {1, 2, 3}  # every shared-prefix group is sampled
    assert 3 <= len(samples) <= 0.02 * 500 + 3
    assert all(r.node is None for r in samples) and len(tree) == 500 - len(samples)
    tree.check_integrity()
