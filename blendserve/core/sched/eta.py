"""When each pending request will run: a replay of the live dispatch over the pending tree. Pure: no I/O, no
clock (times are seconds from "now", which the caller supplies the meaning of).

The replay does what the dispatcher does (core/dispatch/loop.py + scanner.DualScanner, blend="rate"): it keeps
up to `window` requests in flight within the KV budget; whenever one finishes it admits the next from the
left cursor of blend_order() while the running compute rate is below rho_root x the running memory rate, else
from the right cursor. Each request runs for latency_ratio x its modelled GPU time (comp + mem from the perf
model with the tree's output-length estimate); latency_ratio comes from observed results (the caller's online
calibration), so one replay covers concurrency and the runtime's real speed.

Cached tokens: a request whose prompt shares a prefix with n-1 other pending requests hits the radix cache for
that prefix unless it is the first of them to run: (n-1)/n of the shared prefix on average, all of it when a
request of the same group already finished (its prefix is likely still cached)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest


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
) -> ScheduleForecast:
    """Replay dispatch of `order` (blend_order of the pending tree; requests already taken are skipped) behind
    what is `running`, and sum each group's start, finish, work and expected cached tokens."""
    live = [r for r in order if r.node is not None]
    comp, mem, life, kv = _costs(tree, live)
    left_comp, left_mem = sum(comp), sum(mem)
    # the scanner aims at the tree's rho, which counts each shared prefix once; the per-request sums here do
    # not, so scale them onto the tree's figure once and let the remaining sums track it as requests leave
    bias = tree.rho(tree.root) * left_mem / left_comp if left_comp > 0 and tree.root.mem > 0 else 1.0
    out = ScheduleForecast()
    memo: dict[int, tuple[int, int, bool]] = {}
    heap: list[tuple[float, int, float, float, float]] = []  # (finish, seq, comp_rate, mem_rate, kv)
    rate_comp = rate_mem = kv_used = 0.0
    for seq, r in enumerate(running):
        heapq.heappush(heap, (r.remaining_s, -1 - seq, r.comp_rate, r.mem_rate, r.kv_tokens))
        rate_comp, rate_mem, kv_used = rate_comp + r.comp_rate, rate_mem + r.mem_rate, kv_used + r.kv_tokens
    now, lo, hi, seq = 0.0, 0, len(live) - 1, 0
    while lo <= hi:
        left = rate_comp < (bias * left_comp / left_mem if left_mem > 0 else 1.0) * rate_mem
        i = lo if left else hi
        if heap and (len(heap) >= window or kv_used + kv[i] > kv_capacity):
            now, _, c_rate, m_rate, used = heapq.heappop(heap)  # wait for the next finish
            rate_comp, rate_mem, kv_used = rate_comp - c_rate, rate_mem - m_rate, kv_used - used
            continue
        if left:
            lo += 1
        else:
            hi -= 1
        c, m = comp[i], mem[i]
        left_comp, left_mem = left_comp - c, left_mem - m
        finish = now + latency_ratio * (c + m)
        c_rate, m_rate = c / life[i], m / life[i]
        heapq.heappush(heap, (finish, seq, c_rate, m_rate, kv[i]))
        seq += 1
        rate_comp, rate_mem, kv_used = rate_comp + c_rate, rate_mem + m_rate, kv_used + kv[i]
        _charge(out, group_of(live[i]), live[i], "L" if left else "R", now, finish, c + m, memo)
    return out


def _charge(
    out: ScheduleForecast,
    key: str,
    req: TreeRequest,
    side: str,
    start: float,
    finish: float,
    work: float,
    memo: dict[int, tuple[int, int, bool]],
) -> None:
    group = out.groups.get(key)
    if group is None:
        group = out.groups[key] = GroupForecast(first_position=out.lines, first_start_s=start)
    shared, n, warm = shared_prefix(req, memo)
    group.lines += 1
    group.work_s += work
    if finish > group.last_finish_s:
        group.last_finish_s = finish
    group.prompt_tokens += len(req.tokens)
    group.cached_tokens += shared if warm else shared * (n - 1) / n
    group.sides[side] += 1
    out.lines += 1
    out.work_s += work
    if finish > out.drain_s:
        out.drain_s = finish
    out.sides[side] += 1
