from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest

PERF = PerfModel.preset()
prompts = st.lists(st.integers(0, 3), min_size=0, max_size=12)  # tiny alphabet: lots of shared prefixes


def _tokens_saved(reqs):
    distinct = set()
    for r in reqs:
        for i in range(1, len(r.tokens) + 1):
            distinct.add(tuple(r.tokens[:i]))
    return sum(len(r.tokens) for r in reqs) - len(distinct)


@settings(max_examples=150, deadline=None)
@given(st.lists(prompts, max_size=40), st.randoms(use_true_random=False))
def test_insert_remove_keeps_integrity_and_aggregates(prompt_list, rnd):
    tree = PrefixTree(PERF)
    live = []
    for i, p in enumerate(prompt_list):
        req = TreeRequest(i, p, max_tokens=rnd.randint(1, 50))
        tree.insert(req)
        live.append(req)
        tree.check_integrity()
        if live and rnd.random() < 0.4:
            victim = live.pop(rnd.randrange(len(live)))
            tree.remove(victim)
            tree.check_integrity()
    assert len(tree) == len(live)
    # tok == number of distinct non-empty prefixes: every shared prefix is counted once
    assert tree.sharing_saved_tokens() == _tokens_saved(live)
    assert tree.root.d_sum == pytest.approx(sum(r.d_est for r in live))
    for req in list(live):
        tree.remove(req)
    tree.check_integrity()
    assert len(tree) == 0 and not tree.root.children and tree.root.tok == 0


def test_remove_twice_and_insert_twice_are_errors():
    tree = PrefixTree(PERF)
    req = TreeRequest("a", [1, 2, 3], 10)
    tree.insert(req)
    with pytest.raises(ValueError):
        tree.insert(req)
    tree.remove(req)
    with pytest.raises(ValueError):
        tree.remove(req)


def test_estimates_from_observations_with_sibling_fallback():
    tree = PrefixTree(PERF)
    shared = list(range(100, 150))
    reqs = [TreeRequest(i, shared + [i, i + 1000], max_tokens=500) for i in range(6)]
    other = TreeRequest("x", [7, 7, 7], max_tokens=300)
    for r in reqs + [other]:
        tree.insert(r)
    assert all(r.d_est == 500 for r in reqs)
    tree.remove(reqs[0])
    tree.observe(reqs[0].tokens, 40)  # finished; its leaf is gone, the shared parent learns
    tree.check_integrity()
    assert [r.d_est for r in reqs[1:]] == [40.0] * 5  # siblings use the subtree mean
    assert other.d_est == 300  # an unrelated subtree keeps max_tokens
    tree.observe(reqs[1].tokens, 80)
    tree.check_integrity()
    assert reqs[2].d_est == pytest.approx(60.0)
    capped = TreeRequest("c", shared + [9, 9], max_tokens=10)
    tree.insert(capped)
    assert capped.d_est == 10  # never above max_tokens


def test_rho_is_ratio_of_sums_with_shared_prefix_once():
    tree = PrefixTree(PERF)
    a, b = TreeRequest("a", [1] * 10 + [2], 5), TreeRequest("b", [1] * 10 + [3], 7)
    tree.insert(a)
    tree.insert(b)
    expected_comp = (12 + 5 + 7) * PERF.comp_per_token  # 10 shared + 1 + 1 unique prompt tokens, outputs 5 + 7
    assert tree.comp(tree.root) == pytest.approx(expected_comp)
    assert tree.rho(tree.root) == pytest.approx(expected_comp / (PERF.mem(11, 5) + PERF.mem(11, 7)))


def test_many_random_requests_integrity():
    rng = random.Random(1)
    tree = PrefixTree(PERF)
    heads = [[rng.randrange(1000) for _ in range(rng.randrange(1, 50))] for _ in range(20)]
    reqs = []
    for i in range(3000):
        toks = rng.choice(heads) + [rng.randrange(1000) for _ in range(rng.randrange(0, 30))]
        reqs.append(TreeRequest(i, toks, rng.randrange(1, 200)))
        tree.insert(reqs[-1])
    tree.check_integrity()
    for r in rng.sample(reqs, 1500):
        tree.remove(r)
    tree.check_integrity()
    assert len(tree) == 1500


@settings(max_examples=150, deadline=None)
@given(st.lists(prompts, max_size=40), st.randoms(use_true_random=False))
def test_observations_reestimate_pending_requests_and_keep_every_aggregate(prompt_list, rnd):
    """Job and subtree observations re-estimate pending requests (their deltas summed per node on the way up):
    every node's sums still equal its requests' estimates, and each pending request of a job with observations
    carries the estimate a fresh insert would get (a job's distribution is refreshed and re-applied together)."""
    tree = PrefixTree(PERF)
    live = []
    for i, p in enumerate(prompt_list):
        req = TreeRequest(i, p, max_tokens=rnd.randint(1, 500), group=f"job{rnd.randrange(3)}")
        tree.insert(req)
        live.append(req)
        if rnd.random() < 0.5:
            done = live.pop(rnd.randrange(len(live)))
            tree.remove(done)
            tree.observe(done.tokens, rnd.randint(1, 400), group=done.group)  # job counts 1, 2, 4: re-estimates
        tree.check_integrity()
    for req in live:
        if tree.lengths.job_stats(req.group) is None:
            continue  # estimated from its subtree, refreshed when a node's count doubles: may lag a fresh insert
        fresh = TreeRequest("probe", req.tokens, req.max_tokens, group=req.group)
        tree.lengths.estimate(fresh, req.node, tree.root)
        assert (req.d_est, req.mem) == pytest.approx((fresh.d_est, fresh.mem))


def _locate_by_walk(tree, tokens):
    """locate() as the path spells it: walk down while a child's whole edge is the prompt's next tokens; a child
    whose edge the prompt ends inside of is the answer, else the node where the walk stopped."""
    node, pos = tree.root, 0
    while pos < len(tokens):
        child = node.children.get(tokens[pos])
        if child is None:
            return node
        edge = list(child.key if child.key is not None else child.src[child.off :])  # not child.edge(): stays lazy
        rest = list(tokens[pos:])
        if rest[: len(edge)] == edge:
            node, pos = child, pos + len(edge)
        elif edge[: len(rest)] == rest:
            return child
        else:
            return node
    return node


@settings(max_examples=150, deadline=None)
@given(st.lists(prompts, max_size=40), st.lists(prompts, max_size=20), st.randoms(use_true_random=False))
def test_locate_finds_the_deepest_node_on_the_path(prompt_list, probes, rnd):
    # lazy leaves, split and merged edges (requests removed at random), probes that end inside or beside edges
    tree = PrefixTree(PERF)
    reqs = [TreeRequest(i, p, 10) for i, p in enumerate(prompt_list)]
    for req in reqs:
        tree.insert(req)
    for req in rnd.sample(reqs, len(reqs) // 2):
        tree.remove(req)
    for tokens in probes + prompt_list:
        arr = TreeRequest(-1, tokens, 1).tokens
        assert tree.locate(arr) is _locate_by_walk(tree, arr)
