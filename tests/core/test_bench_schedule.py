from __future__ import annotations

import json

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


def test_bench_schedule_rejects_unknown_mode(tmp_path):
    import pytest

    with pytest.raises(SystemExit):
        main(["bench", "schedule", "--trace-file", str(tmp_path / "x"), "--mode", "sequential"])
