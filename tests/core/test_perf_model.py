from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blendserve.core.sched.perf_model import GPUS, MODELS, PerfModel


def test_kv_bytes_per_token_from_shape():
    assert MODELS["llama-3.1-8b"].kv_bytes_per_token == 32 * 8 * 128 * 2 * 2
    assert MODELS["qwen2.5-7b"].kv_bytes_per_token == 28 * 4 * 128 * 2 * 2


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("gpu", sorted(GPUS))
def test_presets_formulas(model, gpu):
    perf = PerfModel.preset(model, gpu)
    m, g = MODELS[model], GPUS[gpu]
    assert perf.comp(100, 50) == pytest.approx(2 * 150 * m.params / (g.peak_flops * g.flops_efficiency))
    assert perf.mem(100, 50) == pytest.approx(
        (100 * 50 + 50 * 50 / 2) * m.kv_bytes_per_token / (g.peak_bandwidth * g.bandwidth_efficiency)
    )
    assert perf.kv_capacity_tokens > 100_000


def test_h200_has_more_bandwidth_and_kv_than_h100():
    h100, h200 = PerfModel.preset(gpu="h100"), PerfModel.preset(gpu="h200")
    assert h200.mem(1000, 100) < h100.mem(1000, 100)
    assert h200.kv_capacity_tokens > h100.kv_capacity_tokens


def test_unknown_preset():
    with pytest.raises(ValueError):
        PerfModel.preset("nope", "h100")


@given(st.integers(0, 10_000), st.integers(1, 4000), st.integers(1, 4000))
def test_rho_falls_with_longer_outputs_and_with_cached_prompt(p, d, extra):
    perf = PerfModel.preset()
    assert perf.rho(p, p, d + extra) < perf.rho(p, p, d)
    assert perf.rho(0, p + extra, d) < perf.rho(p + extra, p + extra, d)  # a cached prefix costs no compute
    assert perf.rho(p, p, d) > 0
