from __future__ import annotations

import json

import pytest

from blendserve.cli import main
from blendserve.core.sim.bench import METRICS, table
from blendserve.core.sim.suites import MULTIBATCH
from blendserve.core.sim.trace_file import save_trace
from blendserve.core.sim.workloads import generate


def test_bench_schedule_replays_a_trace_file_and_writes_rows(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    save_trace(generate(list(MULTIBATCH[3].jobs), 300, seed=0), trace)
    out = tmp_path / "rows.json"
    code = main(["bench", "schedule", "--trace-file", str(trace), "--mode", "overlapped", "--seeds", "2",
                 "--json", str(out)])  # fmt: skip
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * 5  # seeds x policies
    for row in rows:
        assert {"trace", "mode", "policy", "seed", *METRICS} <= set(row)
        assert 0 < row["vs_t_opt"] <= row["vs_t_opt_tight"] <= 1.0001  # nothing beats either bound; tight is tighter
        assert row["vs_t_mode"] == pytest.approx(row["vs_t_opt_tight"])  # overlapped: the mode's bound is T_tight
        assert row["vs_best_simple"] <= 1.0 + 1e-12 or row["policy"].startswith("blendserve")
    dfs = [r for r in rows if r["policy"] == "dfs"]
    assert all(r["vs_dfs"] == 1.0 for r in dfs)
    printed = capsys.readouterr().out
    assert "blendserve-oracle" in printed and "±" in printed


def test_table_reports_mean_and_std_per_trace_mode_policy():
    rows = [
        {"trace": "t", "mode": "sglang", "policy": p, "seed": s, **{m: v for m in METRICS}}
        for p, s, v in (("blendserve", 0, 1.0), ("blendserve", 1, 1.2))
    ]
    lines = table(rows)
    assert any("1.100±0.141" in line for line in lines)


def test_bench_schedule_with_some_baselines_left_out_prints_what_it_has(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    save_trace(generate(list(MULTIBATCH[3].jobs), 200, seed=0), trace)
    args = ["bench", "schedule", "--trace-file", str(trace), "--mode", "sglang", "--policies", "dfs,blendserve"]
    assert main(args) == 0
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# blendserve sglang")]
    assert summary and "vs_dfs" in summary[0] and "vs_fcfs" not in summary[0]


def test_bench_schedule_rejects_unknown_mode(tmp_path):
    with pytest.raises(SystemExit):
        main(["bench", "schedule", "--trace-file", str(tmp_path / "x"), "--mode", "sequential"])


def test_bench_schedule_takes_calibrated_engine_constants(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    save_trace(generate(list(MULTIBATCH[3].jobs), 200, seed=0), trace)
    fitted = {"gemm_eff_max": 0.7, "gemm_half_tokens": 96.0, "bw_eff": 0.93, "attn_eff": 0.27, "fixed_s": 0.0017}
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"device": "NVIDIA H100 80GB HBM3", "fitted": fitted}))
    rows = {}
    for name, extra in (("default", []), ("calibrated", ["--calibration", str(cal)])):
        out = tmp_path / f"{name}.json"
        args = ["bench", "schedule", "--trace-file", str(trace), "--mode", "sglang", "--seeds", "1",
                "--policies", "dfs", "--json", str(out), *extra]  # fmt: skip
        assert main(args) == 0
        rows[name] = json.loads(out.read_text())["rows"][0]["throughput"]
    assert "fixed_s=0.0017" in capsys.readouterr().err
    assert rows["calibrated"] < rows["default"]  # a 1.7 ms step cost and slower attention cost throughput


def test_bench_schedule_names_a_bad_calibration_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match=r"bad\.json.*fitted"):
        main(["bench", "schedule", "--suite", "paper", "--calibration", str(bad)])


def test_closure_is_the_share_of_the_v1_to_oracle_gap_and_is_printed():
    from blendserve.core.sim.bench import closure

    values = {"blendserve": (1.15, 1.25), "blendserve-oracle": (1.2, 1.2), "blendserve-v1": (1.1, 1.1)}
    rows = [
        {"trace": "t", "mode": "overlapped", "policy": p, "seed": s, **{m: v[s] for m in METRICS}}
        for p, v in values.items()
        for s in (0, 1)
    ]
    assert closure(rows, "overlapped", seed=0) == pytest.approx(0.5)
    assert closure(rows, "overlapped", seed=1) == pytest.approx(1.5)
    assert closure(rows, "overlapped") == pytest.approx(1.0)  # of the means over seeds
    assert closure(rows, "sglang") is None  # no rows in that mode
    printed = "\n".join(table(rows))
    assert "closure (blendserve - v1) / (oracle - v1) = 1.00 (per seed 0: 0.50, 1: 1.50)" in printed
    flat = [dict(r, vs_dfs=1.1) for r in rows]  # the oracle does not beat v1: no gap to close
    assert closure(flat, "overlapped") is None


@pytest.mark.parametrize("seed", [0, 1])
def test_no_policy_beats_the_bound_of_its_engine_mode(seed):
    """T_mode (bounds.py) for SGLang's sequential modes: every policy's simulated time stays above it, and it is
    tighter than T_tight (no overlap of compute and memory), sglang's (separate prefill steps) tightest."""
    from blendserve.core.sched.perf_model import PerfModel
    from blendserve.core.sim.baselines import make_policy
    from blendserve.core.sim.bounds import t_mode, t_opt_tight
    from blendserve.core.sim.engine import EngineConfig, simulate
    from blendserve.core.sim.step_cost import Hardware
    from blendserve.core.sim.workloads import TokenPool

    perf = PerfModel.preset()
    hw = Hardware.from_perf(perf)
    reqs = generate(list(MULTIBATCH[seed].jobs), 400, seed=seed)
    bounds = {}
    for mode in ("sglang", "sglang-mixed"):
        cfg = EngineConfig(kv_capacity=perf.kv_capacity_tokens, mode=mode)
        bounds[mode] = t_mode(reqs, hw, mode, cfg.kv_capacity, cfg.max_running)
        for name in ("fcfs", "dfs", "blendserve-oracle"):
            result = simulate(make_policy(name, perf, TokenPool(seed=seed), cfg.kv_capacity, seed), hw, cfg, reqs)
            assert result.time_s >= bounds[mode] * (1 - 1e-9), (mode, name)
    tight = t_opt_tight(reqs, hw, perf.kv_capacity_tokens, EngineConfig(kv_capacity=1).max_running)
    assert bounds["sglang"] >= bounds["sglang-mixed"] >= tight
