"""When each pending request will run: a replay of the live dispatch over the pending tree. Pure: no I/O, no
clock (times are seconds from "now", which the caller supplies the meaning of).

The replay does what the dispatcher does (core/dispatch/loop.py + scanner.DualScanner, blend="rate"): it keeps
up to `window` requests in flight within the KV budget; whenever one finishes it admits the next from the
left cursor of blend_order() while the running compute rate is below rho_root x the running memory rate, else
from the right cursor. Each request runs for latency_ratio x its modelled GPU time (comp + mem from the perf
model with the tree's output-length estimate); latency_ratio comes from observed results (the caller's online
calibration), so one replay covers concurrency and the runtime's real speed. It does not replay the policy's
critical path nor its decode pacing (pacing.py): with a long generation in flight, lines start in another order,
and paced ones later, than it says.

Cached tokens: a request whose prompt shares a prefix with n-1 other pending requests hits the radix cache for
that prefix unless it is the first of them to run: (n-1)/n of the shared prefix on average, all of it when a
request of the same group already finished (its prefix is likely still cached).

At scale (more than `exact_lines` in the order, default EXACT_LINES) one line in `stride` is replayed, each
standing for its stretch of `stride` lines of the order: its work, prompt and cached tokens count `stride` times,
and the dispatch is scaled down with it (window and KV budget times window'/window, window' = round(window /
stride), at least 1; each unit runs `stride` x window'/window times its line's latency; the lines in flight hold
that share of a slot, their KV and rates). A stretch's lines run in order, so the replay keeps the blend and the
throughput while replaying at most `units` (default SAMPLE_UNITS) units: the cost is bounded whatever the queue.
What it gives up: a batch's line count and tokens are estimates (a sample), a batch with fewer lines than a stride
may not be met at all (the caller says where it is then), and times are sampled at about one line latency x
stride / window (tests/core/test_eta.py: within 2% of the drain of the exact replay on 40k lines)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest

EXACT_LINES = 20_000  # orders up to this long are replayed line by line (~5-20 us a line)
SAMPLE_UNITS = 8_192  # longer ones: about this many sampled lines, each standing for its stretch of the order
MIN_SLOTS = 64  # a sampled replay keeps at least this many slots (or the window): the blend's granularity


@dataclass(frozen=True)
class Running:
    """A request already in flight: seconds it still needs, its per-step rates and KV footprint."""

    remaining_s: float
    comp_rate: float
    mem_rate: float
    kv_tokens: float


@dataclass
class GroupForecast:
    """One group's (a batch's) share of the schedule; times in seconds from now."""

    lines: int = 0
    first_position: int = -1  # index in the replayed dispatch sequence of the group's first request
    first_start_s: float = 0.0
    last_finish_s: float = 0.0
    work_s: float = 0.0  # modelled GPU seconds of its pending requests
    prompt_tokens: int = 0
    cached_tokens: float = 0.0
    sides: dict[str, int] = field(default_factory=lambda: {"L": 0, "R": 0})


@dataclass
class ScheduleForecast:
    lines: int = 0
    work_s: float = 0.0
    drain_s: float = 0.0  # when the last pending request finishes
    stride: int = 1  # lines of the order each replayed line stood for (above 1: a sample, module docstring)
    sides: dict[str, int] = field(default_factory=lambda: {"L": 0, "R": 0})
    groups: dict[str, GroupForecast] = field(default_factory=dict)

    def groups_in_order(self) -> list[tuple[str, GroupForecast]]:
        """Groups by the position of their first request (the order they start in)."""
        return sorted(self.groups.items(), key=lambda kv: kv[1].first_position)


def shared_prefix(req: TreeRequest, memo: dict[int, tuple[int, int, bool]] | None = None) -> tuple[int, int, bool]:
    """(tokens of the prompt shared with other pending requests, how many share them, whether a request of
    that group already finished). The deepest node on the request's path that more than one request passes.
    `memo` (by id of the request's node's parent) saves the walk for siblings."""
    node: Node | None = req.node
    start = node.parent if node is not None and node.n < 2 else None
    if memo is not None and start is not None and id(start) in memo:
        return memo[id(start)]
    while node is not None and node.parent is not None and node.n < 2:
        node = node.parent
    found = (0, 1, False) if node is None or node.parent is None else (node.depth_tokens(), node.n, node.obs_n > 0)
    if memo is not None and start is not None:
        memo[id(start)] = found
    return found


def _costs(tree: PrefixTree, live: list[TreeRequest]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per request: modelled compute seconds, memory seconds, lifetime in steps and KV footprint, as
    ordering.req_comp_tokens / ordering.footprint and the scanner's _take compute them (inlined: this runs for
    every pending line on every plan)."""
    cpt = tree.comp_per_token
    comp, mem, life, kv = [], [], [], []
    for req in live:
        node = req.node
        key = node.key  # type: ignore[union-attr]
        edge = len(key) if key is not None else len(node.src) - node.off  # type: ignore[union-attr,arg-type]
        d = req.d_est
        tokens = edge / node.n + d  # type: ignore[union-attr]
        comp.append(tokens * cpt)
        mem.append(req.mem)
        life.append(d + 1.0)
        kv.append(tokens - d / 2)
    return comp, mem, life, kv


