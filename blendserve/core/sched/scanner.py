"""The dual scanner (BlendServe paper §5.3, Alg. 3). Pure. (Stratified sampling, §5.4, is in sampling.py.)

DualScanner walks the order of ordering.blend_order() from both ends at once, the left cursor feeding
compute-heavy work and the right memory-heavy work. Three blends decide which cursor takes the next request:
- "rate" (default): the running per-step rates of the requests in flight (work / estimated lifetime): a long
  generation's memory time is spread over its lifetime, as the engine spends it;
- "cumulative": the left cursor while sum comp(admitted) < rho * sum mem(admitted), with rho the density
  of everything (admitted + pending): every prefix of the admission order carries the workload's density,
  whatever the requests' lifetimes. Admitted requests' shares are corrected to their true output length when
  it is known (settle()); it counts a long generation's memory time as admitted at once;
- "kv": Alg. 3 as written, the KV budget split between the cursors by the windows' densities.

Where the paper is silent:
- split fraction outside [0, 1] (both windows denser, or both sparser, than the root): clipped, so all of the
  budget goes to the side nearer the root's rho; windows of equal rho split the budget evenly;
- rho_root < 1 or above every subtree: same rule, the target is always the REMAINING tree's rho;
- cursors meeting: the order is exhausted; both sides draw from what is left between them;
- the tree changing under the cursors: removed requests (dispatched elsewhere, cancelled) are skipped where they
  stand; new requests make the next call rebuild the order from the pending tree and restart both cursors.
  With `layout_slice` set (the admission policy sets it), a layout larger than one slice is done a slice per call
  (layout_job.py) while the cursors go on over the current order, and replaces it when complete; it is finished
  at once only when the current order has nothing left. A tree laid out within one slice, or of at most
  `layout_at_once` pending lines, behaves as without.
- what is pending (pending_order()): with layouts in slices, the order the cursors walk now and then the requests
  that arrived since its layout began (the ArrivalLog the admission policy feeds), never a layout at once.
"""

from __future__ import annotations

from enum import StrEnum

from blendserve.core.sched.arrivals import ArrivalLog, without_late
from blendserve.core.sched.layout_job import LayoutJob
from blendserve.core.sched.ordering import SplitPlan, blend_order, footprint, plan_splits, req_comp_tokens
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest


class Side(StrEnum):
    """Which cursor admitted a request: LEFT feeds compute-heavy work, RIGHT memory-heavy work."""

    LEFT = "L"
    RIGHT = "R"


LEFT, RIGHT = Side.LEFT, Side.RIGHT
BLENDS = ("cumulative", "rate", "kv")
# the simulator's blendserve and the live dispatcher alike (AdmissionPolicy). "rate", chosen on the paper suite (a
# tie there) and multibatch seeds 5-6 (overlapped: 1.223x DFS vs 1.162x cumulative), none of them reported seeds
DEFAULT_BLEND = "rate"


def split_fraction(rho_left: float, rho_right: float, rho_target: float) -> float:
    """Share x of the KV budget for the left cursor so x*rho_L + (1-x)*rho_R = rho_target, clipped to [0,1]
    (so all of it goes to the side nearer the target when the target lies outside both windows; this also
    covers inverted windows after the tree changed). Windows of (nearly) equal rho split evenly."""
    if abs(rho_left - rho_right) <= 1e-9 * max(1.0, abs(rho_left), abs(rho_right)):
        return 0.5
    return min(1.0, max(0.0, (rho_target - rho_right) / (rho_left - rho_right)))


def free_retired(retired: list[list[TreeRequest]], budget: int) -> None:
    """Drop up to `budget` references held by replaced orders, emptied lists leaving `retired` (cheap decrefs,
    some frees: a million at once is tens of ms on one call)."""
    while retired and budget > 0:
        old = retired[-1]
        cut = min(budget, len(old))
        del old[len(old) - cut :]
        budget -= cut
        if not old:
            retired.pop()


