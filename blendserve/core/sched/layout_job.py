"""A layout of the blend order done in slices (amortised), so that no single admission call lays out a million
pending requests at once. Pure: the slices are counted in work units, never timed.

A LayoutJob runs ordering.plan_splits_steps() then ordering.blend_order_steps() and stops after about `budget`
units (a unit: one child or one item looked at), to go on at the next call. Meanwhile the scanner's cursors go on
over the order it already has. The tree may change between slices; what that means is in blend_order_steps().
Run to the end in one call, a job lays out exactly what plan_splits() + blend_order() would.
"""

from __future__ import annotations

from collections.abc import Iterator

from blendserve.core.sched.ordering import SplitPlan, blend_order_steps, plan_splits_steps
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest


class LayoutJob:
    """One layout in progress. `started_at` is the tree's insert count when it began: requests inserted since may
    be missing from its order, and the scanner lays out again once this one is in."""

    def __init__(self, tree: PrefixTree, split_budget: float) -> None:
        self.started_at = tree.inserts
        self.plan = SplitPlan()
        self.order: list[TreeRequest] = []
        self.units = 0  # work done so far (the bench reports it)
        self._steps = self._run(tree, split_budget)
        self.done = False

    def _run(self, tree: PrefixTree, split_budget: float) -> Iterator[int]:
        yield from plan_splits_steps(tree, self.plan, split_budget)
        yield from blend_order_steps(tree, self.plan, self.order)

    def advance(self, budget: int | None) -> bool:
        """Do about `budget` units of work (None: all of it). True once the order is complete."""
        if self.done:
            return True
        spent = 0
        for units in self._steps:
            spent += units
            if budget is not None and spent >= budget:
                self.units += spent
                return False
        self.units += spent
        self.done = True
        return True
