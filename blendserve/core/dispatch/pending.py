"""The pending set: every line waiting to run, in ONE global prefix tree, plus a per-batch index.

It owns the tree, the dual scanner that picks what runs next, the per-side KV footprint of what is in flight and
the output-length learning. No I/O: the loader fills it, the loop asks it for waves, the line runner reports
back when a line finishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from blendserve.core.runtime.base import EmbedParams, SamplingParams
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sched.scanner import LEFT, RIGHT, DualScanner, Side, sample_requests
from blendserve.store.dispatch_queries import PendingRow

REBUILD_MIN_OBSERVATIONS = 16


@dataclass
class Entry:
    """One line known to the dispatcher: its row, its prompt tokens, its runtime parameters, its tree node."""

    row: PendingRow
    tokens: list[int]
    params: SamplingParams | EmbedParams
    treq: TreeRequest
    side: Side = LEFT
    free_requeues: int = 0  # failures while the runtime was down, which cost no attempt


class PendingSet:
    def __init__(self, perf: PerfModel) -> None:
        self.tree = PrefixTree(perf)
        self.scanner = DualScanner(self.tree)
        self.entries: dict[int, Entry] = {}  # pending and in flight, by row id
        self.by_batch: dict[str, set[int]] = {}
        self.inflight: dict[Side, float] = {LEFT: 0.0, RIGHT: 0.0}  # KV footprint per scanner side
        self._needs_sample = False  # new lines arrived: run a small sample of each new group first
        self._observed = 0
        self._next_rebuild = REBUILD_MIN_OBSERVATIONS

    def __len__(self) -> int:
        """Lines waiting in the tree (not counting those in flight)."""
        return len(self.tree)

    def __contains__(self, row_id: int) -> bool:
        return row_id in self.entries

    def add(self, row: PendingRow, tokens: list[int], params: SamplingParams | EmbedParams) -> Entry:
        treq = TreeRequest(row.id, tokens, params.max_new_tokens * params.n)
        entry = Entry(row, tokens, params, treq)
        treq.payload = entry
        self.entries[row.id] = entry
        self.by_batch.setdefault(row.batch_id, set()).add(row.id)
        self.tree.insert(treq)
        self._needs_sample = True
        return entry

    def next_wave(self, room: int, kv_capacity: float) -> list[tuple[Entry, Side]]:
        """Up to `room` lines to run now, each with its scanner side; they leave the tree (call started() for
        each one that is dispatched, or drop() for one that is not). New groups are sampled first (§5.4)."""
        picked: list[tuple[TreeRequest, Side]] = []
        if self._needs_sample:
            self._needs_sample = False
            picked = [(r, LEFT) for r in sample_requests(self.tree, cap=max(1, room // 2), unobserved_only=True)]
        picked += self.scanner.next_requests(
            kv_capacity, self.inflight[LEFT], self.inflight[RIGHT], limit=room - len(picked)
        )
        return [(cast(Entry, treq.payload), side) for treq, side in picked]

    def started(self, entry: Entry, side: Side) -> None:
        entry.side = side
        self.inflight[side] += entry.treq.footprint

    def finished(self, entry: Entry) -> None:
        """A started line ended (result, failure or retry): its footprint leaves the running blend."""
        self.scanner.done(entry.treq)
        self.inflight[entry.side] -= entry.treq.footprint

    def requeue(self, entry: Entry) -> None:
        """Put a line that will be retried back into the tree (unless its batch was forgotten meanwhile)."""
        if entry.row.id in self.entries and entry.treq.node is None:
            self.tree.insert(entry.treq)

    def drop(self, row_id: int) -> None:
        """The line is done with (landed, failed, cancelled): forget it."""
        entry = self.entries.pop(row_id, None)
        if entry is None:
            return
        if entry.treq.node is not None:
            self.tree.remove(entry.treq)
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
        """Refine the subtree's output-length estimate; re-lay the order each time observations double."""
        self.tree.observe(entry.tokens, output_tokens)
        self._observed += 1
        if self._observed >= self._next_rebuild:
            self._next_rebuild = max(REBUILD_MIN_OBSERVATIONS, int(self._observed * 2))
            self.scanner.invalidate()
