"""Subtree affinity and lanes (core/sched/affinity.py, lanes.py), the compact tree and the gateway's pure helpers."""

from __future__ import annotations

import random
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.runtime.gateway import single_bodies, split_dp_rank
from blendserve.core.sched.affinity import cut_by_lane, plan
from blendserve.core.sched.compact_tree import CompactTree, PromptLength
from blendserve.core.sched.lanes import LaneScanners
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.policy import AdmissionPolicy
from blendserve.core.sched.prefix_tree import TreeRequest
from blendserve.core.sched.scanner import RIGHT


def jobs_tree(jobs: int = 6, per_job: int = 30, seed: int = 1) -> tuple[CompactTree, dict[int, list[int]]]:
    """Each job: a 200-token system prompt of its own + a unique 20-token question."""
    rng = random.Random(seed)
    tree = CompactTree(PerfModel.preset())
    prompts: dict[int, list[int]] = {}
    heads = [[1000 * (j + 1) + rng.randrange(900) for _ in range(200)] for j in range(jobs)]
    key = 0
    for _ in range(per_job):
        for j in range(jobs):
            prompts[key] = [1, 2, 3] + heads[j] + [rng.randrange(50_000) for _ in range(20)]
            tree.insert(TreeRequest(key, prompts[key], 64))
            key += 1
    return tree, prompts


def job_of(key: int, jobs: int = 6) -> int:
    return key % jobs


def lanes_by_job(tree, part, lanes) -> dict[int, set]:
    out: dict[int, set] = {}
    for lane, order in cut_by_lane(tree, part, lanes).items():
        for req in order:
            out.setdefault(job_of(req.key), set()).add(lane)
    return out


def test_each_job_subtree_is_pinned_to_one_lane_and_lanes_are_balanced():
    tree, _ = jobs_tree()
    lanes = ["a", "b", "c"]
    part = plan(tree, lanes, {})
    per_job = lanes_by_job(tree, part, lanes)
    assert all(len(ls) == 1 for ls in per_job.values()), per_job  # a job's prefix is cached on one worker
    orders = cut_by_lane(tree, part, lanes)
    assert sorted(r.key for o in orders.values() for r in o) == sorted(range(len(tree)))  # each request once
    assert {len(o) for o in orders.values()} == {60}  # 6 equal jobs over 3 lanes: 2 jobs each


def test_replanning_is_sticky_and_a_new_lane_takes_its_share():
    tree, _ = jobs_tree()
    first = plan(tree, ["a", "b"], {})
    before = lanes_by_job(tree, first, ["a", "b"])
    again = plan(tree, ["a", "b"], first.pins)
    assert lanes_by_job(tree, again, ["a", "b"]) == before  # nothing moves without a reason
    grown = plan(tree, ["a", "b", "c"], first.pins)
    after = lanes_by_job(tree, grown, ["a", "b", "c"])
    moved = [j for j in before if after[j] != before[j]]
    assert {next(iter(after[j])) for j in moved} == {"c"} and len(moved) == 2  # only to the newcomer, its share


def test_a_lost_lane_is_re_pinned_and_every_request_still_has_one_lane():
    tree, _ = jobs_tree()
    first = plan(tree, ["a", "b", "c"], {})
    shrunk = plan(tree, ["a", "b"], first.pins)
    per_job = lanes_by_job(tree, shrunk, ["a", "b"])
    assert all(len(ls) == 1 and ls <= {"a", "b"} for ls in per_job.values())
    kept = {j for j, ls in lanes_by_job(tree, first, ["a", "b", "c"]).items() if ls <= {"a", "b"}}
    assert all(per_job[j] == lanes_by_job(tree, first, ["a", "b", "c"])[j] for j in kept)


def test_lane_scanners_hand_out_each_request_once_per_lane():
    tree, _ = jobs_tree()
    scanners = LaneScanners(tree)
    scanners.set_lanes(["a", "b", "c"])
    seen: dict[int, str] = {}
    while len(tree):
        for lane in ["a", "b", "c"]:
            for req, side in scanners.next_requests(lane, 1e9, 16):
                assert req.key not in seen
                seen[req.key] = lane
                scanners.started(lane, req, side)
                scanners.done(lane, req, side)
    assert len(seen) == 180
    assert all(len({seen[k] for k in seen if job_of(k) == j}) == 1 for j in range(6))


def test_compact_tree_keeps_no_prompt_array_while_waiting_and_gives_it_back():
    tree, prompts = jobs_tree(jobs=2, per_job=5)
    reqs = list(tree.iter_subtree(tree.root))
    assert all(isinstance(r.tokens, PromptLength) for r in reqs)
    assert tree.prompt_tokens == sum(len(p) for p in prompts.values())
    for req in reqs:
        tree.remove(req)
        assert req.tokens == array("i", prompts[req.key])  # the root-to-node path is the prompt
    tree.check_integrity()
    assert len(tree) == 0


