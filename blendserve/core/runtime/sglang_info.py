"""What SGLang reports about itself -> our ModelInfo fields (shared by the HTTP and Engine adapters).

- KV capacity: with --dp-size > 1 the top-level `max_total_num_tokens` of /server_info is rank 0's alone
  (srt/entrypoints/engine.py:1579 spreads scheduler_infos[0]); the per-rank `internal_states[i].memory_usage
  .token_capacity` (srt/managers/scheduler_components/internal_state.py:76-83) are summed instead, or rank 0's
  figure is multiplied by dp_size when the ranks are not listed.
- Input limit: `max_req_input_len` = min(context - 1, kv - 1) - 5 (srt/managers/tp_worker.py:568-572); prompts
  of that length or longer are refused (srt/managers/utils.py:259-287).
- Context: /v1/models `max_model_len` (prompt + output must fit, srt/managers/tokenizer_manager.py:1338-1376)."""

from __future__ import annotations

from typing import cast

from blendserve.core.runtime.base import ModelInfo


def kv_capacity(server: dict) -> int | None:
    ranks: list[object] = [
        (state.get("memory_usage") or {}).get("token_capacity")
        for state in server.get("internal_states") or []
        if isinstance(state, dict)
    ]
    if ranks and all(isinstance(r, int) and r > 0 for r in ranks):
        return sum(cast(list[int], ranks))
    top = server.get("max_total_num_tokens")
    if isinstance(top, int) and top > 0:
        return top * max(1, int(server.get("dp_size") or 1))
    return None


def apply_server_info(info: ModelInfo, server: dict, context_len: int | None, name: str | None) -> None:
    """Update `info` in place (the dispatcher holds on to the object)."""
    info.kv_capacity_tokens = kv_capacity(server) or info.kv_capacity_tokens
    max_input = server.get("max_req_input_len")
    if isinstance(max_input, int) and max_input > 0:
        info.max_input_tokens = max_input
    if context_len:
        info.max_context_tokens = int(context_len)
    elif info.max_input_tokens:
        info.max_context_tokens = max(info.max_context_tokens, info.max_input_tokens)
    if name:
        info.name = name


def model_name(model_info: dict, override: str | None) -> str:
    return override or model_info.get("served_model_name") or model_info.get("model_path") or "sglang-model"
