"""The pending set: every line waiting to run, in ONE global prefix tree, plus a per-batch index.

What runs next is decided by core.sched.policy.AdmissionPolicy, the same code the simulator's `blendserve`
policy runs (cumulative blend, job-level output-length learning, probes of new jobs, critical path): a simulated
figure is a figure of this code. The policy's tree is a CompactTree (each prompt token held once). With many
workers, per-lane scanners over the same tree take the lines instead (lanes.py). No I/O: the loader fills
it, the loop asks it for waves, the line runner reports back when a line finishes."""

from __future__ import annotations

import dataclasses
import sys
from array import array
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import cast

from blendserve.core.runtime.base import EmbedParams, SamplingParams
from blendserve.core.sched.compact_tree import CompactTree, PromptLength
from blendserve.core.sched.lanes import LaneScanners
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.policy import AdmissionPolicy
from blendserve.core.sched.prefix_tree import TreeRequest
from blendserve.core.sched.sampling import sample_requests
from blendserve.core.sched.scanner import LEFT, Side
from blendserve.store.dispatch_queries import PendingRow


@dataclass(slots=True)
class Entry:
    """One line known to the dispatcher: its row (body dropped once prepared), its runtime parameters, its tree
    request (which holds the prompt tokens, once, as an int32 array) and, with many workers, its lane."""

    row: PendingRow
    params: SamplingParams | EmbedParams
    treq: TreeRequest
    side: Side = LEFT
    free_requeues: int = 0  # failures while the runtime was down, which cost no attempt
    lane: Hashable | None = None

    @property
    def tokens(self) -> array:
        return cast(array, self.treq.tokens)


def _kept_body(row: PendingRow) -> str:
    """A Responses object echoes its request's fields (instructions, metadata, ...): those lines keep their body.
    Every other line drops it once prepared (a retry or a restart re-reads the row)."""
    return row.body if row.endpoint == "/v1/responses" else ""