def test_gateway_helpers():
    assert split_dp_rank("http://10.0.0.1:30001@3") == ("http://10.0.0.1:30001", 3)
    assert split_dp_rank("http://10.0.0.1:30001") == ("http://10.0.0.1:30001", None)
    body = {"input_ids": [[1, 2], [1, 2]], "sampling_params": [{"a": 1}, {"a": 2}], "rid": ["r.0", "r.1"],
            "stream": False, "return_logprob": True}  # fmt: skip
    assert single_bodies(body) == [
        {"input_ids": [1, 2], "sampling_params": {"a": 1}, "rid": "r.0", "stream": False, "return_logprob": True},
        {"input_ids": [1, 2], "sampling_params": {"a": 2}, "rid": "r.1", "stream": False, "return_logprob": True},
    ]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from([1, 5, 40]))
def test_sliced_lanes_hand_out_every_request_once_and_lay_out_whole_only_at_first(seed, layout_slice):
    """Whatever the interleaving of arrivals, removals, requeues, invalidations and a lane joining: every line
    once, pending_order() exact, and no whole layout after the first (a joining lane waits for the slices)."""
    rng = random.Random(seed)
    policy = AdmissionPolicy(PerfModel.preset(), layout_slice=layout_slice, layout_at_once=0)
    lanes = LaneScanners(policy.tree, layout_slice=layout_slice, layout_at_once=0)
    policy.arrival_logs[:] = [lanes.arrivals]
    names = ["a", "b", "c", "d"]
    lanes.set_lanes(names)
    added, removed, taken, key = set(), set(), [], 0

    def add(n: int) -> None:
        nonlocal key
        for _ in range(n):
            policy.add(key, [rng.randint(0, 3) for _ in range(rng.randint(0, 6))], rng.choice([4, 64, 1024]))
            added.add(key)
            key += 1

    add(rng.randint(1, 40))
    for _ in range(300):
        lane = rng.choice(names)
        for req, side in lanes.next_requests(lane, 1e9, rng.randint(1, 4)):
            policy.mark_taken(req, side)
            lanes.started(lane, req, side)
            lanes.done(lane, req, side)
            policy.done(req.key)
            if rng.random() < 0.1:
                policy._insert(req)  # requeued (as policy.requeue does)
                policy.pending[req.key] = req
            else:
                taken.append(req.key)
        if rng.random() < 0.2:
            add(rng.randint(1, 8))
        if rng.random() < 0.05 and policy.pending:
            victim = rng.choice(sorted(policy.pending))
            policy.remove(victim)
            removed.add(victim)
        if rng.random() < 0.1:
            lanes.invalidate()
        if rng.random() < 0.02 and "e" not in names:  # a worker joins: it waits for the slices, nobody stalls
            names.append("e")
            lanes.set_lanes(names)
        listed = [r.key for r in lanes.pending_order() if r.node is not None]
        assert len(listed) == len(set(listed)) and set(listed) == set(policy.pending)
        policy.check_integrity()
    while policy.pending:  # drain: every lane walks what is left
        for lane in names:
            for req, side in lanes.next_requests(lane, 1e9, 8):
                policy.mark_taken(req, side)
                policy.done(req.key)
                taken.append(req.key)
    assert len(taken) == len(set(taken)) and set(taken) == added - removed
    # the first layout (no lane had a cut yet) was whole; later ones were of an empty tree or in slices
    assert lanes.whole_layouts == 1


def test_a_small_tree_is_laid_out_for_the_lanes_at_once_as_before():
    tree, _ = jobs_tree()
    lanes = LaneScanners(tree, layout_slice=10, layout_at_once=4096)
    lanes.set_lanes(["a", "b", "c"])
    lanes.next_requests("a", 1e9, 0)
    expected = cut_by_lane(tree, plan(tree, ["a", "b", "c"], {}), ["a", "b", "c"])
    assert {lane: [r.key for r in s.order] for lane, s in lanes.scanners.items()} == {
        lane: [r.key for r in order] for lane, order in expected.items()
    }
    tree.insert(TreeRequest("new", [1, 2, 3, 4], 8))
    lanes.next_requests("b", 1e9, 0)  # an arrival: laid out again, whole
    assert any(r.key == "new" for s in lanes.scanners.values() for r in s.order)


