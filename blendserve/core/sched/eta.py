"""Where each pending request lands in the global schedule, in units of modelled work. Pure: no I/O, no clock.

The dual scanner takes requests from both ends of blend_order(): the left cursor while the running blend is
short of compute, the right one while it is short of memory traffic (scanner.DualScanner, blend="rate"). The
forecast replays that choice on cumulative sums (the live scanner balances per-step rates of what is in flight;
over a whole queue both converge on the same interleaving) and charges every request its modelled GPU time,
comp + mem from the perf model with the tree's output-length estimate. The caller turns work into wall time
with a calibration measured online (core/dispatch/throughput.py).

Cached tokens: a request whose prompt shares a prefix with n-1 other pending requests hits the radix cache
for that prefix unless it is the first of them to run: (n-1)/n of the shared prefix on average, all of it when
a request of the same group already finished (its prefix is likely still cached)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from blendserve.core.sched.ordering import req_comp_tokens
from blendserve.core.sched.prefix_tree import Node, PrefixTree, TreeRequest


@dataclass
class GroupForecast:
    """One group's (a batch's) share of the schedule. Work figures are model-seconds from the queue's head."""

    lines: int = 0
    first_position: int = -1  # index in the global dispatch sequence of the group's first request
    work_before_first: float = 0.0  # work dispatched before the group's first request
    work_through_last: float = 0.0  # work dispatched up to and including its last request
    work: float = 0.0
    longest_line_work: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: float = 0.0
    sides: dict[str, int] = field(default_factory=lambda: {"L": 0, "R": 0})


@dataclass
class ScheduleForecast:
    lines: int = 0
    work: float = 0.0
    sides: dict[str, int] = field(default_factory=lambda: {"L": 0, "R": 0})
    groups: dict[str, GroupForecast] = field(default_factory=dict)

    def groups_in_order(self) -> list[tuple[str, GroupForecast]]:
        """Groups by the position of their first request (the order they start in)."""
        return sorted(self.groups.items(), key=lambda kv: kv[1].first_position)


def request_work(tree: PrefixTree, req: TreeRequest) -> float:
    """Modelled GPU seconds of one request: its unshared prefill + decode compute, plus its KV reads."""
    return req_comp_tokens(req) * tree.comp_per_token + req.mem


def shared_prefix(req: TreeRequest) -> tuple[int, int, bool]:
    """(tokens of the prompt shared with other pending requests, how many share them, whether a request of
    that group already finished). The deepest node on the request's path that more than one request passes."""
    node: Node | None = req.node
    while node is not None and node.parent is not None and node.n < 2:
        node = node.parent
    if node is None or node.parent is None:
        return 0, 1, False
    return node.depth_tokens(), node.n, node.obs_n > 0


def forecast(
    tree: PrefixTree, order: Sequence[TreeRequest], group_of: Callable[[TreeRequest], str]
) -> ScheduleForecast:
    """Replay the dual scanner over `order` (blend_order of the pending tree, requests already taken are
    skipped) and sum each group's position, work and expected cached tokens."""
    live = [r for r in order if r.node is not None]
    rho_root = tree.rho(tree.root) if tree.root.mem > 0 else 1.0
    out = ScheduleForecast()
    comp = mem = done = 0.0
    lo, hi = 0, len(live) - 1
    while lo <= hi:
        side = "L" if comp < rho_root * mem else "R"
        req = live[lo] if side == "L" else live[hi]
        if side == "L":
            lo += 1
        else:
            hi -= 1
        c = req_comp_tokens(req) * tree.comp_per_token
        work = c + req.mem
        comp, mem = comp + c, mem + req.mem
        _charge(out, group_of(req), req, side, done, work)
        done += work
    out.work = done
    return out


def _charge(out: ScheduleForecast, key: str, req: TreeRequest, side: str, before: float, work: float) -> None:
    group = out.groups.get(key)
    if group is None:
        group = out.groups[key] = GroupForecast(first_position=out.lines, work_before_first=before)
    shared, n, warm = shared_prefix(req)
    group.lines += 1
    group.work += work
    group.work_through_last = before + work
    group.longest_line_work = max(group.longest_line_work, work)
    group.prompt_tokens += req.prompt_len
    group.cached_tokens += shared if warm else shared * (n - 1) / n
    group.sides[side] += 1
    out.lines += 1
    out.sides[side] += 1
