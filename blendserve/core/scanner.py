"""Layer-wise sort, conditional split and the dual scanner (BlendServe paper §5, Alg. 1-3). Pure.

blend_order() lays the pending requests out depth-first with every node's children sorted by density rho,
compute-heavy on the left; a few mixed nodes are split in two (their prefix is then prefilled twice) when that
moves memory-heavy work to the right, within a recompute budget that keeps >= 99% of prefix sharing.
DualScanner walks that order from both ends at once, the left cursor feeding compute-heavy work and the right
memory-heavy work, so that the running blend has the remaining tree's density (Alg. 3; see next_requests).

Where the paper is silent:
- split fraction outside [0, 1] (both windows denser, or both sparser, than the root): clipped, so all of the
  budget goes to the side nearer the root's rho; windows of equal rho split the budget evenly;
- rho_root < 1 or above every subtree: same rule, the target is always the REMAINING tree's rho;
- cursors meeting: the order is exhausted; both sides draw from what is left between them;
- the tree changing under the cursors: removed requests (dispatched elsewhere, cancelled) are skipped where they
  stand; new requests make the next call rebuild the order from the pending tree and restart both cursors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from blendserve.core.prefix_tree import Node, PrefixTree, TreeRequest

LEFT, RIGHT = "L", "R"


@dataclass
class SplitPlan:
    nodes: set[int] = field(default_factory=set)  # id(node) of split nodes
    recompute_tokens: int = 0
    budget_tokens: float = 0.0


def _req_comp_tokens(req: TreeRequest) -> float:
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
        items.append((tree.comp_per_token * _req_comp_tokens(req) / req.mem if req.mem else float("inf"), req))
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
        child, group, carries_own = item  # type: ignore[misc]
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


def sample_requests(
    tree: PrefixTree, fraction: float = 0.01, cap: int = 512, unobserved_only: bool = False
) -> list[TreeRequest]:
    """Paper §5.4: a small stratified sample to run first, so output lengths are learned for every shared-prefix
    group before the order matters. Groups are the nodes that hold requests' parents (requests with the same
    shared prefix); each gets max(1, fraction of its size) evenly spaced picks, at most `cap` in all, largest
    groups first. The picks leave the tree."""
    groups: dict[int, list[TreeRequest]] = {}
    for req in tree.iter_subtree(tree.root):
        anchor = req.node.parent if req.node is not None and req.node.parent is not None else req.node
        if unobserved_only and anchor is not None and anchor.obs_n > 0:
            continue  # this group's output lengths are known already
        groups.setdefault(id(anchor), []).append(req)
    picks: list[TreeRequest] = []
    for members in sorted(groups.values(), key=len, reverse=True):
        if len(members) < 2:
            continue  # a group of one teaches nothing about its siblings
        k = max(1, round(fraction * len(members)))
        step = len(members) / k
        picks.extend(members[int(i * step)] for i in range(k))
        if len(picks) >= cap:
            break
    picks = picks[:cap]
    for req in picks:
        req.footprint = footprint(req)
        tree.remove(req)
    return picks


def split_fraction(rho_left: float, rho_right: float, rho_target: float) -> float:
    """Share x of the KV budget for the left cursor so x*rho_L + (1-x)*rho_R = rho_target, clipped to [0,1]
    (so all of it goes to the side nearer the target when the target lies outside both windows; this also
    covers inverted windows after the tree changed). Windows of (nearly) equal rho split evenly."""
    if abs(rho_left - rho_right) <= 1e-9 * max(1.0, abs(rho_left), abs(rho_right)):
        return 0.5
    return min(1.0, max(0.0, (rho_target - rho_right) / (rho_left - rho_right)))


class DualScanner:
    """Two cursors over blend_order(): left takes compute-heavy work, right memory-heavy, each in DFS order."""

    def __init__(self, tree: PrefixTree, window: int = 32, split_budget: float = 0.01, blend: str = "rate") -> None:
        if blend not in ("rate", "kv"):
            raise ValueError("blend is 'rate' (running per-step rates) or 'kv' (Alg. 3 KV split)")
        self.blend = blend
        self.tree = tree
        self.window = window
        self.split_budget = split_budget
        self._built_at = -1
        self.order: list[TreeRequest] = []
        self.lo = 0
        self.hi = -1
        self.last_split = 0.5  # Alg. 3's left share of the KV budget (blend="kv")
        self.plan = SplitPlan()
        self.rate_comp = self.rate_mem = 0.0
        self.taken_rates: dict[object, tuple[float, float]] = {}

    def rebuild(self) -> None:
        self.plan = plan_splits(self.tree, self.split_budget)
        self.order = blend_order(self.tree, self.plan)
        self.lo, self.hi = 0, len(self.order) - 1
        self._built_at = self.tree.inserts

    def invalidate(self) -> None:
        """Estimates changed (observations came in): lay the pending requests out again on the next call."""
        self._built_at = -1

    def remaining(self) -> int:
        return max(0, self.hi - self.lo + 1)

    def _skip_removed(self) -> None:
        while self.lo <= self.hi and self.order[self.lo].node is None:
            self.lo += 1
        while self.hi >= self.lo and self.order[self.hi].node is None:
            self.hi -= 1

    def _window_rho(self, side: str) -> float:
        comp = mem = 0.0
        idx, step, seen = (self.lo, 1, 0) if side == LEFT else (self.hi, -1, 0)
        while seen < self.window and self.lo <= idx <= self.hi:
            req = self.order[idx]
            if req.node is not None:
                comp += _req_comp_tokens(req)
                mem += req.mem
                seen += 1
            idx += step
        return comp * self.tree.comp_per_token / mem if mem > 0 else float("inf")

    def next_requests(
        self, kv_budget: float, inflight_left: float, inflight_right: float, limit: int = 1 << 30
    ) -> list[tuple[TreeRequest, str]]:
        """Requests to admit now, each with its side; taken requests leave the tree. `inflight_*` are the
        caller's sums of footprint() of what it holds per side; call done() when one finishes.

        blend="kv" is Alg. 3 as written: the KV budget is split x : 1-x between the cursors with
        x*rho_L + (1-x)*rho_R = rho_root (windows of the next requests at each end). blend="rate" (default)
        keeps the same goal, "the running blend has the remaining tree's rho", but measures the blend as the
        per-step compute and memory rates of the requests in flight (work / estimated lifetime): KV share is
        a poor proxy for memory time when shared prefixes sit in the cache once, and a short compute-heavy
        request finishes its work long before a long one does (bench numbers in README)."""
        if self._built_at != self.tree.inserts:
            self.rebuild()
        self._skip_removed()
        if self.lo > self.hi:
            return []
        rho_root = self.tree.rho(self.tree.root) if self.tree.root.mem > 0 else 1.0
        budgets = {LEFT: 0.0, RIGHT: 0.0}
        if self.blend == "kv":  # the window scans are Alg. 3's alone: kept off the default path
            x = self.last_split = split_fraction(self._window_rho(LEFT), self._window_rho(RIGHT), rho_root)
            budgets = {LEFT: x * kv_budget - inflight_left, RIGHT: (1 - x) * kv_budget - inflight_right}
        room = kv_budget - inflight_left - inflight_right
        idle = inflight_left + inflight_right == 0
        picked: list[tuple[TreeRequest, str]] = []
        while len(picked) < limit and self.lo <= self.hi:
            side = self._choose_side(budgets, rho_root)
            req = self.order[self.lo] if side == LEFT else self.order[self.hi]
            cost = footprint(req)
            if cost > (room if self.blend == "rate" else budgets[side]) and not (idle and not picked):
                break  # (an idle runtime always gets at least one request, however large)
            self._take(req, side, cost)
            budgets[side] -= cost
            room -= cost
            picked.append((req, side))
        return picked

    def _choose_side(self, budgets: dict[str, float], rho_root: float) -> str:
        if self.blend == "rate":
            return LEFT if self.rate_comp < rho_root * self.rate_mem else RIGHT
        return LEFT if budgets[LEFT] >= budgets[RIGHT] else RIGHT

    def _take(self, req: TreeRequest, side: str, cost: float) -> None:
        life = req.d_est + 1.0  # steps it will hold its place: decode steps plus (about) one of prefill
        comp_rate = _req_comp_tokens(req) * self.tree.comp_per_token / life
        mem_rate = req.mem / life
        self.rate_comp += comp_rate
        self.rate_mem += mem_rate
        self.taken_rates[req.key] = (comp_rate, mem_rate)
        req.footprint = cost
        if side == LEFT:
            self.lo += 1
        else:
            self.hi -= 1
        self.tree.remove(req)
        self._skip_removed()

    def done(self, req: TreeRequest) -> None:
        """A taken request finished (or failed, or went back): its per-step rates leave the running blend."""
        comp_rate, mem_rate = self.taken_rates.pop(req.key, (0.0, 0.0))
        self.rate_comp -= comp_rate
        self.rate_mem -= mem_rate


def footprint(req: TreeRequest) -> float:
    """Average KV tokens a request adds over its life: the prompt tokens it does not share with its subtree
    (shared prefixes sit in the radix cache once) plus half its estimated output. Call before removal."""
    return _req_comp_tokens(req) - req.d_est / 2