class PendingSet:
    def __init__(self, perf: PerfModel, pace: bool = True) -> None:
        # each prompt token held once (compact_tree.py)
        self.policy = AdmissionPolicy(perf, tree=CompactTree(perf), pace=pace)
        self.tree = self.policy.tree
        self.scanner = self.policy.scanner
        self.entries: dict[int, Entry] = {}  # pending and in flight, by row id
        self.by_batch: dict[str, set[int]] = {}
        self._arrived: list[TreeRequest] = []  # many workers: lines that arrived, to sample each new group (§5.4)
        self.lanes: LaneScanners | None = None  # many workers: one scanner per lane (lanes.py)
        self._params: dict[SamplingParams | EmbedParams, SamplingParams | EmbedParams] = {}

    def __len__(self) -> int:
        """Lines waiting in the tree (not counting those in flight)."""
        return len(self.tree)

    def __contains__(self, row_id: int) -> bool:
        return row_id in self.entries

    def add(self, row: PendingRow, tokens: Sequence[int], params: SamplingParams | EmbedParams) -> Entry:
        """Memory per pending line: its prompt once (int32 in the tree) and a few small objects; the request body
        is dropped (a retry or a restart re-reads the row), equal params and repeated strings are shared."""
        batch_id, endpoint = sys.intern(row.batch_id), sys.intern(row.endpoint)
        row = dataclasses.replace(row, body=_kept_body(row), batch_id=batch_id, endpoint=endpoint)
        params = self._params.setdefault(params, params) if len(self._params) < 4096 else params
        treq = self.policy.add(row.id, tokens, params.max_new_tokens * params.n, group=row.batch_id)
        entry = Entry(row, params, treq)
        treq.payload = entry
        self.entries[row.id] = entry
        self.by_batch.setdefault(row.batch_id, set()).add(row.id)
        if self.lanes is not None:
            self._arrived.append(treq)
        return entry

    def pending_order(self) -> list[TreeRequest]:
        """Every waiting line once, in the order the scanners will take them (lanes: each lane's in turn), then
        those that arrived since that order's layout began (scanner.pending_order())."""
        if self.lanes is not None and self.lanes.lanes and self.lanes.sliced():
            return self.lanes.pending_order()
        return self.scanner.pending_order()

    @property
    def inflight(self) -> dict[Side, float]:
        """KV footprint in flight per scanner side (lanes keep their own)."""
        return self.policy.inflight_kv

    def pacing_cap(self) -> float:
        """Lines decode pacing allows in flight now (core/sched/pacing.py); inf when pacing is off, when lanes (many
        workers) take the lines (they are not paced), or when there is no long generation to pace against.
        Approximate: the longest pending estimate may be a line already taken."""
        if self.lanes is not None and self.lanes.lanes:
            return float("inf")
        return self.policy.pacer.cap(self.tree.root.d_sum, self.policy.longest.top())

    def next_wave(self, room: int, kv_capacity: float) -> list[tuple[Entry, Side]]:
        """Up to `room` lines to run now, each with its scanner side; they leave the tree (call started() for
        each one that is dispatched, or drop() for one that is not)."""
        picked = self.policy.next_batch(kv_capacity, room)
        return [(cast(Entry, treq.payload), side) for treq, side in picked]

    def started(self, entry: Entry, side: Side) -> None:
        entry.side = side
        if entry.lane is not None and self.lanes is not None:
            self.lanes.started(entry.lane, entry.treq, side)

    def finished(self, entry: Entry) -> None:
        """A started line ended (result, failure or retry): its footprint leaves the running blend."""
        if entry.lane is not None and self.lanes is not None:
            self.lanes.done(entry.lane, entry.treq, entry.side)
            return
        self.policy.done(entry.row.id)

    # ---- many workers: lanes (one per worker), each with its own scanner over its pinned subtrees ----------

    def set_lanes(self, lanes: Sequence[Hashable]) -> None:
        if self.lanes is None:
            scanner = self.policy.scanner
            self.lanes = LaneScanners(self.tree, scanner.layout_slice, scanner.layout_at_once)
            # the lanes take the lines now: the policy's own scanner is no longer asked, its log would only grow
            self.policy.arrival_logs[:] = [self.lanes.arrivals]
            self._arrived = list(self.tree.iter_subtree(self.tree.root))  # lines already waiting: sampled first
        self.lanes.set_lanes(lanes)

    def samples_by_lane(self, cap: int) -> list[tuple[Entry, Hashable]]:
        """§5.4 samples of newly arrived groups, each with the lane its subtree is pinned to."""
        if not self._arrived or self.lanes is None or not self.lanes.lanes:
            return []
        arrived, self._arrived = self._arrived, []
        if not self.lanes.sliced():  # at scale the partition in use pins them (a whole layout here is seconds)
            self.lanes.replan()
        # the groups of the lines that arrived since the last sample, not a walk of the whole tree (1M lines: ~1 s)
        picks = sample_requests(self.tree, cap=max(1, cap), unobserved_only=True, among=arrived)
        for treq in picks:
            self.policy.mark_taken(treq, LEFT)
        return [(cast(Entry, treq.payload), self.lanes.lane_for_removed(treq)) for treq in picks]

    def next_lane_wave(self, lane: Hashable, room: int, kv_capacity: float) -> list[tuple[Entry, Side]]:
        """Up to `room` lines for one lane, from its own dual scanner; they leave the tree like next_wave's. First
        the lane's lines on the critical path (policy.py), each engine holding its share of the pending work."""
        lanes = self.lanes
        assert lanes is not None
        share = 1.0 / max(1, len(lanes.lanes))
        picked = self.policy.critical_path(
            room, share, lanes.scanners[lane], lambda treq: lanes.pinned_lane(treq) in (lane, None)
        )
        picked += lanes.next_requests(lane, kv_capacity, room - len(picked))
        out = []
        for treq, side in picked:
            self.policy.mark_taken(treq, side)
            entry = cast(Entry, treq.payload)
            entry.lane = lane
            out.append((entry, side))
        return out

    def requeue(self, entry: Entry) -> None:
        """Put a line that will be retried back into the tree (unless its batch was forgotten meanwhile)."""
        if entry.row.id in self.entries:
            self.policy.requeue(entry.row.id)

    def drop(self, row_id: int) -> None:
        """The line is done with (landed, failed, cancelled): forget it."""
        entry = self.entries.pop(row_id, None)
        if entry is None:
            return
        if not self.policy.remove(row_id):
            self.policy.done(row_id)
        # Its prompt array (restored when it left the tree, ~4 bytes a token) goes now: the scanner's order may
        # still list the request until its next rebuild, and 1M dispatched lines each keeping ~15 KB grew the
        # process by GBs (bench/scale_server_bench.py, 1M: peak 9.7 GB against 5.8 GB loaded).
        entry.treq.tokens = PromptLength(len(entry.treq.tokens))  # type: ignore[assignment]  # only len() is read
        rows = self.by_batch.get(entry.row.batch_id)
        if rows is not None:
            rows.discard(row_id)
            if not rows:
                del self.by_batch[entry.row.batch_id]

    def forget_batch(self, batch_id: str) -> list[int]:
        """Take a batch's waiting lines out of the tree; returns the ids of its lines still in flight."""
        in_flight = []
        for row_id in list(self.by_batch.get(batch_id, ())):
            entry = self.entries.get(row_id)
            if entry is None:
                continue
            if entry.treq.node is not None:
                self.drop(row_id)
            else:
                in_flight.append(row_id)
        return in_flight

    def batch_ids(self) -> set[str]:
        """Batches with lines waiting or in flight here."""
        return set(self.by_batch)

    def batch_idle(self, batch_id: str) -> bool:
        """No line of the batch is waiting or in flight here."""
        return not self.by_batch.get(batch_id)

    def learn(self, entry: Entry, output_tokens: int) -> None:
        """A line finished with this many output tokens per copy: its job and subtree learn (call before drop)."""
        self.policy.observe(entry.row.id, output_tokens)
        if self.lanes is not None:
            self.lanes.invalidate()
