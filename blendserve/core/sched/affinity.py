"""Subtree affinity: each shared-prefix subtree of the ONE global tree is pinned to one lane (one worker), and
each lane has its own dual scanner, so every worker gets a blended, depth-first stream of its own subtrees.

Partition (plan()): start from the root's children; while the heaviest piece outweighs a lane's fair share
and has children, split it into its children (its prefix is then prefilled once per lane that gets a piece),
plus a piece for the requests that end on it. Pieces go heaviest first to the lane that held them before
(sticky: cached prefixes stay where they are) unless that lane would pass 1.25x its share, else to the
lightest lane. Weight = compute + memory time of the subtree (the perf model's comp and mem).

Each lane's order is the global blend order (ordering.blend_order) restricted to its pieces: one order, cut
by lane (cut_by_lane), and each lane's DualScanner walks its cut from both ends (lanes.py). No I/O."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator

from blendserve.core.sched.ordering import STEP_ITEMS, blend_order, plan_splits
from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest

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
