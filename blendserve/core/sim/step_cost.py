"""What one engine step costs on the simulated GPU: the simulator's hardware truth (pure).

The scheduler plans with its own perf model (core/sched/perf_model.py); the simulator charges time with this one,
which may disagree, as a real GPU does. A step with T_p prefill tokens and n decodes holding K KV tokens:

  gemm(T)   = max(2 P T / (F_peak * eff(T)), W / (B_peak * bw_eff))     dense layers, T = tokens in the step
  eff(T)    = gemm_eff_max * T / (T + gemm_half_tokens)                  GEMM efficiency curve
  attn_p    = 4 L H c t / (F_peak * attn_eff)                            prefill attention, t new tokens over c context
  kv(K)     = K kv_bytes / (B_peak * bw_eff)                             decode attention reads the KV once
  fixed                                                                  scheduling, sampling, launch gaps

Modes (what each models):
  sglang        SGLang's default: chunked prefill, prefill batches and decode batches as separate steps, prefill
                first (enable_mixed_chunk off). Prefill step = gemm(T_p) + attn_p + fixed; decode step = gemm(n) +
                kv(K) + fixed.
  sglang-mixed  --enable-mixed-chunk: one step holds the prefill chunk and the decodes, operators in sequence:
                gemm(T_p + n) + attn_p + kv(K) + fixed.
  overlapped    NanoFlow-like: compute and memory operators overlap within a step:
                max(2P(T_p + n)/(F eff) + attn_p, W/B + kv(K)) + fixed. Not what SGLang does.

Default constants, Llama-3.1-8B on one H100 SXM (sources in /work/shared/CALIBRATION-SOURCES.md, docs/SCHEDULER.md):
  F_peak 989 TFLOP/s bf16 dense, B_peak 3.35 TB/s: the H100 SXM datasheet (FlashInfer blog's table).
  gemm_eff_max 0.62, gemm_half_tokens 32: fitted to torch bf16 GEMM measurements with Llama-3.1-8B shapes on H100
      (vLLM PR #49363: N=43008 K=5376 M=256 -> 593 TF; vLLM PR #17126: N=6144 K=4096 M=256 -> 544 TF;
      FlagGems PR #1287: 4096^3 mm -> ~545 TF): eff(256) = 0.55, eff(4096) = 0.615. Below ~256 tokens the
      weight read bounds a step anyway (the same measurements are flat in M up to 128).
  bw_eff 0.92: a batch-1 step is then 16.06 GB / 3.08 TB/s + fixed = 5.4 ms; SGLang measured a median ITL of
      4.99 ms at low load on an H100 (sglang issue #1268), and FlashInfer reports decode attention "close to
      100%" of bandwidth for long sequences. An assumption within those bounds, not a measurement.
  attn_eff 0.5: FlashAttention-3 reports up to 75% of peak for long sequences; shorter prefill chunks run lower.
      An assumption.
  fixed 0.2 ms: no published ms-per-step CPU cost exists (only shares: vLLM 0.5 spent 62% outside the GPU,
      SGLang 0.4's overlap scheduler hides most of it). 4.99 ms measured at batch 1 minus the ~4.8 ms weight
      read at peak bandwidth leaves at most ~0.2 ms. An assumption.
bench/gpu_calibrate.py measures these on a real GPU and fits them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from blendserve.core.sched.perf_model import PerfModel

MODES = ("sglang", "sglang-mixed", "overlapped")


# The efficiency constants below that bench/gpu_calibrate.py fits on a GPU and `bench schedule --calibration` reads.
FITTED = ("gemm_eff_max", "gemm_half_tokens", "bw_eff", "attn_eff", "fixed_s")


@dataclass(frozen=True)
class Hardware:
    params: float  # P
    weight_bytes: float  # W
    kv_bytes_per_token: int
    layers: int  # L
    hidden: int  # H
    peak_flops: float
    peak_bandwidth: float
    gemm_eff_max: float = 0.62
    gemm_half_tokens: float = 32.0
    bw_eff: float = 0.92
    attn_eff: float = 0.5
    fixed_s: float = 0.2e-3

    @classmethod
    def from_perf(cls, perf: PerfModel, **overrides: float) -> Hardware:
        m, g = perf.model, perf.gpu
        return cls(
            m.params,
            m.weight_bytes,
            m.kv_bytes_per_token,
            m.layers,
            m.hidden,
            g.peak_flops,
            g.peak_bandwidth,
            **overrides,
        )

    # ---- per-token constants ------------------------------------------------------------------------
    @property
    def weight_read_s(self) -> float:
        return self.weight_bytes / (self.peak_bandwidth * self.bw_eff)

    @property
    def kv_read_per_token_s(self) -> float:
        return self.kv_bytes_per_token / (self.peak_bandwidth * self.bw_eff)

    @property
    def best_comp_per_token_s(self) -> float:
        """GEMM time per token at the curve's ceiling: what a huge step reaches."""
        return 2.0 * self.params / (self.peak_flops * self.gemm_eff_max)

    def gemm_eff(self, tokens: float) -> float:
        return self.gemm_eff_max * tokens / (tokens + self.gemm_half_tokens) if tokens > 0 else self.gemm_eff_max

    def gemm_compute_s(self, tokens: float) -> float:
        return 2.0 * self.params * tokens / (self.peak_flops * self.gemm_eff(tokens)) if tokens > 0 else 0.0

    def gemm_s(self, tokens: float) -> float:
        return max(self.gemm_compute_s(tokens), self.weight_read_s)

    def attn_prefill_s(self, new_tokens: float, context_before: float) -> float:
        """Causal attention FLOPs of `new_tokens` appended to `context_before` cached tokens, all layers."""
        ctx = context_before + new_tokens / 2.0
        return 4.0 * self.layers * self.hidden * ctx * new_tokens / (self.peak_flops * self.attn_eff)


def sum_of_max(c: float, b: float, m: float, s: int) -> float:
    """sum_{t=0}^{s-1} max(c, b + m t) for m >= 0."""
    if s <= 0:
        return 0.0
    if m <= 0 or b >= c:
        return s * max(c, b) if m <= 0 else s * b + m * s * (s - 1) / 2
    t_star = min(s, math.ceil((c - b) / m))
    return t_star * c + (s - t_star) * b + m * ((s - 1) * s / 2 - (t_star - 1) * t_star / 2)
