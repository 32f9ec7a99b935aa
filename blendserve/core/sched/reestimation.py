"""Re-estimation of a job's pending lines done in slices (amortised). Pure: slices are counted in requests.

When a job's observed mean moves, every pending line of the job gets a new estimate and its aggregates move up
the tree: O(lines of the job), seconds for a job of a million lines. A job no larger than one slice is
re-estimated at once (as without slices); a larger one is re-estimated a slice per admission call, and the order
is laid out again once all of it is (the caller invalidates the scanner when a job completes). Lines re-estimated
later read the job's estimate of that later time: the freshest there is.
"""

from __future__ import annotations

from collections.abc import Iterable

from blendserve.core.sched.estimates import reestimate
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest


class ReestimateQueue:
    """Jobs whose pending lines wait for a new estimate. `slice_size`: lines per call (None: all at once)."""

    def __init__(self, tree: PrefixTree, slice_size: int | None) -> None:
        self.tree = tree
        self.slice_size = slice_size
        self.waiting: dict[object, list[TreeRequest]] = {}  # job -> its lines still to re-estimate (a snapshot)

    def __len__(self) -> int:
        return sum(len(lines) for lines in self.waiting.values())

    def push(self, group: object, lines: Iterable[TreeRequest]) -> bool:
        """Re-estimate a job's pending lines: at once (True) when they fit in one slice, else queued (False; a job
        already queued starts over with its current lines)."""
        snapshot = list(lines)
        self.waiting.pop(group, None)
        if self.slice_size is None or len(snapshot) <= self.slice_size:
            reestimate(self.tree, snapshot)
            return True
        self.waiting[group] = snapshot
        return False

    def advance(self) -> bool:
        """Re-estimate up to one slice of queued lines, oldest job first. True when a job was completed (its order
        should be laid out again)."""
        budget = self.slice_size if self.slice_size is not None else 1 << 62
        completed = False
        while self.waiting and budget > 0:
            group, lines = next(iter(self.waiting.items()))
            chunk = lines[-budget:]  # from the end: del of a list's tail is cheap
            del lines[len(lines) - len(chunk) :]
            reestimate(self.tree, chunk)
            budget -= len(chunk)
            if not lines:
                del self.waiting[group]
                completed = True
        return completed
