"""Our SamplingParams -> SGLang 0.5.23 `sampling_params`, checked first so that SGLang never rejects a body.

Every rule here is one SGLang applies (a 400 there, a per-line UnsupportedParameter here):
- the contract gate `GenerateRequest.from_json_value` (sglang/api/v1/api_types.py:177-215, 236): unknown keys
  and wrong JSON types; ints are not bools, floats take ints;
- `SamplingParams.verify` (srt/sampling/sampling_params.py:252-312): temperature finite >= 0, top_p in (0, 1],
  penalties in [-2, 2], max_new_tokens >= 0, sampling_seed an int in [-2**63, 2**63 - 1];
- prompt length < max_req_input_len (srt/managers/utils.py:259-287, set in srt/managers/tp_worker.py:568-572)
  and prompt + max_new_tokens <= context length (srt/managers/tokenizer_manager.py:1338-1376).
Copies of an n>1 request are sent as n items with rids rid.0, rid.1, ... (SGLang matches abort rids exactly,
srt/managers/tokenizer_manager.py:2241-2253), copy i seeded with seed + i so copies differ. Seeds only take
effect when SGLang runs with --enable-deterministic-inference (srt/sampling/sampling_batch_info.py:157-171).
"""

from __future__ import annotations

import math

from blendserve.core.runtime.base import GenerateRequest, ModelInfo, UnsupportedParameter

INT64 = (-(2**63), 2**63 - 1)


def copy_rids(request: GenerateRequest) -> list[str]:
    n = request.params.n
    return [request.rid] if n == 1 else [f"{request.rid}.{i}" for i in range(n)]


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UnsupportedParameter(f"{name} must be a finite number.", param=name)
    return float(value)


def _in_range(value: object, name: str, low: float, high: float, low_open: bool = False) -> float:
    number = _number(value, name)
    if number > high or number < low or (low_open and number == low):
        bracket = "(" if low_open else "["
        raise UnsupportedParameter(f"{name} must be in {bracket}{low:g}, {high:g}], got {number:g}.", param=name)
    return number


def check(request: GenerateRequest, info: ModelInfo) -> None:
    """Raise UnsupportedParameter for whatever SGLang would reject in this request (the line fails alone)."""
    p = request.params
    prompt = len(request.input_ids)
    if prompt == 0:
        raise UnsupportedParameter("The prompt is empty.", param="messages")
    if prompt >= info.input_limit():
        raise UnsupportedParameter(
            f"The prompt has {prompt} tokens; this server takes prompts shorter than {info.input_limit()} tokens.",
            param="messages",
        )
    if isinstance(p.max_new_tokens, bool) or not isinstance(p.max_new_tokens, int) or p.max_new_tokens < 0:
        raise UnsupportedParameter("max_tokens must be a non-negative integer.", param="max_tokens")
    if prompt + p.max_new_tokens > info.max_context_tokens:
        raise UnsupportedParameter(
            f"{prompt} prompt tokens + {p.max_new_tokens} max_tokens exceed the context of {info.max_context_tokens}.",
            param="max_tokens",
        )
    if isinstance(p.n, bool) or not isinstance(p.n, int) or p.n < 1:
        raise UnsupportedParameter("n must be a positive integer.", param="n")
    _in_range(p.temperature, "temperature", 0.0, math.inf)
    _in_range(p.top_p, "top_p", 0.0, 1.0, low_open=True)
    _in_range(p.frequency_penalty, "frequency_penalty", -2.0, 2.0)
    _in_range(p.presence_penalty, "presence_penalty", -2.0, 2.0)
    if not all(isinstance(s, str) for s in p.stop):
        raise UnsupportedParameter("stop must be a string or a list of strings.", param="stop")
    if p.seed is not None:
        if isinstance(p.seed, bool) or not isinstance(p.seed, int):
            raise UnsupportedParameter("seed must be an integer.", param="seed")
        if not INT64[0] <= p.seed <= INT64[1] - (p.n - 1):
            raise UnsupportedParameter("seed must be a 64-bit signed integer.", param="seed")
    if p.logprobs and (isinstance(p.top_logprobs, bool) or not isinstance(p.top_logprobs, int) or p.top_logprobs < 0):
        raise UnsupportedParameter("top_logprobs must be a non-negative integer.", param="top_logprobs")


def sampling_params(request: GenerateRequest, copy: int = 0) -> dict:
    """SGLang's sampling_params for copy `copy` of the request (call check() first)."""
    p = request.params
    out: dict[str, object] = {
        "max_new_tokens": p.max_new_tokens,
        "temperature": float(p.temperature),
        "top_p": float(p.top_p),
        "frequency_penalty": float(p.frequency_penalty),
        "presence_penalty": float(p.presence_penalty),
    }
    if p.stop:
        out["stop"] = list(p.stop)
    if p.seed is not None:
        out["sampling_seed"] = p.seed + copy
    return out


def generate_body(request: GenerateRequest, with_logprob_text: bool) -> dict:
    """The native /generate body: one item per copy, token ids in, never streamed."""
    rids = copy_rids(request)
    body = {
        "input_ids": [list(request.input_ids) for _ in rids],
        "sampling_params": [sampling_params(request, i) for i in range(len(rids))],
        "rid": rids,
        "stream": False,
    }
    if request.params.logprobs:
        body.update(return_logprob=True, top_logprobs_num=request.params.top_logprobs)
        if with_logprob_text:
            body["return_text_in_logprobs"] = True
    return body