def forecast(
    tree: PrefixTree,
    order: Sequence[TreeRequest],
    group_of: Callable[[TreeRequest], str],
    window: int,
    kv_capacity: float,
    latency_ratio: float,
    running: Sequence[Running] = (),
    *,
    exact_lines: int = EXACT_LINES,
    units: int = SAMPLE_UNITS,
) -> ScheduleForecast:
    """Replay dispatch of `order` (blend_order of the pending tree; requests already taken are skipped) behind
    what is `running`, and sum each group's start, finish, work and expected cached tokens. An order longer than
    `exact_lines` is replayed as a sample of about `units` lines (module docstring)."""
    stride = 1 if len(order) <= exact_lines else math.ceil(len(order) / max(1, units))
    live, weights = _sample(order, stride)
    narrowed = min(window, max(MIN_SLOTS, round(window / stride)))
    scale = narrowed / window  # 1.0 when every line is replayed
    comp, mem, life, kv = _costs(tree, live)
    if stride > 1:
        live, weights, comp, mem, life, kv = _split_heavy(units, live, weights, comp, mem, life, kv)
    left_comp = sum(c * w for c, w in zip(comp, weights, strict=True))
    left_mem = sum(m * w for m, w in zip(mem, weights, strict=True))
    # the scanner aims at the tree's rho, which counts each shared prefix once; the per-request sums here do
    # not, so scale them onto the tree's figure once and let the remaining sums track it as requests leave
    bias = tree.rho(tree.root) * left_mem / left_comp if left_comp > 0 and tree.root.mem > 0 else 1.0
    out = ScheduleForecast(stride=stride)
    memo: dict[int, tuple[int, int, bool]] = {}
    heap: list[tuple[float, int, float, float, float, float]] = []  # (finish, seq, comp_rate, mem_rate, kv, slot)
    rate_comp = rate_mem = kv_used = slots = 0.0
    for seq, r in enumerate(running):
        entry = (r.remaining_s, -1 - seq, r.comp_rate * scale, r.mem_rate * scale, r.kv_tokens * scale, scale)
        heapq.heappush(heap, entry)
        rate_comp, rate_mem, kv_used = rate_comp + entry[2], rate_mem + entry[3], kv_used + entry[4]
        slots += scale
    capacity = kv_capacity * scale
    now, lo, hi, seq = 0.0, 0, len(live) - 1, 0
    while lo <= hi:
        left = rate_comp < (bias * left_comp / left_mem if left_mem > 0 else 1.0) * rate_mem
        i = lo if left else hi
        if heap and (slots >= narrowed or kv_used + kv[i] > capacity):
            now, _, c_rate, m_rate, used, slot = heapq.heappop(heap)  # wait for the next finish
            rate_comp, rate_mem, kv_used, slots = rate_comp - c_rate, rate_mem - m_rate, kv_used - used, slots - slot
            continue
        if left:
            lo += 1
        else:
            hi -= 1
        c, m, w = comp[i], mem[i], weights[i]
        left_comp, left_mem = left_comp - c * w, left_mem - m * w
        finish = now + latency_ratio * (c + m) * (w * scale)
        c_rate, m_rate = c / life[i], m / life[i]
        heapq.heappush(heap, (finish, seq, c_rate, m_rate, kv[i], 1.0))
        seq += 1
        rate_comp, rate_mem, kv_used, slots = rate_comp + c_rate, rate_mem + m_rate, kv_used + kv[i], slots + 1.0
        side = "L" if left else "R"
        _charge(out, group_of(live[i]), live[i], side, now, finish, (c + m) * w, memo, w)
    return out


def _split_heavy(units: int, live: list[TreeRequest], weights: list[int], *costs: list[float]) -> tuple:
    """A stretch whose lines' work is more than 1/units of the whole, replayed as that many parallel units of
    its lines (each `weights` split, the costs repeated): a stretch of long generations run end to end in one slot
    would stretch the tail far beyond what the dispatcher, running them side by side, does."""
    comp, mem = costs[0], costs[1]
    work = [(c + m) * w for c, m, w in zip(comp, mem, weights, strict=True)]
    target = sum(work) / max(1, units)
    parts = [min(w, math.ceil(x / target)) if target > 0 else 1 for x, w in zip(work, weights, strict=True)]
    if all(p == 1 for p in parts):
        return (live, weights, *costs)
    index = [i for i, p in enumerate(parts) for _ in range(p)]
    split = [w // p + (j < w % p) for w, p in zip(weights, parts, strict=True) for j in range(p)]
    return ([live[i] for i in index], split, *([column[i] for i in index] for column in costs))


def _sample(order: Sequence[TreeRequest], stride: int) -> tuple[list[TreeRequest], list[int]]:
    """The requests still pending among one line in `stride` (the middle of each stretch; every line when stride
    is 1), and how many lines of the order each stands for."""
    if stride == 1:
        live = [r for r in order if r.node is not None]
        return live, [1] * len(live)
    live, weights = [], []
    for first in range(0, len(order), stride):
        last = min(len(order), first + stride)
        req = order[(first + last) // 2]
        if req.node is not None:  # a taken line stands for the taken lines of its stretch (the sample's share)
            live.append(req)
            weights.append(last - first)
    return live, weights


def _charge(
    out: ScheduleForecast,
    key: str,
    req: TreeRequest,
    side: str,
    start: float,
    finish: float,
    work: float,
    memo: dict[int, tuple[int, int, bool]],
    lines: int = 1,
) -> None:
    """Charge `lines` lines like `req` (a sampled line stands for its stretch) to group `key` and the total."""
    group = out.groups.get(key)
    if group is None:
        group = out.groups[key] = GroupForecast(first_position=out.lines, first_start_s=start)
    shared, n, warm = shared_prefix(req, memo)
    group.lines += lines
    group.work_s += work
    if finish > group.last_finish_s:
        group.last_finish_s = finish
    group.prompt_tokens += len(req.tokens) * lines
    group.cached_tokens += (shared if warm else shared * (n - 1) / n) * lines
    group.sides[side] += lines
    out.lines += lines
    out.work_s += work
    if finish > out.drain_s:
        out.drain_s = finish
    out.sides[side] += lines
