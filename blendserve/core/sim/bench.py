"""`blendserve bench schedule`: every order on the same simulator, requests and seeds; one table, JSON rows."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sim.baselines import POLICIES, SIMPLE, make_policy
from blendserve.core.sim.bounds import t_mode, t_opt, t_opt_tight
from blendserve.core.sim.engine import EngineConfig, simulate
from blendserve.core.sim.request import SimRequest, SimResult
from blendserve.core.sim.step_cost import FITTED, MODES, Hardware
from blendserve.core.sim.suites import SUITES, build
from blendserve.core.sim.trace_file import load_trace
from blendserve.core.sim.workloads import TokenPool, measure, shared_prefix_tokens

METRICS = (
    "throughput", "vs_dfs", "vs_fcfs", "vs_best_simple", "sharing_vs_dfs", "vs_t_opt", "vs_t_opt_tight", "vs_t_mode"
)  # fmt: skip


@dataclass
class Case:
    trace: str
    seed: int
    requests: list[SimRequest]


def _cases(args: argparse.Namespace, perf: PerfModel, log) -> list[Case]:
    seeds = range(args.seed, args.seed + args.seeds)
    if args.trace_file:
        reqs = load_trace(args.trace_file)
        return [Case(args.trace_file, seed, reqs) for seed in seeds]
    cases = []
    for workload in SUITES[args.suite]:
        for seed in seeds:
            reqs, _ = build(workload, args.requests, perf, seed)
            cases.append(Case(workload.name, seed, reqs))
    return cases


def _describe(case: Case, perf: PerfModel, log) -> None:
    rho, sharing = measure(case.requests, perf)
    shared = shared_prefix_tokens(case.requests) / max(1, perf.kv_capacity_tokens)
    jobs = ", ".join(f"{k} {v}" for k, v in Counter(r.job for r in case.requests).items())
    log(
        f"# {case.trace} seed {case.seed}: {len(case.requests)} requests, rho {rho:.2f}, prefix sharing {sharing:.2f}, "
        f"shared-prefix tokens {shared:.1f}x the KV cache; jobs: {jobs}"
    )


def run_case(case: Case, mode: str, policies: list[str], perf: PerfModel, hw: Hardware, log) -> list[dict]:
    cfg = EngineConfig(kv_capacity=perf.kv_capacity_tokens, mode=mode)
    pool = TokenPool(seed=case.seed)
    results: dict[str, SimResult] = {}
    for name in policies:
        t0 = time.perf_counter()
        policy = make_policy(name, perf, pool, cfg.kv_capacity, case.seed, mode)
        results[name] = simulate(policy, hw, cfg, case.requests)
        log(f"#   {case.trace} s{case.seed} {mode} {name}: {time.perf_counter() - t0:.1f} s wall")
    tokens = sum(r.prompt_len + r.output_len for r in case.requests)
    bound = tokens / t_opt(case.requests, hw)
    tight = tokens / t_opt_tight(case.requests, hw, cfg.kv_capacity, cfg.max_running)
    in_mode = tokens / t_mode(case.requests, hw, mode, cfg.kv_capacity, cfg.max_running)
    dfs, fcfs = results.get("dfs"), results.get("fcfs")
    simple = [results[p].throughput for p in SIMPLE if p in results]
    rows = []
    for name, res in results.items():
        rows.append({
            "trace": case.trace, "mode": mode, "policy": name, "seed": case.seed,
            "throughput": res.throughput,
            "vs_dfs": res.throughput / dfs.throughput if dfs else None,
            "vs_fcfs": res.throughput / fcfs.throughput if fcfs else None,
            "vs_best_simple": res.throughput / max(simple) if simple else None,
            "sharing_vs_dfs": res.cache_hit_ratio / dfs.cache_hit_ratio if dfs and dfs.cache_hit_ratio else None,
            "vs_t_opt": res.throughput / bound,
            "vs_t_opt_tight": res.throughput / tight,
            "vs_t_mode": res.throughput / in_mode,
            "steps": res.steps, "retractions": res.retractions, "cache_hit_ratio": res.cache_hit_ratio,
        })  # fmt: skip
    return rows


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.0f}±{std:.0f}" if mean > 100 else f"{mean:.3f}±{std:.3f}"


def table(rows: list[dict]) -> list[str]:
    """One line per (trace, mode, policy): mean ± std over seeds of every metric, then blendserve's averages."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["trace"], row["mode"], row["policy"]), []).append(row)
    width = max([19] + [len(policy) + 1 for _, _, policy in groups])  # long comparison names stay aligned
    head = f"{'trace':<16}{'mode':<14}{'policy':<{width}}" + "".join(f"{m:>17}" for m in METRICS)
    lines = [head]
    for (trace, mode, policy), group in groups.items():
        cells = [_mean_std([g[m] for g in group if g[m] is not None]) for m in METRICS]
        lines.append(f"{trace:<16}{mode:<14}{policy:<{width}}" + "".join(f"{c:>17}" for c in cells))
    lines += _summary(rows)
    return lines


