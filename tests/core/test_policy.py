from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.sched import policy as policy_module
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.policy import AdmissionPolicy
from blendserve.core.sched.scanner import LEFT, RIGHT

PERF = PerfModel.preset()

# an operation: (kind, a, b) with kind in add/remove/batch/finish/requeue
ops = st.lists(
    st.tuples(st.sampled_from(["add", "add", "add", "remove", "batch", "finish", "requeue"]), st.integers(0, 50),
              st.integers(1, 400)),
    max_size=80,
)  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(ops, st.integers(0, 4))
def test_every_request_is_admitted_exactly_once_unless_removed(operations, probe):
    policy = AdmissionPolicy(PERF, probe=probe)
    rng = random.Random(0)
    added, removed, admitted, finished = set(), set(), [], set()
    next_key = 0
    for kind, a, b in operations:
        if kind == "add":
            tokens = [a % 3] * (a % 7 + 1) + [a, next_key]  # few heads: shared prefixes, several jobs
            policy.add(next_key, tokens, max_tokens=b, group=f"job{a % 4}")
            added.add(next_key)
            next_key += 1
        elif kind == "remove" and added:
            key = rng.choice(sorted(added))
            if policy.remove(key):
                removed.add(key)
        elif kind == "batch":
            admitted += [r.key for r, _ in policy.next_batch(kv_budget=b * 10, limit=a % 9 + 1)]
        elif kind in ("finish", "requeue") and policy.inflight:
            key = rng.choice(sorted(policy.inflight))
            if kind == "finish":
                assert policy.observe(key, b)
                assert policy.done(key) is not None
                finished.add(key)
            else:
                assert policy.requeue(key)
                admitted.remove(key)  # it is pending again: its admission did not stick
        policy.check_integrity()
    while len(policy):  # drain: everything left comes out, with room for it all
        batch = policy.next_batch(kv_budget=1e12)
        assert batch
        admitted += [r.key for r, _ in batch]
    assert len(admitted) == len(set(admitted)), "a request was admitted twice"
    assert set(admitted) == added - removed
    assert not removed & set(admitted)
    for key in list(policy.inflight):
        policy.observe(key, 5)
        policy.done(key)
    assert policy.inflight_kv[LEFT] == pytest.approx(0, abs=1e-6) and policy.inflight_kv[RIGHT] == pytest.approx(
        0, abs=1e-6
    )
    policy.check_integrity()


def test_add_twice_is_an_error_and_unknown_keys_are_noops():
    policy = AdmissionPolicy(PERF)
    policy.add("a", [1, 2, 3], 10)
    with pytest.raises(ValueError):
        policy.add("a", [1, 2, 3], 10)
    assert not policy.remove("zzz") and policy.done("zzz") is None and not policy.requeue("zzz")
    assert not policy.observe("zzz", 3)
    ((req, _),) = policy.next_batch(kv_budget=1e9)
    with pytest.raises(ValueError):
        policy.add("a", [1], 1)  # in flight counts too
    assert not policy.remove("a")  # in flight: not removable, wait for done()


def _jobs_policy(probe=4):
    policy = AdmissionPolicy(PERF, probe=probe)
    for i in range(200):  # a chat-like job: answers ~100 tokens under max_tokens 4096
        policy.add(("chat", i), [7] * 300 + [i % 20, 1000 + i], max_tokens=4096, group="chat")
    for i in range(200):  # a few-shot job: 1-token answers under max_tokens 16
        policy.add(("eval", i), [9] * 600 + [i % 10, 5000 + i], max_tokens=16, group="eval")
    return policy


def test_new_jobs_are_probed_from_one_subtree_first():
    policy = _jobs_policy(probe=4)
    batch = policy.next_batch(kv_budget=1e9, limit=8)
    assert [r.key[0] for r, _ in batch] == ["chat"] * 4 + ["eval"] * 4
    chat = [r for r, _ in batch[:4]]
    assert len({tuple(r.tokens[:301]) for r in chat}) == 1  # one subtree: its prefix is prefilled once


def test_job_observations_reestimate_its_pending_lines_with_second_moment():
    policy = _jobs_policy(probe=2)
    batch = policy.next_batch(kv_budget=1e9, limit=4)
    pending_chat = [r for r in policy.pending.values() if r.group == "chat"]
    assert all(r.d_est == 4096 for r in pending_chat)
    for req, _ in batch:
        out = 80 if req.group == "chat" else 1
        policy.observe(req.key, out if req.key[1] % 2 else out + 40)
        policy.done(req.key)
    policy.check_integrity()
    chat_obs = [80 if r.key[1] % 2 else 120 for r, _ in batch if r.group == "chat"]
    mean = sum(chat_obs) / len(chat_obs)
    second = sum(d * d for d in chat_obs) / len(chat_obs)
    for req in pending_chat:
        assert req.d_est == pytest.approx(mean)
        assert req.mem == pytest.approx((len(req.tokens) * mean + second / 2) * PERF.mem_per_token_read)
    assert all(r.d_est <= 16 for r in policy.pending.values() if r.group == "eval")


