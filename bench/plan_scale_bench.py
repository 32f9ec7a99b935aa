"""What the plan/forecast and the many-worker lanes cost on the dispatcher's event loop at N pending lines (default
1M): the paper's trace 1 job mix (core/sim/tree_bench.py's generator) in one AdmissionPolicy over a CompactTree,
laid out once, then a few new lines arrive and the bench times, in process CPU (time.process_time; wall is
inflated by other processes on a shared machine):

  pending_order()   right after the arrivals (the order the cursors walk + the arrivals, no layout at once)
  forecast          eta.forecast over it, as core/plan.py's Planner.schedule() calls it
  lanes             LaneScanners with 4 lanes: next_requests round-robin right after the arrivals, until the
                    sliced lane layout that takes them in is installed, and 100 calls more, while the replaced
                    orders are let go of (longest single call and the total)

No model, no database, no server.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/plan_scale_bench.py [--requests 1000000] [--arrivals 1000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from operator import attrgetter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.core.sched.compact_tree import CompactTree  # noqa: E402
from blendserve.core.sched.eta import forecast  # noqa: E402
from blendserve.core.sched.lanes import LaneScanners  # noqa: E402
from blendserve.core.sched.perf_model import PerfModel  # noqa: E402
from blendserve.core.sched.policy import LAYOUT_AT_ONCE, LAYOUT_SLICE, AdmissionPolicy  # noqa: E402
from blendserve.core.sim.suites import PAPER  # noqa: E402
from blendserve.core.sim.workloads import TokenPool, generate  # noqa: E402

LANES = ["w0", "w1", "w2", "w3"]


def cpu(fn):
    """(result, process CPU seconds) of one call."""
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def load(policy: AdmissionPolicy, n: int, seed: int, prefix: str) -> None:
    requests = generate(list(PAPER[0].jobs), n, seed)
    pool = TokenPool(seed=seed)
    for req in requests:
        policy.add(f"{prefix}{req.rid}", pool.tokens(req), req.max_tokens, group=f"{prefix}{req.job}")


def bench_plan(policy: AdmissionPolicy, args: argparse.Namespace) -> None:
    perf = policy.tree.perf
    order, order_cpu = cpu(policy.scanner.pending_order)
    result, forecast_cpu = cpu(
        lambda: forecast(policy.tree, order, attrgetter("group"), args.window, perf.kv_capacity_tokens, 1.0)
    )
    print(f"pending_order()            : {order_cpu * 1e3:7.0f} ms CPU  ({len(order)} listed, no layout at once)")
    print(f"forecast (eta, as plan.py) : {forecast_cpu * 1e3:7.0f} ms CPU  (a sample: {result.stride} lines a unit,")
    print(f"                                            {result.lines} lines, {len(result.groups)} batches)")
    print(f"Planner.schedule() total   : {(order_cpu + forecast_cpu) * 1e3:7.0f} ms CPU")


AFTER_INSTALL = 100  # lane calls timed after the install (the replaced lists of 1M lines go in ~45 slices)


def bench_lanes(policy: AdmissionPolicy, args: argparse.Namespace) -> None:
    lanes = LaneScanners(policy.tree, LAYOUT_SLICE, LAYOUT_AT_ONCE)
    policy.arrival_logs[:] = [lanes.arrivals]  # as PendingSet.set_lanes does
    lanes.set_lanes(LANES)
    _, first = cpu(lanes.replan)
    print(f"lanes: first layout, whole : {first:7.1f} s CPU   (set-up: no lane had a cut yet)")
    load(policy, args.arrivals, args.seed + 2, "lanes-")
    layouts, calls, longest, total, installed_at = lanes.layouts, 0, 0.0, 0.0, 0
    # and AFTER_INSTALL calls more: the replaced orders and cuts are let go of a slice per call then
    while (not installed_at or calls < installed_at + AFTER_INSTALL) and calls < args.max_calls:
        lane = LANES[calls % len(LANES)]
        picked, took = cpu(lambda lane=lane: lanes.next_requests(lane, policy.tree.perf.kv_capacity_tokens, 16))
        for req, side in picked:
            policy.mark_taken(req, side)
            policy.done(req.key)
        calls, longest, total = calls + 1, max(longest, took), total + took
        installed_at = installed_at or (calls if lanes.layouts > layouts else 0)
    installed = f"installed after {installed_at} calls" if installed_at else f"not installed in {calls} calls"
    print(f"lanes: next_requests       : longest {longest * 1e3:.0f} ms CPU, {calls} calls, {total:.1f} s CPU in all")
    print(f"                             (the lane layout with the arrivals {installed}, then {AFTER_INSTALL} calls)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--arrivals", type=int, default=1000, help="new lines after the layout")
    parser.add_argument("--window", type=int, default=256, help="lines in flight (the runtime's window)")
    parser.add_argument("--max-calls", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    perf = PerfModel.preset()
    gc.disable()  # millions of small objects: generational passes would dominate the build
    policy = AdmissionPolicy(perf, tree=CompactTree(perf))
    _, build = cpu(lambda: load(policy, args.requests, args.seed, ""))
    _, layout = cpu(policy.scanner.rebuild)
    print(f"requests                   : {len(policy)} (paper trace 1), build {build:.1f} s, layout {layout:.1f} s CPU")
    load(policy, args.arrivals, args.seed + 1, "new-")
    print(f"arrivals after the layout  : {args.arrivals}")
    bench_plan(policy, args)
    bench_lanes(policy, args)
    print(f"process CPU, whole bench   : {time.process_time():.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
