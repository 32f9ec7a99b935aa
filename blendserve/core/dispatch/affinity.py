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

from collections.abc import Hashable, Sequence

from blendserve.core.sched.ordering import blend_order, plan_splits
from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest
from blendserve.core.sched.scanner import DualScanner, Side

STICKY_SLACK = 1.25
MAX_PIECES_PER_LANE = 16
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
    part.load = {lane: 0.0 for lane in lanes}
    if not lanes or tree.root.n == 0:
        return part

    def weight(node: Node) -> float:
        return tree.comp(node) + node.mem

    share = weight(tree.root) / len(lanes)
    pieces: list[tuple[float, Node, bool]] = []  # (weight, node, own requests only)
    stack = [tree.root]
    while stack:
        node = stack.pop()
        wants_split = node is tree.root or (weight(node) > share and len(pieces) < MAX_PIECES_PER_LANE * len(lanes))
        if not node.children or not wants_split:
            pieces.append((weight(node), node, False))
            continue
        if node.requests:
            own = sum((r.d_est + r.prompt_len) * tree.comp_per_token + r.mem for r in node.requests)
            pieces.append((own, node, True))
        stack.extend(node.children.values())
    for w, node, own_only in sorted(pieces, key=lambda p: -p[0]):
        key = node_key(node) + (b"#own" if own_only else b"")
        lane = previous.get(key)
        if lane not in part.load or part.load[lane] + w > STICKY_SLACK * share and part.load[lane] > 0:
            lane = min(lanes, key=lambda ln: part.load[ln])
        part.load[lane] += w
        part.pins[key] = lane
        (part.own_lane if own_only else part.node_lane)[id(node)] = lane
    return part


def cut_by_lane(tree: PrefixTree, part: Partition, lanes: list[Lane]) -> dict[Lane, list[TreeRequest]]:
    """The global blend order, each request sent to its lane's list (order kept)."""
    orders: dict[Lane, list[TreeRequest]] = {lane: [] for lane in lanes}
    memo: dict[int, Lane | None] = {}
    for req in blend_order(tree, plan_splits(tree)):
        key = id(req.node)
        lane = memo[key] if key in memo else memo.setdefault(key, part.lane_of(req.node))
        orders.get(lane, orders[lanes[0]]).append(req)
    return orders


class LaneScanner(DualScanner):
    """A DualScanner whose order is its lane's cut of the global order (handed in by LaneScanners)."""

    def __init__(self, tree: PrefixTree, owner: LaneScanners, lane: Lane) -> None:
        super().__init__(tree)
        self.owner, self.lane = owner, lane

    def rebuild(self) -> None:
        self.owner.replan()

    def take_order(self, order: list[TreeRequest]) -> None:
        self.order = order
        self.lo, self.hi = 0, len(order) - 1
        self._built_at = self.tree.inserts


class LaneScanners:
    """One scanner per lane over the shared tree, the lanes' KV footprint in flight per side, and the pins."""

    def __init__(self, tree: PrefixTree) -> None:
        self.tree = tree
        self.lanes: list[Lane] = []
        self.scanners: dict[Lane, LaneScanner] = {}
        self.inflight: dict[Lane, dict[Side, float]] = {}
        self.count: dict[Lane, int] = {}
        self.part = Partition()
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

    def invalidate(self) -> None:
        self._stale = True

    def replan(self) -> None:
        self._stale = False
        if not self.lanes:
            return
        self.part = plan(self.tree, self.lanes, self.part.pins)
        orders = cut_by_lane(self.tree, self.part, self.lanes)
        for lane in self.lanes:
            self.scanners[lane].take_order(orders[lane])

    def lane_for_removed(self, req: TreeRequest) -> Lane:
        """Lane of a request already out of the tree (a §5.4 sample): by where its prefix still is."""
        lane = self.part.lane_of(self.tree.locate(req.tokens), own=False)
        if lane in self.inflight and lane in self.lanes:
            return lane
        return min(self.lanes, key=lambda candidate: self.count.get(candidate, 0))

    def next_requests(self, lane: Lane, kv_budget: float, limit: int) -> list[tuple[TreeRequest, Side]]:
        if self._stale or any(s._built_at != self.tree.inserts for s in self.scanners.values() if s.lane in self.lanes):
            self.replan()
        flight = self.inflight[lane]
        return self.scanners[lane].next_requests(kv_budget, flight[Side.LEFT], flight[Side.RIGHT], limit=limit)

    def started(self, lane: Lane, req: TreeRequest, side: Side) -> None:
        self.inflight[lane][side] += req.footprint
        self.count[lane] += 1

    def done(self, lane: Lane, req: TreeRequest, side: Side) -> None:
        self.scanners[lane].done(req)
        self.inflight[lane][side] -= req.footprint
        self.count[lane] -= 1