def test_known_output_is_used_and_capped():
    policy = AdmissionPolicy(PERF)
    a = policy.add("a", [1, 2], max_tokens=100, known_output=40, group="j")
    b = policy.add("b", [1, 3], max_tokens=10, known_output=40, group="j")
    assert a.d_est == 40 and b.d_est == 10
    assert not policy.to_probe  # an oracle job needs no probe


def test_cumulative_blend_keeps_admitted_density_near_the_workload():
    policy = AdmissionPolicy(PERF, probe=0, blend="cumulative")
    rng = random.Random(1)
    for i in range(600):
        if rng.random() < 0.5:
            policy.add(i, [1] * 400 + [i, i + 7], max_tokens=2, known_output=2)  # compute-heavy
        else:
            policy.add(i, [2] * 20 + [i, i + 9], max_tokens=1500, known_output=1500)  # memory-heavy
    tree = policy.tree
    rho_all = tree.comp(tree.root) / tree.root.mem
    batch = policy.next_batch(kv_budget=100_000)
    sides = {s for _, s in batch}
    assert sides == {LEFT, RIGHT}
    scanner = policy.scanner
    assert 0.5 * rho_all < scanner.cum_comp / scanner.cum_mem < 2 * rho_all
    for req, _ in batch:  # the truth replaces the admitted shares; here the truth is what was known
        before = (scanner.cum_comp, scanner.cum_mem)
        policy.observe(req.key, int(req.known))
        assert (scanner.cum_comp, scanner.cum_mem) == pytest.approx(before)
        policy.done(req.key)
    assert policy.inflight_kv[LEFT] == pytest.approx(0, abs=1e-6)


def test_a_request_on_the_critical_path_starts_first():
    policy = AdmissionPolicy(PERF, probe=0)
    for i in range(300):
        policy.add(i, [1] * 400 + [i, i + 7], max_tokens=2, known_output=2)
    policy.add("long", [5, 6, 7], max_tokens=20_000, known_output=20_000)  # ~112 s of weight reads alone
    (first, side), *_ = policy.next_batch(kv_budget=1e6, limit=3)
    assert first.key == "long" and side == RIGHT
    policy.check_integrity()


def test_stale_entries_of_the_critical_path_heap_are_dropped_a_bounded_number_per_call(monkeypatch):
    """Lines the cursors took (or that were removed) leave stale heap entries, dropped when they reach the top: by
    the thousand once a long job's lines were taken, so a call drops at most REFILE_SLICE of them and the next
    call goes on; a critical line behind them starts a few calls later."""
    monkeypatch.setattr(policy_module, "REFILE_SLICE", 10)
    policy = AdmissionPolicy(PERF, probe=0)
    for i in range(300):
        policy.add(i, [1] * 400 + [i, i + 7], max_tokens=2, known_output=2)
    for i in range(45):
        policy.add(("gone", i), [9, 9, i], max_tokens=30_000, known_output=30_000)
        policy.remove(("gone", i))
    policy.add("long", [5, 6, 7], max_tokens=20_000, known_output=20_000)
    calls, taken = 0, []
    while not taken:
        before = len(policy.longest)
        taken = policy.critical_path(3)
        calls += 1
        assert before - len(policy.longest) <= 10
    assert [req.key for req, _ in taken] == ["long"] and calls == 5  # 45 stale entries, 10 a call, then "long"
    policy.check_integrity()


def test_short_requests_are_left_to_the_blend():
    policy = AdmissionPolicy(PERF, probe=0)
    for i in range(300):
        policy.add(i, [1] * 400 + [i, i + 7], max_tokens=200, known_output=200)
    assert policy.critical_path(10) == []  # no single request outlasts the rest of the work


def test_running_lines_of_a_job_bound_its_estimate_from_below():
    """Short lines finish first: lines of the same admission round still running have produced at least as much
    as the longest finished one, so the pending lines' estimate is not the finished lines' mean alone."""
    policy = AdmissionPolicy(PERF, probe=0)
    for i in range(40):
        policy.add(i, [7] * 30 + [i, i + 1000], max_tokens=1000, group="j")
    batch = policy.next_batch(kv_budget=1e9, limit=20)  # one round: 20 lines start together
    assert len(batch) == 20
    for k, (req, _) in enumerate(batch[:8]):  # the 8 shortest finish: 10, 20, ..., 80 tokens
        policy.observe(req.key, 10 * (k + 1))
        policy.done(req.key)
    naive = sum(10 * (k + 1) for k in range(8)) / 8
    censored = (sum(10 * (k + 1) for k in range(8)) + 12 * 80) / 20  # 12 running lines bounded at 80
    pending = list(policy.pending.values())
    assert pending and all(r.d_est == pytest.approx(censored) for r in pending)
    assert censored > naive
    policy.check_integrity()
