"""`blendserve bench tree`: the scheduler's cost at scale (tree build, sort, memory, per-admission cost).

Times are wall and process CPU (time.process_time): other processes on the machine inflate wall, not CPU.
Relayouts and re-estimations of a whole job (a job's first results move its estimates from max_tokens) are done a
slice per admission call (layout_job.py, reestimation.py); the bench times those slices apart and reports the
longest single call, which is what the live dispatcher's event loop waits on. By default every request is admitted
(a full drain), each finishing at once with its trace's true output length: the per-admission figure is then the
whole policy cost of a million lines, the one-time upkeep included."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from blendserve import native
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sim.suites import PAPER
from blendserve.core.sim.workloads import TokenPool, generate

WINDOW = 100_000  # admissions of the first window reported apart


class Clock:
    """Wall and CPU seconds spent in the wrapped calls, their count and the longest one (wall, CPU)."""

    def __init__(self) -> None:
        self.calls, self.wall, self.cpu, self.longest, self.longest_cpu = 0, 0.0, 0.0, 0.0, 0.0

    def wrap(self, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                self.calls, self.wall, self.cpu = self.calls + 1, self.wall + wall, self.cpu + cpu
                self.longest, self.longest_cpu = max(self.longest, wall), max(self.longest_cpu, cpu)

        return timed


def run_tree_bench(args: argparse.Namespace) -> int:
    """Scheduler cost at scale: tree build + layer-wise sort, memory per request beyond token ids, and the
    admission policy's cost per admitted request (next_batch, observe, done)."""
    import gc
    import resource
    import sys

    from blendserve.core.sched.layout_job import LayoutJob
    from blendserve.core.sched.policy import AdmissionPolicy

    perf = PerfModel.preset(args.model, args.gpu)
    requests = generate(list(PAPER[args.trace_number - 1].jobs), args.requests, args.seed)  # unsolved weights: fast
    pool = TokenPool(seed=args.seed)
    tokens = [pool.tokens(r) for r in requests]
    token_bytes = sum(t.itemsize * len(t) + sys.getsizeof(t) for t in tokens)
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gc.disable()  # the tree holds millions of small objects; generational GC passes would dominate build time
    t0, c0 = time.perf_counter(), time.process_time()
    policy = AdmissionPolicy(perf)  # what the dispatcher holds: tree, scanner, job index, critical-path heap
    for req, toks in zip(requests, tokens, strict=True):
        policy.add(req.rid, toks, req.max_tokens, group=req.job)
    t1, c1 = time.perf_counter(), time.process_time()
    tree, scanner = policy.tree, policy.scanner
    scanner.rebuild()
    t2, c2 = time.perf_counter(), time.process_time()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # Copied edge keys (shared prefixes, split or compared tails) are token storage; the rest is overhead.
    unique_tokens = sum(n.edge_len() for n in _nodes(tree) if n.key is not None)
    upkeep, calls, results = Clock(), Clock(), Clock()  # layout + re-estimation work; next_batch; observe + done
    critical = Clock()  # the critical-path heap: mostly filing re-estimated lines again (a slice per call)
    advance = LayoutJob.advance
    if not native.COMPILED:  # compiled methods cannot be wrapped: the breakdown is the source build's alone
        policy.critical_path = critical.wrap(policy.critical_path)  # type: ignore[method-assign]
        scanner.rebuild = upkeep.wrap(scanner.rebuild)  # type: ignore[method-assign]
        policy.reestimates.advance = upkeep.wrap(policy.reestimates.advance)  # type: ignore[method-assign]
        policy.reestimates.push = upkeep.wrap(policy.reestimates.push)  # type: ignore[method-assign]
        LayoutJob.advance = upkeep.wrap(advance)  # type: ignore[method-assign]
    layouts0, budget = scanner.layouts, perf.kv_capacity_tokens
    next_batch, finish = calls.wrap(policy.next_batch), results.wrap(_finish)
    lengths = {r.rid: r.output_len for r in requests}  # each line reports its trace's true output length
    target = len(requests) if args.admit <= 0 else min(args.admit, len(requests))
    window, window_cpu, window_upkeep, first = 0.0, 0.0, 0.0, 0  # the first WINDOW admissions: upkeep is there
    admitted, t3, c3 = 0, time.perf_counter(), time.process_time()
    while admitted < target:
        picked = next_batch(budget, limit=64)
        if not picked:
            break
        finish(policy, picked, lengths)  # each finishes at once: the per-admission cost includes observe + done
        admitted += len(picked)
        if not window and admitted >= WINDOW:
            window, window_cpu = time.perf_counter() - t3, time.process_time() - c3
            window_upkeep, first = upkeep.wall, admitted
    t4, c4 = time.perf_counter(), time.process_time()
    if not native.COMPILED:
        LayoutJob.advance = advance  # type: ignore[method-assign]
    gc.enable()
    tree_bytes = max(0, rss1 - rss0)
    overhead = max(0, tree_bytes - 4 * unique_tokens)
    print(f"scheduler build          : {'compiled (mypyc)' if native.COMPILED else 'Python source'}")
    print(f"requests                 : {len(requests)}")
    print(f"token ids (input arrays) : {token_bytes / 2**20:.0f} MiB")
    print("times                    : wall (process CPU)")
    print(f"tree build               : {t1 - t0:.1f} s ({c1 - c0:.1f} s CPU)")
    print(f"layer-wise sort + split  : {t2 - t1:.1f} s ({c2 - c1:.1f} s CPU)  (splits: {len(scanner.plan.nodes)})")
    print(f"build + sort             : {t2 - t0:.1f} s ({c2 - c0:.1f} s CPU)   (target <= 20 s)")
    print(f"tree memory (RSS growth) : {tree_bytes / 2**20:.0f} MiB, edge tokens {4 * unique_tokens / 2**20:.0f} MiB")
    print(f"overhead per request     : {overhead / len(requests):.0f} B   (target <= 1024 B)")
    n = max(1, admitted)
    per, per_cpu = (t4 - t3) / n * 1e6, (c4 - c3) / n * 1e6
    print(f"policy per admitted req  : {per:.1f} us ({per_cpu:.1f} us CPU) over {admitted} admitted, incl. observe,")
    print("                           done and upkeep   (target <= 20 us)")
    if native.COMPILED:
        print(f"  relayouts installed    : {scanner.layouts - layouts0} (the breakdown needs the source build:")
        print("                           scripts/build_native.py --clean)")
    else:
        _print_breakdown(upkeep, critical, scanner.layouts - layouts0, (t4 - t3, c4 - c3), n)
    if window:
        per_first, cpu_first = window / first * 1e6, window_cpu / first * 1e6
        of_which = "" if native.COMPILED else f", of which upkeep {window_upkeep / first * 1e6:.1f} us"
        print(f"  first {first} admitted : {per_first:.1f} us ({cpu_first:.1f} us CPU){of_which}:")
        print("                           the jobs' first results move their estimates off max_tokens")
    print(f"longest single call      : next_batch {calls.longest * 1e3:.0f} ms ({calls.longest_cpu * 1e3:.0f} ms CPU),")
    print(f"                           observe+done of a batch {results.longest * 1e3:.0f} ms")
    print(f"                           ({results.longest_cpu * 1e3:.0f} ms CPU)   (target: none over ~50 ms)")
    print(f"process CPU, whole bench : {time.process_time():.1f} s")
    return 0


def _print_breakdown(upkeep: Clock, critical: Clock, layouts: int, spent: tuple[float, float], n: int) -> None:
    print(f"  of which upkeep        : {upkeep.wall / n * 1e6:.1f} us ({upkeep.cpu / n * 1e6:.1f} us CPU): relayouts")
    print(f"                           ({layouts} installed) and job re-estimations, in slices")
    heap, heap_cpu = critical.wall / n * 1e6, critical.cpu / n * 1e6
    print(f"  critical-path heap     : {heap:.1f} us ({heap_cpu:.1f} us CPU): mostly filing")
    print("                           re-estimated lines again, a slice per call")
    bare, bare_cpu = (spent[0] - upkeep.wall) / n * 1e6, (spent[1] - upkeep.cpu) / n * 1e6
    print(f"  without upkeep         : {bare:.1f} us ({bare_cpu:.1f} us CPU)")


def _finish(policy, picked, lengths) -> None:
    for treq, _ in picked:
        policy.observe(treq.key, lengths[treq.key])
        policy.done(treq.key)


def _nodes(tree):
    stack = [tree.root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children.values())