class DualScanner:
    """Two cursors over blend_order(): left takes compute-heavy work, right memory-heavy, each in DFS order."""

    def __init__(
        self,
        tree: PrefixTree,
        window: int = 32,
        split_budget: float = 0.01,
        blend: str = DEFAULT_BLEND,
        layout_slice: int | None = None,
        layout_at_once: int = 0,
    ) -> None:
        if blend not in BLENDS:
            raise ValueError(f"blend is one of {BLENDS}: cumulative density, running rates, or Alg. 3 KV split")
        self.blend = blend
        self.tree = tree
        self.window = window
        self.split_budget = split_budget
        self.layout_slice = layout_slice  # work units of layout per call (None: every layout at once)
        self.layout_at_once = layout_at_once  # a tree of at most this many pending lines is laid out at once
        self._job: LayoutJob | None = None
        self._retired: list[list[TreeRequest]] = []  # replaced orders, let go of a slice per call
        self.layouts = 0  # layouts installed (the bench reports them)
        self._built_at = -1  # the tree's insert count the order is current for; -1: estimates changed since
        self._order_from = 0  # the tree's insert count when the order's layout began: later arrivals may be missing
        self.arrivals = ArrivalLog()  # inserts, as the admission policy notes them (pending_order())
        self.order: list[TreeRequest] = []
        self.lo = 0
        self.hi = -1
        self.last_split = 0.5  # Alg. 3's left share of the KV budget (blend="kv")
        self.plan = SplitPlan()
        self.rate_comp = self.rate_mem = 0.0
        self.taken_rates: dict[object, tuple[float, float]] = {}
        self.cum_comp = self.cum_mem = 0.0  # blend="cumulative": shares of everything admitted so far
        self.taken_shares: dict[object, tuple[float, float, float, int]] = {}  # key -> comp, mem, unique, prompt

    def rebuild(self) -> None:
        """Lay the order out again now, whole."""
        self._job = None
        self.plan = plan_splits(self.tree, self.split_budget)
        self.order = blend_order(self.tree, self.plan)
        self.lo, self.hi = 0, len(self.order) - 1
        self._built_at = self._order_from = self.tree.inserts
        self.arrivals.forget_before(self._order_from)
        self.layouts += 1

    def invalidate(self) -> None:
        """Estimates changed (observations came in): lay the pending requests out again on the next call (a
        layout in progress read the old estimates: it is dropped)."""
        self._built_at = -1
        self._job = None

    def _refresh(self) -> None:
        """Lay out again if requests arrived or estimates changed: whole (no layout_slice), else one slice of a
        LayoutJob, installed when complete; finished at once when the current order has nothing left."""
        if self._retired:
            self._free_retired()
        if self._built_at == self.tree.inserts:
            return
        if not self._sliced():
            self.rebuild()
            return
        if self._job is None:
            self._job = LayoutJob(self.tree, self.split_budget)
        self._skip_removed()
        if not self._job.advance(None if self.lo > self.hi else self.layout_slice):
            return
        job, self._job = self._job, None
        self._retired.append(self.order)  # its last references to lines that left: freed in slices, not here
        self.plan, self.order = job.plan, job.order
        self.lo, self.hi = 0, len(job.order) - 1
        self._built_at = self._order_from = job.started_at
        self.arrivals.forget_before(job.started_at)
        self.layouts += 1
        self._skip_removed()
        if self.lo > self.hi and self._built_at != self.tree.inserts:
            self.rebuild()  # requests arrived behind the job and nothing else is left to serve

    def _sliced(self) -> bool:
        """Whether layouts are done in slices now (layout_slice set and the tree above layout_at_once)."""
        return self.layout_slice is not None and len(self.tree) > self.layout_at_once

    def _free_retired(self) -> None:
        free_retired(self._retired, 8 * (self.layout_slice or 0))

    def remaining(self) -> int:
        return max(0, self.hi - self.lo + 1)

    def _skip_removed(self) -> None:
        while self.lo <= self.hi and self.order[self.lo].node is None:
            self.lo += 1
        while self.hi >= self.lo and self.order[self.hi].node is None:
            self.hi -= 1

    def _window_rho(self, side: Side) -> float:
        comp = mem = 0.0
        idx, step, seen = (self.lo, 1, 0) if side == LEFT else (self.hi, -1, 0)
        while seen < self.window and self.lo <= idx <= self.hi:
            req = self.order[idx]
            if req.node is not None:
                comp += req_comp_tokens(req)
                mem += req.mem
                seen += 1
            idx += step
        return comp * self.tree.comp_per_token / mem if mem > 0 else float("inf")

    def next_requests(
        self, kv_budget: float, inflight_left: float, inflight_right: float, limit: int = 1 << 30
    ) -> list[tuple[TreeRequest, Side]]:
        """Requests to admit now, each with its side; taken requests leave the tree. `inflight_*` are the
        caller's sums of footprint() of what it holds per side; call done() when one finishes.

        blend="cumulative" takes the left cursor while the admitted requests' compute is below the whole
        workload's density times their memory time, else the right one; the KV room only throttles.
        blend="kv" is Alg. 3 as written: the KV budget is split x : 1-x between the cursors with
        x*rho_L + (1-x)*rho_R = rho_root (windows of the next requests at each end). blend="rate" (default)
        keeps the same goal, "the running blend has the remaining tree's rho", but measures the blend as the
        per-step compute and memory rates of the requests in flight (work / estimated lifetime): KV share is
        a poor proxy for memory time when shared prefixes sit in the cache once, and a short compute-heavy
        request finishes its work long before a long one does (bench numbers in README)."""
        self._refresh()
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
        picked: list[tuple[TreeRequest, Side]] = []
        while len(picked) < limit and self.lo <= self.hi:
            side = self._choose_side(budgets, rho_root)
            req = self.order[self.lo] if side == LEFT else self.order[self.hi]
            comp_tokens = req_comp_tokens(req)  # once: the footprint and take_out_of_order both need it
            cost = footprint(req, comp_tokens)
            if cost > (budgets[side] if self.blend == "kv" else room) and not (idle and not picked):
                break  # (an idle runtime always gets at least one request, however large)
            self._take(req, side, cost, comp_tokens)
            budgets[side] -= cost
            room -= cost
            picked.append((req, side))
        return picked

    def _choose_side(self, budgets: dict[Side, float], rho_root: float) -> Side:
        if self.blend == "cumulative":
            root = self.tree.root
            comp = self.cum_comp + self.tree.comp(root)
            mem = self.cum_mem + root.mem
            target = comp / mem if mem > 0 else rho_root
            return LEFT if self.cum_comp < target * self.cum_mem else RIGHT
        if self.blend == "rate":
            return LEFT if self.rate_comp < rho_root * self.rate_mem else RIGHT
        return LEFT if budgets[LEFT] >= budgets[RIGHT] else RIGHT

    def _take(self, req: TreeRequest, side: Side, cost: float, comp_tokens: float) -> None:
        if side == LEFT:
            self.lo += 1
        else:
            self.hi -= 1
        self.take_out_of_order(req, cost, comp_tokens)
        self._skip_removed()

    def take_out_of_order(self, req: TreeRequest, cost: float | None = None, comp_tokens: float | None = None) -> None:
        """Admit a pending request the cursors did not choose (a probe): it joins the blend's sums and leaves the
        tree; the cursors skip it where it stands. `comp_tokens`: req_comp_tokens(req), when the caller has it."""
        if comp_tokens is None:
            comp_tokens = req_comp_tokens(req)
        cost = footprint(req, comp_tokens) if cost is None else cost
        life = req.d_est + 1.0  # steps it will hold its place: decode steps plus (about) one of prefill
        comp, mem = comp_tokens * self.tree.comp_per_token, req.mem
        comp_rate, mem_rate = comp / life, mem / life
        self.rate_comp += comp_rate
        self.rate_mem += mem_rate
        self.taken_rates[req.key] = (comp_rate, mem_rate)
        self.cum_comp += comp
        self.cum_mem += mem
        self.taken_shares[req.key] = (comp, mem, comp_tokens - req.d_est, len(req.tokens))
        req.footprint = cost
        self.tree.remove(req)

    def settle(self, key: object, output_tokens: int) -> None:
        """A taken request's true output length is known: its share of the cumulative blend becomes the truth
        (the estimate it was admitted with is forgotten). Unknown keys are ignored."""
        share = self.taken_shares.pop(key, None)
        if share is None:
            return
        comp, mem, unique, prompt = share
        d = float(max(1, output_tokens))
        self.cum_comp += (unique + d) * self.tree.comp_per_token - comp
        self.cum_mem += (prompt * d + d * d / 2.0) * self.tree.mem_per_token - mem

    def done(self, req: TreeRequest) -> None:
        """A taken request finished (or failed, or went back): its per-step rates leave the running blend."""
        self.taken_shares.pop(req.key, None)  # its admitted share stays in the cumulative sums
        comp_rate, mem_rate = self.taken_rates.pop(req.key, (0.0, 0.0))
        self.rate_comp -= comp_rate
        self.rate_mem -= mem_rate

    def pending_order(self) -> list[TreeRequest]:
        """Every pending request, those the cursors have yet to reach, in blend order, then (with layouts in
        slices) those that arrived since that order's layout began, in arrival order; once each up to
        DEDUPE_LINES (without_late). Without slices (or a tree
        of at most layout_at_once lines, or inserts the arrival log was not told of) the order is laid out again
        first, whole, when requests arrived or estimates changed, as the next next_requests() call would. Taken
        requests may still be listed: their node is None."""
        inserts = self.tree.inserts
        if self._built_at != inserts and not (self._sliced() and self.arrivals.covers(self._order_from, inserts)):
            self.rebuild()
        window = self.order[self.lo : self.hi + 1]
        if self._order_from == inserts:
            return window
        return without_late(window, self.arrivals.since(self._order_from))
