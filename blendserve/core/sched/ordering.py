"""Layer-wise sort and conditional split (BlendServe paper §5.1-5.2, Alg. 1-2). Pure.

blend_order() lays the pending requests out depth-first with every node's children sorted by density rho,
compute-heavy on the left; a few mixed nodes are split in two (their prefix is then prefilled twice) when that
moves memory-heavy work to the right, within a recompute budget that keeps >= 99% of prefix sharing.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest

STEP_ITEMS = 4096  # children or items looked at per step of a layout done in slices (layout_job.py)
NODE_UNITS = 8  # what visiting an inner node costs besides its items (a generator, a list, a sort), in items


@dataclass
class SplitPlan:
    # id(node) -> node of split nodes: the plan holds them so that an id cannot be reused by a new node while a
    # layout done in slices (layout_job.py) still reads the plan
    nodes: dict[int, Node] = field(default_factory=dict)
    recompute_tokens: int = 0
    budget_tokens: float = 0.0


def req_comp_tokens(req: TreeRequest) -> float:
    node = req.node
    unique = node.edge_len() / node.n if node is not None and node.n else 0.0
    return unique + req.d_est


def plan_splits(tree: PrefixTree, budget_fraction: float = 0.01) -> SplitPlan:
    """Greedy conditional split: nodes whose children straddle the root's rho, best benefit per recomputed
    token first, while recomputed prefix tokens stay within budget_fraction of the tokens sharing saves."""
    plan = SplitPlan()
    for _ in plan_splits_steps(tree, plan, budget_fraction):
        pass
    return plan


def plan_splits_steps(tree: PrefixTree, plan: SplitPlan, budget_fraction: float = 0.01) -> Iterator[int]:
    """plan_splits() one node at a time, filling `plan`: yields the work done (children looked at) per node, so
    a caller can stop after a budget and go on later (layout_job.py)."""
    plan.budget_tokens = budget_fraction * tree.sharing_saved_tokens()
    if plan.budget_tokens <= 0 or tree.root.mem <= 0:
        return
    target = tree.rho(tree.root)
    cpt, inf = tree.comp_per_token, float("inf")
    candidates = []
    stack = [c for c in tree.root.children.values() if c.children]  # leaves can never be split
    while stack:
        node = stack.pop()
        children = list(node.children.values())
        # the children's mem at/above and below the target; int 0 + float, as sum() adds
        hi_mem = 0.0
        lo_mem = 0.0
        has_hi = has_lo = False
        for start in range(0, len(children), STEP_ITEMS):  # a node of 600k children is many steps, not one
            chunk = children if len(children) <= STEP_ITEMS else children[start : start + STEP_ITEMS]
            stack += [c for c in chunk if c.children]
            for c in chunk:  # tree.rho, inlined: this loop visits every child of every inner node
                mem = c.mem
                rho = (c.tok + c.d_sum) * cpt / mem if mem > 0 else inf
                if rho >= target:
                    hi_mem, has_hi = hi_mem + mem, True
                else:
                    lo_mem, has_lo = lo_mem + mem, True
            yield len(chunk)
        if len(children) < 2 or not has_hi or not has_lo:
            continue
        moved = min(hi_mem, lo_mem)
        cost = node.depth_tokens()
        candidates.append((moved / max(1, cost), cost, node))
    runs = []  # sorted a run of STEP_ITEMS per step and merged (stable, as one sort is)
    for start in range(0, len(candidates), STEP_ITEMS):
        runs.append(sorted(candidates[start : start + STEP_ITEMS], key=_by_benefit))
        yield len(runs[-1])
    for count, (_, cost, node) in enumerate(heapq.merge(*runs, key=_by_benefit), 1):
        if count % STEP_ITEMS == 0:
            yield STEP_ITEMS
        if plan.recompute_tokens + cost > plan.budget_tokens:
            continue
        plan.nodes[id(node)] = node
        plan.recompute_tokens += cost


def _by_benefit(candidate: tuple[float, int, Node]) -> float:
    return -candidate[0]


def blend_order(tree: PrefixTree, plan: SplitPlan | None = None) -> list[TreeRequest]:
    """Depth-first, children sorted by rho descending; split nodes contribute two items to their parent."""
    out: list[TreeRequest] = []
    for _ in blend_order_steps(tree, plan or SplitPlan(), out):
        pass
    return out


def blend_order_steps(tree: PrefixTree, plan: SplitPlan, out: list[TreeRequest]) -> Iterator[int]:
    """blend_order() one inner node at a time, appending to `out`: yields the work done (items sorted) per node.
    Between steps the tree may change (layout_job.py): a node is read when the walk reaches it, removed
    requests are emitted all the same (the scanner skips them) and requests that arrive behind the walk wait
    for the next layout."""
    target = tree.rho(tree.root) if tree.root.mem > 0 else 1.0
    yield from _emit(tree, tree.root, None, plan, target, out)


Items = list[tuple[float, object]]  # (rho, a request or (child, its group of a split or None, carries own requests))
SplitGroups = tuple[list[Node], float, list[Node], float]  # children at/above the target rho, theirs; below, theirs


def _items(tree: PrefixTree, children: list[Node], own: list[TreeRequest], splits: dict[int, SplitGroups]) -> Items:
    """The node's own requests and `children` (split children as their two groups, from `splits`), by rho
    descending (a stable sort: ties keep this order, own requests first)."""
    cpt, inf = tree.comp_per_token, float("inf")
    items: Items = [(cpt * req_comp_tokens(req) / req.mem if req.mem else inf, req) for req in own]
    if not splits:  # the common case: one item per child, tree.rho inlined (every child of every inner node)
        items += [((c.tok + c.d_sum) * cpt / c.mem if c.mem > 0 else inf, (c, None, True)) for c in children]
    else:
        for child in children:
            groups = splits.get(id(child))
            if groups is not None:
                hi, hi_rho, lo, lo_rho = groups
                items.append((hi_rho, (child, hi, True)))
                items.append((lo_rho, (child, lo, False)))
            else:
                mem = child.mem
                items.append(((child.tok + child.d_sum) * cpt / mem if mem > 0 else inf, (child, None, True)))
    items.sort(key=_RHO, reverse=True)  # = sort(key=-rho): reverse keeps a stable sort's order among ties
    return items


def _split_groups(tree: PrefixTree, node: Node, target: float) -> Generator[int, None, SplitGroups]:
    """A split node's children at or above the target rho and below it, with each group's rho: a chunk of
    children per step (a split node may have hundreds of thousands). Sums add in child order, as sum() would."""
    groups: tuple[list[Node], list[Node]] = ([], [])
    comp: list[float] = [0, 0]  # int 0 + float, as sum() starts
    mem: list[float] = [0, 0]
    children = list(node.children.values())
    for start in range(0, len(children), STEP_ITEMS):
        chunk = children[start : start + STEP_ITEMS]
        for r, c in _child_rhos(tree, chunk):
            side = 0 if r >= target else 1
            groups[side].append(c)
            comp[side] += c.tok + c.d_sum
            mem[side] += c.mem
        yield len(chunk)
    cpt, inf = tree.comp_per_token, float("inf")
    hi_rho = comp[0] * cpt / mem[0] if mem[0] > 0 else inf
    lo_rho = comp[1] * cpt / mem[1] if mem[1] > 0 else inf
    return groups[0], hi_rho, groups[1], lo_rho


def _item_runs(
    tree: PrefixTree, children: list[Node], own: list[TreeRequest], plan: SplitPlan, target: float
) -> Generator[int, None, list[Items]]:
    """_items() of a wide node (more than STEP_ITEMS own requests and children) as sorted runs of at most
    STEP_ITEMS items, one run per step; merged they are what one sort of all of them gives."""
    splits: dict[int, SplitGroups] = {}
    runs = []
    for start in range(0, len(own), STEP_ITEMS):
        runs.append(_items(tree, [], own[start : start + STEP_ITEMS], splits))
        yield len(runs[-1])
    for start in range(0, len(children), STEP_ITEMS):
        chunk = children[start : start + STEP_ITEMS]
        for child in chunk:
            if id(child) in plan.nodes:
                splits[id(child)] = yield from _split_groups(tree, child, target)
        runs.append(_items(tree, chunk, [], splits))
        yield len(runs[-1])
    return runs


def _drain(run: list[tuple[float, object]]) -> Iterator[tuple[float, object]]:
    """A sorted run's items in order, each let go of as it is taken: a wide node's hundreds of thousands of items
    are freed along the slices that emit them, not all at once in the slice that finishes the node."""
    run.reverse()
    while run:
        yield run.pop()


_RHO = itemgetter(0)  # items by rho, descending: sort and merge with reverse=True keep ties in order, stable


def _child_rhos(tree: PrefixTree, children) -> list[tuple[float, Node]]:
    cpt, inf = tree.comp_per_token, float("inf")
    return [((c.tok + c.d_sum) * cpt / c.mem if c.mem > 0 else inf, c) for c in children]


def _emit(
    tree: PrefixTree,
    node: Node,
    only: list[Node] | None,
    plan: SplitPlan,
    target: float,
    out: list[TreeRequest],
    own: bool = True,
) -> Iterator[int]:
    if not node.children and only is None:  # a leaf (most nodes): its own requests, nothing to sort
        if own:
            out.extend(node.requests)
        return
    reqs = node.requests if own else []
    children = list(only if only is not None else node.children.values())
    if len(reqs) + len(children) <= STEP_ITEMS:  # one sorted run: all but the widest nodes, no generator more
        splits: dict[int, SplitGroups] = {}
        if plan.nodes:
            for split in children:
                if id(split) in plan.nodes:
                    splits[id(split)] = yield from _split_groups(tree, split, target)
        yield len(reqs) + len(children) + NODE_UNITS
        items: Iterable[tuple[float, object]] = _items(tree, children, reqs, splits)  # read after the pause
    else:
        runs = yield from _item_runs(tree, children, reqs, plan, target)
        items = runs[0] if len(runs) == 1 else heapq.merge(*map(_drain, runs), key=_RHO, reverse=True)  # stable
    child: Node  # an item that is not a request: (child, its group of a split or None, carries own requests)
    group: list[Node] | None
    carries_own: bool
    count = 0
    for _, item in items:
        count += 1
        if count == STEP_ITEMS:
            yield count
            count = 0
        if isinstance(item, TreeRequest):
            out.append(item)
            continue
        child, group, carries_own = item  # type: ignore[misc]
        if group is None and not child.children:
            out.extend(child.requests)  # a leaf child: no call needed (most of a big tree)
        else:
            yield from _emit(tree, child, group, plan, target, out, own=carries_own)


def dfs_order(tree: PrefixTree) -> list[TreeRequest]:
    """Plain depth-first order (children by token id): what longest-prefix-match scheduling converges to."""
    out: list[TreeRequest] = []
    stack = [tree.root]
    while stack:
        node = stack.pop()
        out.extend(node.requests)
        stack.extend(node.children[k] for k in sorted(node.children, reverse=True))
    return out


def footprint(req: TreeRequest, comp_tokens: float | None = None) -> float:
    """Average KV tokens a request adds over its life: the prompt tokens it does not share with its subtree
    (shared prefixes sit in the radix cache once) plus half its estimated output. Call before removal.
    `comp_tokens`: req_comp_tokens(req), when the caller has it already."""
    return (req_comp_tokens(req) if comp_tokens is None else comp_tokens) - req.d_est / 2
