"""Lower bounds on the time to run a workload (pure): the paper's T_opt and a tighter one.

T_opt (BlendServe paper §3): max((1 - s_o) T_comp, T_mem), T_comp = every prompt and output token at the GEMM
ceiling, s_o = the share of that compute perfect prefix sharing saves, T_mem = KV read by all decode steps.
It leaves out weight reads, prefill attention and per-step costs, which every engine mode pays.

T_tight adds them, and is still a bound for every mode (each mode's step costs at least this much):
  S_min   = max(longest output, sum d(d-1)/2 / KV capacity, sum d / max running)   decode steps any order needs
  compute = (unique prompt + output tokens) at the GEMM ceiling + prefill attention with perfect sharing
  memory  = T_mem + S_min * weight read
  T_tight = max(compute, memory) + S_min * fixed step cost

T_mode is the bound for one engine mode. T_tight lets compute and memory overlap, as only `overlapped` does; in
`sglang-mixed` a step runs its operators one after another, and in `sglang` prefill and decode are separate steps:
  sglang-mixed  max(all compute at the GEMM ceiling, S_min * weight read) + prefill attention + T_mem + S_min * fixed
  sglang        prompt compute + max(output compute, S_min * weight read) + prefill attention + T_mem + S_min * fixed
  overlapped    T_tight
Each is a sum of parts that every step of that mode pays at least (each GEMM is at least its compute at the
ceiling and at least one weight read), so no order does better; what is left between a policy and T_mode is what
any order could still win in that mode.
"""

from __future__ import annotations

from blendserve.core.sim.request import SimRequest
from blendserve.core.sim.step_cost import Hardware
from blendserve.core.sim.workloads import unique_prompt_tokens


def t_mem(requests: list[SimRequest], hw: Hardware) -> float:
    kv = sum(r.prompt_len * r.output_len + r.output_len * (r.output_len - 1) / 2 for r in requests)
    return kv * hw.kv_read_per_token_s


def t_opt(requests: list[SimRequest], hw: Hardware) -> float:
    prompt = sum(r.prompt_len for r in requests)
    output = sum(r.output_len for r in requests)
    t_comp = (prompt + output) * hw.best_comp_per_token_s
    s_o = (prompt - unique_prompt_tokens(requests)) / (prompt + output)
    return max((1 - s_o) * t_comp, t_mem(requests, hw))


def shared_prefill_attention(requests: list[SimRequest], hw: Hardware) -> float:
    seen: set[tuple] = set()
    total = 0.0
    for r in requests:
        key: tuple = ()
        depth = 0
        for seg_id, length in r.segments:
            key = key + (seg_id,)
            if key not in seen:
                seen.add(key)
                total += hw.attn_prefill_s(length, depth)
            depth += length
    return total


def min_decode_steps(requests: list[SimRequest], kv_capacity: int, max_running: int) -> float:
    outputs = [r.output_len for r in requests]
    return max(max(outputs), sum(d * (d - 1) / 2 for d in outputs) / kv_capacity, sum(outputs) / max_running)


def t_opt_tight(requests: list[SimRequest], hw: Hardware, kv_capacity: int, max_running: int) -> float:
    steps = min_decode_steps(requests, kv_capacity, max_running)
    unique = unique_prompt_tokens(requests)
    output = sum(r.output_len for r in requests)
    compute = (unique + output) * hw.best_comp_per_token_s + shared_prefill_attention(requests, hw)
    memory = t_mem(requests, hw) + steps * hw.weight_read_s
    return max(compute, memory) + steps * hw.fixed_s


def t_mode(requests: list[SimRequest], hw: Hardware, mode: str, kv_capacity: int, max_running: int) -> float:
    """The lower bound for one engine mode (module docstring): T_tight for overlapped, sequential sums otherwise."""
    if mode == "overlapped":
        return t_opt_tight(requests, hw, kv_capacity, max_running)
    steps = min_decode_steps(requests, kv_capacity, max_running)
    prompt = unique_prompt_tokens(requests) * hw.best_comp_per_token_s
    output = sum(r.output_len for r in requests) * hw.best_comp_per_token_s
    weights = steps * hw.weight_read_s
    gemm = prompt + max(output, weights) if mode == "sglang" else max(prompt + output, weights)
    return gemm + shared_prefill_attention(requests, hw) + t_mem(requests, hw) + steps * hw.fixed_s
