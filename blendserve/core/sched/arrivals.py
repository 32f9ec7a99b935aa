"""The requests that arrived since a layout began: what a scanner's order does not list yet. Pure.

A scanner whose layouts are done in slices (layout_job.py) walks an order laid out from the tree as it stood
when that layout started; requests inserted later wait for the next layout. To say what is pending without
laying out a million lines at once (scanner.pending_order()), it lists its order and then these arrivals, in
arrival order. Each insert is noted in O(1) with its insert number (the tree's `inserts` count before it).

Bounded: entries older than the installed layout are dropped when a layout is installed (`forget_before`), and
when the log outgrows twice what was pending at its last compaction (nothing installed for a long while: a
scanner that is not asked for work) it keeps only the requests still in the tree, each once: amortised O(1) per
insert, and never more than about twice the pending requests plus a floor.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

from blendserve.core.sched.prefix_tree import TreeRequest

COMPACT_FLOOR = 4096  # entries below which the log is never compacted (a small log costs nothing)


class ArrivalLog:
    """Requests noted as they were inserted, with their insert numbers (increasing)."""

    def __init__(self) -> None:
        self._reqs: list[TreeRequest] = []
        self._seqs = array("q")  # insert number of each entry
        self._last = -1  # insert number of the last note
        self._contiguous_from = 0  # every insert from this number to _last was noted
        self._kept = 0  # entries left by the last compaction

    def __len__(self) -> int:
        return len(self._reqs)

    def note(self, req: TreeRequest, seq: int) -> None:
        """`req` was inserted as the tree's insert number `seq` (a requeued request is noted again)."""
        if seq != self._last + 1:
            self._contiguous_from = seq  # inserts before this one went unnoted
        self._last = seq
        self._reqs.append(req)
        self._seqs.append(seq)
        if len(self._reqs) > 2 * self._kept + COMPACT_FLOOR:
            self._compact()

    def covers(self, mark: int, inserts: int) -> bool:
        """Whether every insert numbered from `mark` up to `inserts` (the tree's count now) was noted."""
        return inserts <= mark or (self._last == inserts - 1 and self._contiguous_from <= mark)

    def forget_before(self, mark: int) -> None:
        """Drop the entries inserted before insert number `mark` (a layout that started at `mark` lists them)."""
        cut = bisect_left(self._seqs, mark)
        if cut:
            del self._reqs[:cut], self._seqs[:cut]

    def since(self, mark: int) -> list[TreeRequest]:
        """The requests inserted from insert number `mark` on and still in the tree, once each, in arrival order (a
        request inserted twice, requeued, at its latest insert)."""
        out: list[TreeRequest] = []
        seen: set[int] = set()
        start = bisect_left(self._seqs, mark)
        for i in range(len(self._reqs) - 1, start - 1, -1):  # from the newest: a request's latest insert counts
            req = self._reqs[i]
            if req.node is None or id(req) in seen:
                continue
            seen.add(id(req))
            out.append(req)
        out.reverse()
        return out

    def _compact(self) -> None:
        """Keep only the entries whose request is still in the tree, each at its latest insert."""
        latest: dict[int, int] = {}
        for i, req in enumerate(self._reqs):
            if req.node is not None:
                latest[id(req)] = i
        keep = sorted(latest.values())
        self._reqs = [self._reqs[i] for i in keep]
        self._seqs = array("q", (self._seqs[i] for i in keep))
        self._kept = len(keep)


# Above this many lines in the order, pending_order() does not look for duplicates (a pass over a million scattered
# requests is ~0.4 s of the event loop): the planner samples such a queue (eta.py), and a few lines listed twice
# among that many change nothing it reports.
DEDUPE_LINES = 50_000


def without_late(order: list[TreeRequest], late: list[TreeRequest]) -> list[TreeRequest]:
    """A new list: `order`, then `late`. A layout in slices reads each node when its walk gets there, so it may list
    requests that arrived after it began, and a requeued one may stand where it was taken: each is listed once
    (at the end) when `order` holds at most DEDUPE_LINES lines, and may be listed twice above that."""
    if not late or len(order) > DEDUPE_LINES:
        return order + late
    ids = {id(req) for req in late}
    return [req for req in order if id(req) not in ids] + late
