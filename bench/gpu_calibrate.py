"""Calibrate the simulator's step-cost constants (core/sim/step_cost.py) on a real GPU.

Builds a Llama-3.1-8B-shaped decoder with random bf16 weights in plain torch (no download), times one forward
step per grid point (prefill chunk tokens x decode batch x context), fits the step-cost model's constants
(gemm_eff_max, gemm_half_tokens, bw_eff, attn_eff, fixed_s) on three quarters of the points, reports the model's
error on the held-out quarter, and writes the table and the fit as JSON.

On CUDA each step is captured once as a CUDA graph and replayed (SGLang replays graphs for decode; without one a
plain-torch step of 32 layers is bound by ~700 kernel launches, which no serving engine pays); the eager time is
kept beside it. Attention takes the flash/memory-efficient SDPA paths: prefill with a lower-right causal bias over
[cache, new], decode with each KV head's query group folded into the query length. The peaks the efficiencies are
relative to are the card's datasheet figures (H100 or H200 SXM), and a bf16 GEMM and a device copy are timed first
so the report also says what the card reaches.

  python bench/gpu_calibrate.py --out bench/results-gpu-calibration.json          # H100/H200: < 8 min
  python bench/gpu_calibrate.py --toy --device cpu --out /tmp/toy.json            # tiny model, tiny grid (tests)

A step: `prefill` new tokens of one sequence appended to `context` cached tokens, plus `decodes` sequences of
`context` cached tokens generating one token each; logits for the last position of each sequence only. Layers
share one KV buffer (each layer reads as many bytes as a real cache, which is far larger than L2 anyway).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blendserve.core.sim.step_cost import FITTED as FIT  # noqa: E402
from blendserve.core.sim.step_cost import Hardware  # noqa: E402


@dataclass(frozen=True)
class Shape:
    layers: int = 32
    hidden: int = 4096
    intermediate: int = 14336
    heads: int = 32
    kv_heads: int = 8
    vocab: int = 128256

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def params(self) -> int:
        kv = self.kv_heads * self.head_dim
        per_layer = (
            self.hidden * (self.hidden + 2 * kv) + self.hidden * self.hidden + 3 * self.hidden * self.intermediate
        )
        return self.layers * per_layer + 2 * self.vocab * self.hidden


TOY = Shape(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=512)
FULL_GRID = dict(prefill=(0, 512, 2048, 8192), decodes=(0, 16, 64, 256, 512), context=(512, 2048, 8192, 16384))
TOY_GRID = dict(prefill=(0, 16, 64), decodes=(0, 4, 16), context=(16, 64))


class Model(torch.nn.Module):
    def __init__(self, shape: Shape, dtype: torch.dtype, device: str) -> None:
        super().__init__()
        kv = shape.kv_heads * shape.head_dim

        def w(*size):
            return torch.nn.Parameter(torch.randn(*size, dtype=dtype, device=device) * 0.02, requires_grad=False)

        self.shape = shape
        self.embed = w(shape.vocab, shape.hidden)
        self.qkv = torch.nn.ParameterList([w(shape.hidden + 2 * kv, shape.hidden) for _ in range(shape.layers)])
        self.out = torch.nn.ParameterList([w(shape.hidden, shape.hidden) for _ in range(shape.layers)])
        self.gate_up = torch.nn.ParameterList([w(2 * shape.intermediate, shape.hidden) for _ in range(shape.layers)])
        self.down = torch.nn.ParameterList([w(shape.hidden, shape.intermediate) for _ in range(shape.layers)])
        self.lm_head = w(shape.vocab, shape.hidden)

    @torch.inference_mode()
    def step(self, prefill: int, decodes: int, context: int, cache: torch.Tensor, inputs: tuple) -> torch.Tensor:
        """One engine step; `inputs` = step_inputs(...), made outside so the step can be graph-captured."""
        s = self.shape
        token_ids, rows = inputs
        x = self.embed[token_ids]
        kv_dim = s.kv_heads * s.head_dim
        for layer in range(s.layers):
            h = F.rms_norm(x, (s.hidden,))
            q, k, v = (h @ self.qkv[layer].T).split([s.hidden, kv_dim, kv_dim], dim=-1)
            attn = torch.empty_like(q)
            if prefill:
                attn[:prefill] = _prefill_attention(q[:prefill], k[:prefill], v[:prefill], cache, context, s)
            if decodes:
                attn[prefill:] = _decode_attention(q[prefill:], cache, decodes, context, s)
            x = x + attn @ self.out[layer].T
            gate, up = (F.rms_norm(x, (s.hidden,)) @ self.gate_up[layer].T).chunk(2, dim=-1)
            x = x + (F.silu(gate) * up) @ self.down[layer].T
        return F.rms_norm(x[rows], (s.hidden,)) @ self.lm_head.T


def step_inputs(shape: Shape, prefill: int, decodes: int, device: str) -> tuple:
    """Token ids of the step and the rows whose logits are taken (the prefill's last, every decode)."""
    tokens = prefill + decodes
    last = [prefill - 1] if prefill else []
    token_ids = torch.randint(0, shape.vocab, (tokens,), device=device)
    return token_ids, torch.tensor(last + list(range(prefill, tokens)), device=device)


def _prefill_attention(q, k, v, cache, context, s: Shape) -> torch.Tensor:
    """New tokens attend to the cache and causally to each other (lower-right causal bias). KV heads are
    expanded to the query heads: a copy of O(context) bytes, small next to the O(n x context) attention, and it
    keeps SDPA on its flash / memory-efficient kernels, which take no GQA with a causal bias."""
    n, group = q.shape[0], s.heads // s.kv_heads
    past_k, past_v = cache[0, :context], cache[1, :context]  # (context, kv_heads, head_dim)
    keys = torch.cat([past_k, k.view(n, s.kv_heads, s.head_dim)]).repeat_interleave(group, dim=1).transpose(0, 1)
    vals = torch.cat([past_v, v.view(n, s.kv_heads, s.head_dim)]).repeat_interleave(group, dim=1).transpose(0, 1)
    qh = q.view(n, s.heads, s.head_dim).transpose(0, 1)
    bias = causal_lower_right(n, context + n)
    out = F.scaled_dot_product_attention(qh[None], keys[None], vals[None], attn_mask=bias)
    return out[0].transpose(0, 1).reshape(n, s.hidden)


def _decode_attention(q, cache, decodes, context, s: Shape) -> torch.Tensor:
    """One new token per sequence, no mask: each KV head's group of query heads becomes a query length of
    `group`, so the kernel reads every cached K/V byte once (as a paged decode kernel does)."""
    group = s.heads // s.kv_heads
    keys = cache[0, : decodes * context].view(decodes, context, s.kv_heads, s.head_dim).transpose(1, 2)
    vals = cache[1, : decodes * context].view(decodes, context, s.kv_heads, s.head_dim).transpose(1, 2)
    qh = q.view(decodes, s.kv_heads, group, s.head_dim)
    out = F.scaled_dot_product_attention(qh, keys, vals)
    return out.reshape(decodes, s.hidden)


def _timer(device: str):
    """measure(fn, repeat) -> median seconds of one call: CUDA events on a GPU, perf_counter on CPU."""
    if device.startswith("cuda"):

        def measure(fn, repeat):
            times = []
            for _ in range(repeat):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            return statistics.median(times)
    else:

        def measure(fn, repeat):
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return statistics.median(times)

    return measure


def _graphed(fn, device: str):
    """fn captured as a CUDA graph, replayed by the returned callable; None on CPU or when capture fails
    (the point is then timed eagerly only, and the row says so)."""
    if not device.startswith("cuda"):
        return None
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()  # kernels choose their algorithms outside the capture
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph
    except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager timing
        print(f"graph capture failed ({type(exc).__name__}: {exc}); eager only", file=sys.stderr)
        torch.cuda.synchronize()
        return None


def measure_ceilings(device: str, dtype: torch.dtype) -> dict:
    """What the card reaches: a large bf16 GEMM (FLOP/s) and a device-to-device copy (bytes/s, read + write)."""
    if not device.startswith("cuda"):
        return {}
    measure = _timer(device)
    gemm_s = _time_gemm(measure, dtype, device)
    copy_s = _time_copy(measure, device)
    torch.cuda.empty_cache()
    return {"gemm_bf16_flops": 2 * 8192**3 / gemm_s, "copy_bytes_per_s": 2 * 2 * 1024**3 / copy_s}


def _time_gemm(measure, dtype: torch.dtype, device: str) -> float:
    a = torch.randn(8192, 8192, dtype=dtype, device=device)
    b = torch.randn(8192, 8192, dtype=dtype, device=device)
    measure(lambda: a @ b, 3)
    return measure(lambda: a @ b, 10)


def _time_copy(measure, device: str) -> float:
    src = torch.empty(2 * 1024**3, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    measure(lambda: dst.copy_(src), 2)
    return measure(lambda: dst.copy_(src), 10)


def datasheet_peaks(device: str, toy_flops: float, toy_bandwidth: float) -> tuple[float, float, str]:
    """(dense bf16 FLOP/s, HBM bytes/s, name): SXM datasheet figures, the same the simulator's GPU presets use."""
    if not device.startswith("cuda"):
        return toy_flops, toy_bandwidth, "cpu"
    name = torch.cuda.get_device_name()
    if "H200" in name:
        return 989e12, 4.8e12, name
    return 989e12, 3.35e12, name  # H100 SXM; another card gets H100 peaks and its name in the report


def grid_points(grid: dict, kv_budget_tokens: int) -> list[tuple[int, int, int]]:
    points = []
    for p in grid["prefill"]:
        for n in grid["decodes"]:
            for c in grid["context"]:
                if (p or n) and max(n * c, c) <= kv_budget_tokens:
                    points.append((p, n, c))
    return points


def predict(hw: Hardware, p: int, n: int, c: int) -> float:
    """sglang-mixed step cost: operators in sequence (what a plain forward does)."""
    return hw.gemm_s(p + n) + (hw.attn_prefill_s(p, c) if p else 0.0) + hw.kv_read_per_token_s * n * c + hw.fixed_s


def fit(hw: Hardware, rows: list[dict], steps: int = 1500) -> Hardware:
    """Least squares on log step time over the constants (positive by construction), torch autograd + Adam.
    Starts from the defaults, with the fixed cost at half the fastest step (it bounds every step from below)."""
    measured = torch.tensor([r["measured_s"] for r in rows], dtype=torch.float64)
    p, n, ctx = (
        torch.tensor([float(r[k]) for r in rows], dtype=torch.float64) for k in ("prefill", "decodes", "context")
    )
    init = {name: getattr(hw, name) for name in FIT}
    init["fixed_s"] = 0.5 * float(measured.min())
    theta = torch.tensor([math.log(init[name]) for name in FIT], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        pred = _predict_t(hw, dict(zip(FIT, theta.exp(), strict=True)), p, n, ctx)
        loss = ((pred.log() - measured.log()) ** 2).mean()
        loss.backward()
        opt.step()
    return replace(hw, **{k: float(v) for k, v in zip(FIT, theta.detach().exp(), strict=True)})


def _predict_t(hw: Hardware, c: dict, p: torch.Tensor, n: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """predict() over tensors of grid points, differentiable in the constants `c`."""
    tokens = p + n
    eff = c["gemm_eff_max"] * tokens / (tokens + c["gemm_half_tokens"])
    compute = 2.0 * hw.params * tokens / (hw.peak_flops * eff)
    weights = hw.weight_bytes / (hw.peak_bandwidth * c["bw_eff"])
    gemm = torch.maximum(compute, weights)
    attn = 4.0 * hw.layers * hw.hidden * (ctx + p / 2.0) * p / (hw.peak_flops * c["attn_eff"])
    kv = hw.kv_bytes_per_token * n * ctx / (hw.peak_bandwidth * c["bw_eff"])
    return gemm + attn + kv + c["fixed_s"]


def time_point(model, shape, point, cache, device, measure, repeat) -> dict:
    """One grid point: eager time, and on CUDA the graph-replay time (the fit's `measured_s` when present)."""
    p, n, c = point
    inputs = step_inputs(shape, p, n, device)
    fn = lambda: model.step(p, n, c, cache, inputs)  # noqa: E731
    measure(fn, 2)  # warm-up (allocator, kernel selection)
    row = {"prefill": p, "decodes": n, "context": c, "eager_s": measure(fn, repeat)}
    graph = _graphed(fn, device)
    if graph is not None:
        graph.replay()
        row["graph_s"] = measure(graph.replay, repeat)
        del graph
    row["measured_s"] = row.get("graph_s", row["eager_s"])
    return row


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    shape, grid = (TOY, TOY_GRID) if args.toy else (Shape(), FULL_GRID)
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    torch.manual_seed(0)
    ceilings = measure_ceilings(args.device, dtype)
    model = Model(shape, dtype, args.device)
    dbytes = torch.finfo(dtype).bits // 8
    kv_tokens = args.kv_tokens or (max(grid["decodes"]) * max(grid["context"]) if args.toy else 420_000)
    cache = torch.randn(2, kv_tokens, shape.kv_heads, shape.head_dim, dtype=dtype, device=args.device)
    peak_flops, peak_bw, device_name = datasheet_peaks(args.device, args.toy_peak_flops, args.toy_peak_bandwidth)
    hw = Hardware(
        shape.params, shape.params * dbytes, shape.layers * shape.kv_heads * shape.head_dim * 2 * dbytes,
        shape.layers, shape.hidden, peak_flops, peak_bw,
    )  # fmt: skip
    measure = _timer(args.device)
    rows = []
    for point in grid_points(grid, kv_tokens):
        if time.perf_counter() - started > args.budget_s:
            print(f"time budget reached after {len(rows)} points", file=sys.stderr)
            break
        rows.append(time_point(model, shape, point, cache, args.device, measure, args.repeat))
        r = rows[-1]
        graph = f" graph {r['graph_s'] * 1e3:8.3f} ms" if "graph_s" in r else ""
        print(f"prefill {point[0]:>5} decodes {point[1]:>4} context {point[2]:>6}: eager {r['eager_s'] * 1e3:8.3f} ms"
              f"{graph}", flush=True)  # fmt: skip
    train = [r for i, r in enumerate(rows) if i % 4 != 3]
    held = [r for i, r in enumerate(rows) if i % 4 == 3]
    fitted = fit(hw, train, steps=args.fit_steps)
    for r in rows:
        r["predicted_s"] = predict(fitted, r["prefill"], r["decodes"], r["context"])
        r["default_s"] = predict(hw, r["prefill"], r["decodes"], r["context"])
    errors = [abs(r["predicted_s"] / r["measured_s"] - 1) for r in held] or [float("nan")]
    train_errors = [abs(r["predicted_s"] / r["measured_s"] - 1) for r in train] or [float("nan")]
    default_errors = [abs(r["default_s"] / r["measured_s"] - 1) for r in held] or [float("nan")]
    result = {
        "device": device_name,
        "torch": torch.__version__,
        "peaks": {"flops": peak_flops, "bandwidth": peak_bw},
        "measured_ceilings": ceilings,
        "kv_tokens": kv_tokens,
        "shape": asdict(shape),
        "fitted": {k: getattr(fitted, k) for k in FIT},
        "defaults": {k: getattr(hw, k) for k in FIT},
        "train_mean_abs_error": statistics.fmean(train_errors),
        "held_out_points": len(held),
        "held_out_mean_abs_error": statistics.fmean(errors),
        "held_out_max_abs_error": max(errors),
        "defaults_held_out_mean_abs_error": statistics.fmean(default_errors),
        "rows": rows,
        "wall_s": time.perf_counter() - started,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--toy", action="store_true", help="tiny model and grid (CPU tests)")
    ap.add_argument("--out", default="bench/results-gpu-calibration.json")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=360.0, help="stop timing new points after this long")
    ap.add_argument("--fit-steps", type=int, default=1500)
    ap.add_argument("--kv-tokens", type=int, default=0, help="KV buffer size (default: 420k tokens, H100-sized)")
    ap.add_argument("--toy-peak-flops", type=float, default=1e11)
    ap.add_argument("--toy-peak-bandwidth", type=float, default=2e10)
    return ap


if __name__ == "__main__":
    run(parser().parse_args())
