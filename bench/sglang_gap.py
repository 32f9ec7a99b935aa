"""Where the time above the `sglang` mode's bound goes (bounds.t_mode): prefill steps against prompt compute +
prefill attention with perfect sharing, decode steps against the rest of the bound. One seed of each multibatch
workload, dfs and blendserve, simulated H100 with the documented constants.

    PYTHONPATH=$PWD python bench/sglang_gap.py [--seed 0] [--requests 12000]
"""

from __future__ import annotations

import argparse

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sim import engine
from blendserve.core.sim.baselines import make_policy
from blendserve.core.sim.bounds import min_decode_steps, shared_prefill_attention, t_mem
from blendserve.core.sim.step_cost import Hardware
from blendserve.core.sim.suites import SUITES, build
from blendserve.core.sim.workloads import TokenPool, unique_prompt_tokens


class PrefillClock(engine.Engine):
    """The engine, timing its prefill-only segments (sglang mode: prefill steps apart from decode steps)."""

    last: PrefillClock | None = None  # the engine of the latest simulate() call

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.prefill_s = 0.0
        PrefillClock.last = self

    def _prefill_only_segment(self) -> None:
        before = self.time
        super()._prefill_only_segment()
        self.prefill_s += self.time - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=12_000)
    args = parser.parse_args()
    perf = PerfModel.preset()
    hw = Hardware.from_perf(perf)
    engine.Engine = PrefillClock  # type: ignore[misc]  # simulate() builds its engine by this name
    for workload in SUITES["multibatch"]:
        reqs, _ = build(workload, args.requests, perf, args.seed)
        cfg = engine.EngineConfig(kv_capacity=perf.kv_capacity_tokens, mode="sglang")
        steps = min_decode_steps(reqs, cfg.kv_capacity, cfg.max_running)
        output = sum(r.output_len for r in reqs) * hw.best_comp_per_token_s
        prefill_bound = unique_prompt_tokens(reqs) * hw.best_comp_per_token_s + shared_prefill_attention(reqs, hw)
        decode_bound = max(output, steps * hw.weight_read_s) + t_mem(reqs, hw) + steps * hw.fixed_s
        for name in ("dfs", "blendserve"):
            policy = make_policy(name, perf, TokenPool(seed=args.seed), cfg.kv_capacity, args.seed)
            result = engine.simulate(policy, hw, cfg, reqs)
            assert PrefillClock.last is not None
            prefill = PrefillClock.last.prefill_s
            decode = result.time_s - prefill
            print(
                f"{workload.name:15s} {name:10s} prefill {prefill:7.1f} s ({prefill / prefill_bound:.3f}x its bound)"
                f"  decode {decode:7.1f} s ({decode / decode_bound:.3f}x)"
                f"  all {result.time_s / (prefill_bound + decode_bound):.3f}x T_mode",
                flush=True,
            )


if __name__ == "__main__":
    main()