def test_many_workers_sample_each_new_group_once_from_the_lines_that_arrived():
    """§5.4 samples in many-worker mode (PendingSet.samples_by_lane): the lines already waiting when the lanes
    are set, then only the groups of lines that arrived since the last sample, never the whole tree again."""
    from blendserve.core.dispatch.pending import PendingSet
    from blendserve.core.runtime.base import SamplingParams
    from blendserve.store.dispatch_queries import PendingRow

    pending = PendingSet(PerfModel.preset())
    params = SamplingParams(max_new_tokens=16)

    def add_job(job: int, lines: int, first_id: int) -> None:
        for i in range(lines):
            row = PendingRow(first_id + i, f"batch_{job}", "", "/v1/chat/completions", 0)
            pending.add(row, [7, job] * 50 + [first_id + i, i], params)

    add_job(1, 40, 0)
    add_job(2, 40, 100)
    pending.set_lanes(["a", "b"])
    first = pending.samples_by_lane(cap=8)
    assert {e.row.batch_id for e, _ in first} == {"batch_1", "batch_2"}  # the waiting groups, one pick each
    assert pending.samples_by_lane(cap=8) == []  # nothing arrived since
    add_job(3, 40, 200)
    later = pending.samples_by_lane(cap=8)
    assert [e.row.batch_id for e, _ in later] == ["batch_3"]  # only the new group: the old ones were sampled
    assert all(lane in ("a", "b") for _, lane in first + later)
    pending.policy.check_integrity()


def test_replaced_lane_orders_are_let_go_of_a_slice_per_call():
    """At 1M lines, dropping the old global order and cuts at once took 40 ms of one call: freed in slices."""
    tree, _ = jobs_tree()
    lanes = LaneScanners(tree, layout_slice=10, layout_at_once=0)
    lanes.set_lanes(["a", "b"])
    lanes.next_requests("a", 1e9, 0)  # the first layout, whole
    old = [lanes.order, lanes.scanners["a"].order, lanes.scanners["b"].order]
    tree.insert(TreeRequest("new", [1, 2, 3, 4], 8))
    layouts = lanes.layouts
    while lanes.layouts == layouts:  # the next layout goes on in slices, then is installed
        lanes.next_requests("a", 1e9, 0)
    assert sum(len(order) for order in old) == 2 * 180  # still held: the install freed none of them
    calls = 0
    while any(old) and calls < 100:
        lanes.next_requests("b", 1e9, 0)
        calls += 1
    assert not any(old) and calls >= 2 * 180 // 80  # emptied in place, 8 x layout_slice references a call
    assert not lanes._retired
    assert sum(len(s.order) for s in lanes.scanners.values()) == 181 and len(lanes.order) == 181


def _two_jobs(long_line: bool = True):
    from blendserve.core.dispatch.pending import PendingSet
    from blendserve.core.runtime.base import SamplingParams
    from blendserve.store.dispatch_queries import PendingRow

    pending = PendingSet(PerfModel.preset())
    for job in (1, 2):
        for i in range(40):
            row = PendingRow(100 * job + i, f"batch_{job}", "", "/v1/chat/completions", 0)
            pending.add(row, [7, job] * 50 + [100 * job + i, i], SamplingParams(max_new_tokens=16))
    pending.set_lanes(["a", "b"])

    def add_long_line() -> None:  # ~150 s of weight reads alone: more than all the rest of the work
        row = PendingRow(999, "batch_2", "", "/v1/chat/completions", 0)
        pending.add(row, [7, 2] * 50 + [999, 0], SamplingParams(max_new_tokens=30_000))

    if long_line:
        add_long_line()
    return pending, add_long_line


def test_a_long_line_arriving_starts_at_once_on_its_own_lane():
    """Many workers at scale: a line that arrives waits for the sliced lane layout (seconds at 1M lines) before
    any lane's cut holds it. On the critical path it starts at once, on the lane its subtree is pinned to (the
    other lane's waves leave it), as next_batch does for one worker."""
    pending, add_long_line = _two_jobs(long_line=False)
    pending.next_lane_wave("a", 0, 1e9)  # the first lane layout, whole: subtrees pinned
    lanes = pending.lanes
    assert lanes is not None
    lanes.layout_slice, lanes.layout_at_once = 10, 0  # from here on layouts go in slices, as at scale
    add_long_line()
    own = lanes.pinned_lane(pending.policy.pending[999])
    other = "b" if own == "a" else "a"
    assert own in ("a", "b")
    assert 999 not in [e.row.id for e, _ in pending.next_lane_wave(other, 4, 1e9)]
    wave = pending.next_lane_wave(own, 4, 1e9)
    assert [e.row.id for e, _ in wave][0] == 999 and wave[0][1] == RIGHT and len(wave) == 4
    assert all(r.key != 999 for r in lanes.order)  # the layout that takes it in is still going on
    pending.policy.check_integrity()


def test_lanes_leave_no_stale_entries_in_the_critical_path_queue():
    """Every line added is filed in the queue; with lanes the critical path walk is what drops them once taken
    (before it ran for lanes, the queue kept every line ever dispatched, prompt included)."""
    pending, _ = _two_jobs()
    lanes = ["a", "b"]
    for turn in range(200):
        for entry, _ in pending.next_lane_wave(lanes[turn % 2], 8, 1e9):
            pending.finished(entry)
    assert len(pending) == 0 and len(pending.policy.longest) == 0
