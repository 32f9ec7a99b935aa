"""Subtree affinity: each shared-prefix subtree of the ONE global tree is pinned to one lane (one worker), and
each lane has its own dual scanner, so every worker gets a blended, depth-first stream of its own subtrees.

Partition (plan()): start from the root's children; while the heaviest piece outweighs a lane's fair share
and has children, split it into its children (its prefix is then prefilled once per lane that gets a piece),
plus a piece for the requests that end on it. Pieces go heaviest first to the lane that held them before
(sticky: cached prefixes stay where they are) unless that lane would pass 1.25x its share, else to the
lightest lane. Weight = compute + memory time of the subtree (the perf model's comp and mem).

Each lane's order is the global blend order (ordering.blend_order) restricted to its pieces: one order, cut
by lane, and each lane's DualScanner walks its cut from both ends. No I/O; the loop hands in the lanes."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator, Sequence

from blendserve.core.sched.arrivals import ArrivalLog, without_late
from blendserve.core.sched.layout_job import LayoutJob
from blendserve.core.sched.ordering import STEP_ITEMS, blend_order, plan_splits
from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest
from blendserve.core.sched.scanner import DualScanner, Side, free_retired

STICKY_SLACK = 1.25
MAX_PIECES_PER_LANE = 16
KEYS_PER_STEP = 512  # pieces pinned per step of a lane layout in slices
Lane = Hashable


def node_key(node: Node) -> bytes:
    """A node's prefix (root to the end of its edge), stable across splits and merges elsewhere in the tree."""
    parts, probe = [], node
    while probe is not None and probe.parent is not None:
        parts.append(probe.edge().tobytes())
        probe = probe.parent
    return b"".join(reversed(parts))


class Partition:
    """Which lane each piece of the tree belongs to, from one plan() over the tree as it stood."""

    def __init__(self) -> None:
        self.node_lane: dict[int, Lane] = {}  # id(node) of a piece -> lane
        self.own_lane: dict[int, Lane] = {}  # id(node) of a split node -> lane of the requests ending on it
        self.pins: dict[bytes, Lane] = {}  # node_key -> lane (what the next plan sticks to)
        self.load: dict[Lane, float] = {}
        self.pieces: list[tuple[float, Node, bool]] = []  # held: an id in the maps above stays that node's

    def lane_of(self, node: Node | None, own: bool = True) -> Lane | None:
        if node is not None and own and id(node) in self.own_lane:
            return self.own_lane[id(node)]
        while node is not None:
            lane = self.node_lane.get(id(node))
            if lane is not None:
                return lane
            node = node.parent
        return None


def plan(tree: PrefixTree, lanes: list[Lane], previous: dict[bytes, Lane]) -> Partition:
    part = Partition()
    for _ in plan_steps(tree, lanes, previous, part):
        pass
    return part


def plan_steps(tree: PrefixTree, lanes: list[Lane], previous: dict[bytes, Lane], part: Partition) -> Iterator[int]:
    """plan() a step at a time, filling `part`: yields the work done (nodes or pieces looked at) per step, so a
    lane layout can be done in slices (LaneLayoutJob). The pieces' nodes are held so their ids stay theirs."""
    part.load = {lane: 0.0 for lane in lanes}
    if not lanes or tree.root.n == 0:
        return

    def weight(node: Node) -> float:
        return tree.comp(node) + node.mem

    share = weight(tree.root) / len(lanes)
    pieces: list[tuple[float, Node, bool]] = []  # (weight, node, own requests only)
    stack, looked = [tree.root], 0
    while stack:
        node = stack.pop()
        looked += 1
        if looked % STEP_ITEMS == 0:
            yield STEP_ITEMS
        wants_split = node is tree.root or (weight(node) > share and len(pieces) < MAX_PIECES_PER_LANE * len(lanes))
        if not node.children or not wants_split:
            pieces.append((weight(node), node, False))
            continue
        if node.requests:
            own = sum((r.d_est + r.prompt_len) * tree.comp_per_token + r.mem for r in node.requests)
            pieces.append((own, node, True))
        children = list(node.children.values())
        for start in range(0, len(children), STEP_ITEMS):  # a node of 600k children is many steps, not one
            stack.extend(children[start : start + STEP_ITEMS])
            yield STEP_ITEMS
    runs = []  # sorted a run per step and merged: stable, as one sort is
    for start in range(0, len(pieces), STEP_ITEMS):
        runs.append(sorted(pieces[start : start + STEP_ITEMS], key=_heaviest_first))
        yield len(runs[-1])
    part.pieces = pieces
    for count, (w, node, own_only) in enumerate(heapq.merge(*runs, key=_heaviest_first), 1):
        if count % KEYS_PER_STEP == 0:
            yield STEP_ITEMS  # node_key walks to the root and copies each edge: far more than one item
        key = node_key(node) + (b"#own" if own_only else b"")
        lane = previous.get(key)
        if lane not in part.load or part.load[lane] + w > STICKY_SLACK * share and part.load[lane] > 0:
            lane = min(lanes, key=lambda ln: part.load[ln])
        part.load[lane] += w
        part.pins[key] = lane
        (part.own_lane if own_only else part.node_lane)[id(node)] = lane


def _heaviest_first(piece: tuple[float, Node, bool]) -> float:
    return -piece[0]


def cut_by_lane(tree: PrefixTree, part: Partition, lanes: list[Lane]) -> dict[Lane, list[TreeRequest]]:
    """The global blend order, each request sent to its lane's list (order kept)."""
    orders: dict[Lane, list[TreeRequest]] = {lane: [] for lane in lanes}
    for _ in cut_steps(blend_order(tree, plan_splits(tree)), part, lanes, orders):
        pass
    return orders


def cut_steps(
    order: list[TreeRequest], part: Partition, lanes: list[Lane], orders: dict[Lane, list[TreeRequest]]
) -> Iterator[int]:
    """cut_by_lane() of a given order, STEP_ITEMS requests per step (yields the requests looked at). A node's
    requests stand together in the order (depth-first), so only the last node's lane is remembered: a memo of
    every node grew to a million entries, and its resizes alone took up to 125 ms in one step."""
    spare = orders[lanes[0]]  # a request whose node has no lane (taken, or in no piece)
    last_node: Node | None = None
    last_lane: Lane | None = part.lane_of(None)
    for start in range(0, len(order), STEP_ITEMS):
        chunk = order[start : start + STEP_ITEMS]
        for req in chunk:
            node = req.node
            if node is not last_node:
                last_node, last_lane = node, part.lane_of(node)
            orders.get(last_lane, spare).append(req)
        yield len(chunk)


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
        return lane if lane in self.scanners and lane in self.lanes else None

    def lane_for_removed(self, req: TreeRequest) -> Lane:
        """Lane of a request already out of the tree (a §5.4 sample): by where its prefix still is."""
        lane = self.part.lane_of(self.tree.locate(req.tokens), own=False)
        if lane in self.inflight and lane in self.lanes:
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
