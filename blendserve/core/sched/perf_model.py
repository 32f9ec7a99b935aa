"""Per-request compute and memory time and density rho (BlendServe paper §4). Pure.

comp(r) = 2 (p_new + d) P / FLOPS                  p_new = prompt tokens not already shared
mem(r)  = (p d + d^2/2) * kv_bytes_per_token / BW  KV read by d decode steps over a growing context
rho     = comp / mem                               > 1 compute-heavy, < 1 memory-heavy
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: float  # P, parameters
    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    dtype_bytes: int = 2

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * self.kv_heads * self.head_dim * 2 * self.dtype_bytes  # K and V

    @property
    def weight_bytes(self) -> float:
        return self.params * self.dtype_bytes


@dataclass(frozen=True)
class GpuSpec:
    """Datasheet dense bf16 FLOP/s and HBM bandwidth, scaled by achievable-efficiency factors."""

    name: str
    peak_flops: float
    peak_bandwidth: float
    memory_bytes: float
    flops_efficiency: float = 0.7
    bandwidth_efficiency: float = 0.85

    @property
    def flops(self) -> float:
        return self.peak_flops * self.flops_efficiency

    @property
    def bandwidth(self) -> float:
        return self.peak_bandwidth * self.bandwidth_efficiency


MODELS = {
    "llama-3.1-8b": ModelSpec("llama-3.1-8b", 8.03e9, layers=32, kv_heads=8, head_dim=128, hidden=4096),
    "qwen2.5-7b": ModelSpec("qwen2.5-7b", 7.62e9, layers=28, kv_heads=4, head_dim=128, hidden=3584),
}
GPUS = {
    "a100-80gb": GpuSpec("a100-80gb", 312e12, 2.039e12, 80e9),
    "h100": GpuSpec("h100", 989e12, 3.35e12, 80e9),  # SXM5
    "h200": GpuSpec("h200", 989e12, 4.8e12, 141e9),
}


@dataclass(frozen=True)
class PerfModel:
    model: ModelSpec
    gpu: GpuSpec
    mem_fraction: float = 0.9  # share of GPU memory for weights + KV (SGLang's mem_fraction_static)

    @classmethod
    def preset(cls, model: str = "llama-3.1-8b", gpu: str = "h100") -> PerfModel:
        try:
            return cls(MODELS[model], GPUS[gpu])
        except KeyError as exc:
            raise ValueError(f"unknown preset {exc}; models {sorted(MODELS)}, gpus {sorted(GPUS)}") from None

    @property
    def comp_per_token(self) -> float:
        return 2.0 * self.model.params / self.gpu.flops

    @property
    def mem_per_token_read(self) -> float:
        return self.model.kv_bytes_per_token / self.gpu.bandwidth

    def comp(self, p_new: float, d: float) -> float:
        return (p_new + d) * self.comp_per_token

    def mem(self, p: float, d: float) -> float:
        return (p * d + d * d / 2.0) * self.mem_per_token_read

    def rho(self, p_new: float, p: float, d: float) -> float:
        m = self.mem(p, d)
        return self.comp(p_new, d) / m if m > 0 else float("inf")

    @property
    def kv_capacity_tokens(self) -> int:
        free = self.gpu.memory_bytes * self.mem_fraction - self.model.weight_bytes
        return max(0, int(free // self.model.kv_bytes_per_token))

    @property
    def weight_read_time(self) -> float:
        return self.model.weight_bytes / self.gpu.bandwidth