def _summary(rows: list[dict]) -> list[str]:
    lines = []
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    for policy in dict.fromkeys(r["policy"] for r in rows if r["policy"].startswith("blendserve")):
        for mode in modes:
            sel = [r for r in rows if r["policy"] == policy and r["mode"] == mode]
            if not sel:
                continue
            # a comparison whose baseline was not run (--policies without fcfs, say) is None: left out
            values = {m: [r[m] for r in sel if r[m] is not None] for m in METRICS[1:5]}
            means = {m: statistics.fmean(v) for m, v in values.items() if v}
            worst = f"; worst vs_best_simple {min(values['vs_best_simple']):.3f}" if values["vs_best_simple"] else ""
            lines.append(
                f"# {policy} {mode}, mean over traces and seeds: "
                + ", ".join(f"{m} {v:.3f}" for m, v in means.items())
                + worst
            )
    for mode in modes:
        line = closure_line(rows, mode)
        if line:
            lines.append(line)
    return lines


def engine_constants(perf: PerfModel, calibration: str | None) -> Hardware:
    """The step-cost constants: the documented defaults, or the `fitted` block of a bench/gpu_calibrate.py JSON.
    Raises SystemExit naming the file when it has no such block."""
    if not calibration:
        return Hardware.from_perf(perf)
    try:
        with open(calibration, encoding="utf-8") as fh:
            fitted = json.load(fh)["fitted"]
        return Hardware.from_perf(perf, **{name: float(fitted[name]) for name in FITTED})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--calibration {calibration}: not a gpu_calibrate.py result ({exc!r})") from None


GAP_POLICIES = ("blendserve", "blendserve-oracle", "blendserve-v1")


def _gap_means(rows: list[dict], mode: str, seed: int | None = None) -> dict[str, float] | None:
    means = {}
    for policy in GAP_POLICIES:
        sel = [r["vs_dfs"] for r in rows if r["mode"] == mode and r["policy"] == policy
               and (seed is None or r["seed"] == seed) and r["vs_dfs"] is not None]  # fmt: skip
        if not sel:
            return None
        means[policy] = statistics.fmean(sel)
    return means


def closure(rows: list[dict], mode: str, seed: int | None = None) -> float | None:
    """The share of the gap between the first build's scheduler and the oracle that blendserve closes:
    (blendserve - v1) / (oracle - v1) on vs_dfs averaged over traces (and over seeds unless `seed` is given).
    The oracle is the same policy, same blend, told the true output lengths: what any estimator could do.
    1 = the estimator is as good as true lengths; above 1, better (the blend is a heuristic, not an optimum).
    None without the three policies, or when the oracle does not beat v1 (no gap to close)."""
    means = _gap_means(rows, mode, seed)
    if means is None:
        return None
    gap = means["blendserve-oracle"] - means["blendserve-v1"]
    return (means["blendserve"] - means["blendserve-v1"]) / gap if gap > 1e-9 else None


def closure_line(rows: list[dict], mode: str) -> str | None:
    """'# <mode>: ...' with the three means, the closure of the means and each seed's; None without the
    three policies."""
    means = _gap_means(rows, mode)
    if means is None:
        return None
    seeds = sorted({r["seed"] for r in rows if r["mode"] == mode})
    shown = ["-" if c is None else f"{c:.2f}" for c in (closure(rows, mode, s) for s in seeds)]
    total = closure(rows, mode)
    return (
        f"# {mode}: vs_dfs blendserve {means['blendserve']:.3f}, oracle {means['blendserve-oracle']:.3f}, "
        f"v1 {means['blendserve-v1']:.3f}; closure (blendserve - v1) / (oracle - v1) = "
        f"{'- (oracle does not beat v1)' if total is None else f'{total:.2f}'}"
        f" (per seed {', '.join(f'{s}: {c}' for s, c in zip(seeds, shown, strict=True))})"
    )


def run_schedule_bench(args: argparse.Namespace) -> int:
    perf = PerfModel.preset(args.model, args.gpu)
    hw = engine_constants(perf, getattr(args, "calibration", None))
    modes = [m.strip() for m in args.mode.split(",")]
    policies = [p.strip() for p in args.policies.split(",")]
    for name in modes:
        if name not in MODES:
            raise SystemExit(f"unknown mode {name!r}; modes: {', '.join(MODES)}")
    for name in policies:
        if name not in POLICIES:
            raise SystemExit(f"unknown policy {name!r}; policies: {', '.join(POLICIES)}")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    log(f"# {args.model} on {args.gpu}: KV capacity {perf.kv_capacity_tokens} tokens; engine constants {hw}")
    rows: list[dict] = []
    for case in _cases(args, perf, log):
        _describe(case, perf, log)
        for mode in modes:
            rows.extend(run_case(case, mode, policies, perf, hw, log))
    print("\n".join(table(rows)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows}, fh, indent=1)
    return 0
