"""Lanes for many workers: one dual scanner per lane (worker) over the ONE global tree, each walking its lane's cut
of one global blend order (the partition and the cut: affinity.py), laid out a slice per call at scale. No I/O; the
loop hands in the lanes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from blendserve.core.sched.affinity import Lane, Partition, cut_steps, plan_steps
from blendserve.core.sched.arrivals import ArrivalLog, without_late
from blendserve.core.sched.layout_job import LayoutJob
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sched.scanner import DualScanner, Side, free_retired


class LaneLayoutJob(LayoutJob):
    """A lane layout in slices: the global blend order (LayoutJob), then the partition (plan_steps) and the
    order's cut by lane (cut_steps), so no wave lays out a million lines at once. Run to the end in one call it
    gives what plan() + cut_by_lane() give. `orders`: the cut by lane; `part`: pinned after `pins`."""

    def __init__(self, tree: PrefixTree, lanes: list[Lane], pins: dict[bytes, Lane]) -> None:
        self.lanes, self.pins, self.part = list(lanes), pins, Partition()
        self.orders: dict[Lane, list[TreeRequest]] = {lane: [] for lane in self.lanes}
        super().__init__(tree, 0.01)  # plan_splits' default budget, as cut_by_lane lays out

    def _run(self, tree: PrefixTree, split_budget: float) -> Iterator[int]:
        yield from super()._run(tree, split_budget)
        yield from plan_steps(tree, self.lanes, self.pins, self.part)
        yield from cut_steps(self.order, self.part, self.lanes, self.orders)


class LaneScanner(DualScanner):
    """A DualScanner whose order is its lane's cut of the global order (handed in by LaneScanners, which lays
    out for every lane: this scanner never lays out by itself)."""

    def __init__(self, tree: PrefixTree, owner: LaneScanners, lane: Lane) -> None:
        super().__init__(tree)
        self.owner, self.lane = owner, lane
        self.cut_size = -1  # lines of the cut it was last handed; -1: never handed one

    def rebuild(self) -> None:
        self.owner.replan()

    def _refresh(self) -> None:
        """The owner lays out (LaneScanners._refresh) before asking: nothing to do here."""

    def take_order(self, order: list[TreeRequest], laid_out_at: int | None = None) -> None:
        self.order = order
        self.lo, self.hi = 0, len(order) - 1
        self._built_at = self._order_from = self.tree.inserts if laid_out_at is None else laid_out_at
        self.cut_size = len(order)


class LaneScanners:
    """One scanner per lane over the shared tree, the lanes' KV footprint in flight per side, and the pins.

    Layouts (the global order, the partition, the cut) are done in slices like DualScanner's (LaneLayoutJob),
    when `layout_slice` is set and the tree holds more than `layout_at_once` lines: a slice per next_requests()
    while every lane's scanner goes on over its current cut, installed when complete. A layout is finished at
    once only when the asking lane has walked its whole cut (a lane whose cut was empty waits for the slices:
    else it would force a whole layout on every call), or when no lane has had a cut yet (the first layout). A lane
    that joins later waits for the slices (seconds at 1M lines) rather than stall every lane for a whole layout.
    Smaller trees are laid out at once, as without slices. Arrivals since the installed layout began are noted
    in `arrivals` (the admission policy feeds it; pending.py) for pending_order()."""

    def __init__(self, tree: PrefixTree, layout_slice: int | None = None, layout_at_once: int = 0) -> None:
        self.tree, self.layout_slice, self.layout_at_once = tree, layout_slice, layout_at_once
        self.lanes: list[Lane] = []
        self.scanners: dict[Lane, LaneScanner] = {}
        self.inflight: dict[Lane, dict[Side, float]] = {}
        self.count: dict[Lane, int] = {}
        self.part = Partition()
        self.order: list[TreeRequest] = []  # the global order the cuts came from (pending_order())
        self.arrivals = ArrivalLog()
        self.layouts = 0  # layouts installed (the bench reports them)
        self.whole_layouts = 0  # of a tree with lines, each at once: the first, then only below layout_at_once
        self._job: LaneLayoutJob | None = None
        self._retired: list[list[TreeRequest]] = []  # replaced orders and cuts, let go of a slice per call
        self._built_at = -1
        self._stale = True

    def set_lanes(self, lanes: Sequence[Lane]) -> None:
        """The fleet changed: new lanes get scanners, gone lanes stop getting work (their lines in flight still
        report back through done()), and every subtree is re-pinned on the next wave."""
        self.lanes = list(lanes)
        for lane in lanes:
            if lane not in self.scanners:
                self.scanners[lane] = LaneScanner(self.tree, self, lane)
                self.inflight.setdefault(lane, {Side.LEFT: 0.0, Side.RIGHT: 0.0})
                self.count.setdefault(lane, 0)
        self._stale = True
        self._job = None  # cut for the old lanes

    def invalidate(self) -> None:
        """Estimates changed: lay out again (after the layout in progress, which goes on)."""
        self._stale = True

    def sliced(self) -> bool:
        return self.layout_slice is not None and len(self.tree) > self.layout_at_once

    def replan(self) -> None:
        """Lay out for every lane now, whole."""
        self._stale = False
        self._job = None
        if not self.lanes:
            return
        job = LaneLayoutJob(self.tree, self.lanes, self.part.pins)
        job.advance(None)
        self._install(job)
        self.whole_layouts += len(self.tree) > 0

    def _refresh(self, lane: Lane) -> None:
        if self._retired:
            free_retired(self._retired, 8 * (self.layout_slice or 0))
        if not self._stale and self._built_at == self.tree.inserts:
            return
        if not self.sliced() or all(self.scanners[ln].cut_size < 0 for ln in self.lanes):
            self.replan()
            return
        if self._job is None:
            self._job = LaneLayoutJob(self.tree, self.lanes, self.part.pins)
            self._stale = False  # the job reads the estimates as they are now
        scanner = self.scanners[lane]
        scanner._skip_removed()
        drained = scanner.remaining() == 0 and scanner.cut_size > 0
        if self._job.advance(None if drained else self.layout_slice):
            job, self._job = self._job, None
            self._install(job)

    def _install(self, job: LaneLayoutJob) -> None:
        if self.layout_slice is not None:  # the replaced lists' last references: freed in slices (40 ms at 1M)
            self._retired += [self.order, *(self.scanners[lane].order for lane in self.lanes)]
        self.part, self.order = job.part, job.order
        for lane in self.lanes:
            self.scanners[lane].take_order(job.orders[lane], job.started_at)
        self._built_at = job.started_at
        self.arrivals.forget_before(job.started_at)
        self.layouts += 1

    def pending_order(self) -> list[TreeRequest]:
        """Every waiting line: the global order of the installed layout (lines the lanes took are listed with node
        None), then the lines that arrived since it began, in arrival order (once each up to DEDUPE_LINES, as
        arrivals.without_late says). Laid out first, whole,
        only when the arrival log cannot tell (inserts it was not told of) or nothing was ever laid out."""
        if not self.arrivals.covers(self._built_at, self.tree.inserts) or self._built_at < 0:
            self.replan()
        if self._built_at == self.tree.inserts:
            return list(self.order)
        return without_late(self.order, self.arrivals.since(self._built_at))

    def pinned_lane(self, req: TreeRequest) -> Lane | None:
        """The lane a pending line's subtree is pinned to; None when it is no current lane's (arrived since)."""
        lane = self.part.lane_of(req.node)
        return lane if lane in self.lanes else None  # set_lanes gives every current lane its scanner

    def lane_for_removed(self, req: TreeRequest) -> Lane:
        """Lane of a request already out of the tree (a §5.4 sample): by where its prefix still is."""
        lane = self.part.lane_of(self.tree.locate(req.tokens), own=False)
        if lane in self.lanes:
            return lane
        return min(self.lanes, key=lambda candidate: self.count.get(candidate, 0))

    def next_requests(self, lane: Lane, kv_budget: float, limit: int) -> list[tuple[TreeRequest, Side]]:
        """Up to `limit` requests for `lane` from its scanner (laid out first as _refresh says); they leave the
        tree."""
        self._refresh(lane)
        flight = self.inflight[lane]
        return self.scanners[lane].next_requests(kv_budget, flight[Side.LEFT], flight[Side.RIGHT], limit=limit)

    def started(self, lane: Lane, req: TreeRequest, side: Side) -> None:
        self.inflight[lane][side] += req.footprint
        self.count[lane] += 1

    def done(self, lane: Lane, req: TreeRequest, side: Side) -> None:
        self.scanners[lane].done(req)
        self.inflight[lane][side] -= req.footprint
        self.count[lane] -= 1
