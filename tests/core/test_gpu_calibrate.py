"""bench/gpu_calibrate.py at toy sizes on CPU: the same code path the H100 run takes, minus the GPU."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_calibrate.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_calibrate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_toy_calibration_times_the_grid_fits_and_reports_held_out_error(tmp_path):
    cal = _load()
    out = tmp_path / "cal.json"
    args = cal.parser().parse_args(
        ["--toy", "--device", "cpu", "--out", str(out), "--repeat", "2", "--fit-steps", "300"]
    )
    result = cal.run(args)
    saved = json.loads(out.read_text())
    assert saved["fitted"] == result["fitted"]
    points = cal.grid_points(cal.TOY_GRID, args.kv_tokens or 16 * 64)
    assert len(saved["rows"]) == len(points) and saved["held_out_points"] == len(points) // 4
    assert all(r["measured_s"] > 0 and r["predicted_s"] > 0 for r in saved["rows"])
    assert all(v > 0 and math.isfinite(v) for v in saved["fitted"].values())
    assert math.isfinite(saved["held_out_mean_abs_error"])

    def log_mse(key, rows):
        return sum(math.log(r[key] / r["measured_s"]) ** 2 for r in rows) / len(rows)

    train = [r for i, r in enumerate(saved["rows"]) if i % 4 != 3]
    assert log_mse("predicted_s", train) <= log_mse("default_s", train)  # the fit improves on the defaults


def test_full_shape_is_llama_3_1_8b():
    cal = _load()
    shape = cal.Shape()
    assert abs(shape.params - 8.03e9) / 8.03e9 < 0.01
    assert shape.layers * shape.kv_heads * shape.head_dim * 2 * 2 == 131072  # KV bytes per token, bf16
    assert len(cal.grid_points(cal.FULL_GRID, 420_000)) > 40
