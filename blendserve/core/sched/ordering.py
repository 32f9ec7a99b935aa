"""Layer-wise sort and conditional split (BlendServe paper §5.1-5.2, Alg. 1-2). Pure.

blend_order() lays the pending requests out depth-first with every node's children sorted by density rho,
compute-heavy on the left; a few mixed nodes are split in two (their prefix is then prefilled twice) when that
moves memory-heavy work to the right, within a recompute budget that keeps >= 99% of prefix sharing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest


@dataclass
class SplitPlan:
    nodes: set[int] = field(default_factory=set)  # id(node) of split nodes
    recompute_tokens: int = 0
    budget_tokens: float = 0.0


def req_comp_tokens(req: TreeRequest) -> float:
    node = req.node
    unique = node.edge_len() / node.n if node is not None and node.n else 0.0
    return unique + req.d_est


def plan_splits(tree: PrefixTree, budget_fraction: float = 0.01) -> SplitPlan:
    """Greedy conditional split: nodes whose children straddle the root's rho, best benefit per recomputed
    token first, while recomputed prefix tokens stay within budget_fraction of the tokens sharing saves."""
    plan = SplitPlan(budget_tokens=budget_fraction * tree.sharing_saved_tokens())
    if plan.budget_tokens <= 0 or tree.root.mem <= 0:
        return plan
    target = tree.rho(tree.root)
    candidates = []
    stack = [c for c in tree.root.children.values() if c.children]  # leaves can never be split
    while stack:
        node = stack.pop()
        stack.extend(c for c in node.children.values() if c.children)
        if len(node.children) < 2:
            continue
        rhos = _child_rhos(tree, node.children.values())
        hi = [c for r, c in rhos if r >= target]
        lo = [c for r, c in rhos if r < target]
        if not hi or not lo:
            continue
        moved = min(sum(c.mem for c in hi), sum(c.mem for c in lo))
        cost = node.depth_tokens()
        candidates.append((moved / max(1, cost), cost, node))
    for _, cost, node in sorted(candidates, key=lambda c: -c[0]):
        if plan.recompute_tokens + cost > plan.budget_tokens:
            continue
        plan.nodes.add(id(node))
        plan.recompute_tokens += cost
    return plan


def blend_order(tree: PrefixTree, plan: SplitPlan | None = None) -> list[TreeRequest]:
    """Depth-first, children sorted by rho descending; split nodes contribute two items to their parent."""
    plan = plan or SplitPlan()
    target = tree.rho(tree.root) if tree.root.mem > 0 else 1.0
    out: list[TreeRequest] = []
    _emit(tree, tree.root, None, plan, target, out)
    return out


def _items(
    tree: PrefixTree, node: Node, only: list[Node] | None, own: list[TreeRequest], plan: SplitPlan, target: float
) -> list[tuple[float, object]]:
    items: list[tuple[float, object]] = []
    cpt = tree.comp_per_token
    for req in own:
        items.append((tree.comp_per_token * req_comp_tokens(req) / req.mem if req.mem else float("inf"), req))
    for child in only if only is not None else node.children.values():
        if id(child) in plan.nodes:
            rhos = _child_rhos(tree, child.children.values())
            hi = [c for r, c in rhos if r >= target]
            lo = [c for r, c in rhos if r < target]
            items.append((_group_rho(tree, hi), (child, hi, True)))
            items.append((_group_rho(tree, lo), (child, lo, False)))
        else:
            mem = child.mem
            rho = (child.tok + child.d_sum) * cpt / mem if mem > 0 else float("inf")  # tree.rho, inlined
            items.append((rho, (child, None, True)))
    items.sort(key=lambda it: -it[0])
    return items


def _child_rhos(tree: PrefixTree, children) -> list[tuple[float, Node]]:
    cpt, inf = tree.comp_per_token, float("inf")
    return [((c.tok + c.d_sum) * cpt / c.mem if c.mem > 0 else inf, c) for c in children]


def _group_rho(tree: PrefixTree, nodes: list[Node]) -> float:
    mem = sum(n.mem for n in nodes)
    comp = sum(n.tok + n.d_sum for n in nodes) * tree.comp_per_token
    return comp / mem if mem > 0 else float("inf")


def _emit(
    tree: PrefixTree,
    node: Node,
    only: list[Node] | None,
    plan: SplitPlan,
    target: float,
    out: list[TreeRequest],
    own: bool = True,
) -> None:
    if not node.children and only is None:  # a leaf (most nodes): its own requests, nothing to sort
        if own:
            out.extend(node.requests)
        return
    for _, item in _items(tree, node, only, node.requests if own else [], plan, target):
        if isinstance(item, TreeRequest):
            out.append(item)
            continue
        child, group, carries_own = cast(tuple[Node, "list[Node] | None", bool], item)
        if group is None and not child.children:
            out.extend(child.requests)  # a leaf child: no call needed (most of a big tree)
        else:
            _emit(tree, child, group, plan, target, out, own=carries_own)


def dfs_order(tree: PrefixTree) -> list[TreeRequest]:
    """Plain depth-first order (children by token id): what longest-prefix-match scheduling converges to."""
    out: list[TreeRequest] = []
    stack = [tree.root]
    while stack:
        node = stack.pop()
        out.extend(node.requests)
        stack.extend(node.children[k] for k in sorted(node.children, reverse=True))
    return out


def footprint(req: TreeRequest) -> float:
    """Average KV tokens a request adds over its life: the prompt tokens it does not share with its subtree
    (shared prefixes sit in the radix cache once) plus half its estimated output. Call before removal."""
    return req_comp_tokens(req) - req.d_est / 2
