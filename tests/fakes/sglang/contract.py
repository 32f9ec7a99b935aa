"""SGLang 0.5.23's own /generate contract, loaded from the real wheel, plus its SamplingParams.verify rules.

`sglang/api/v1/api_types.py` is generated, standalone code (it imports only msgspec): the stand-in validates
every /generate body with its `GenerateRequest.from_json_value`, as SGLang's http_server does
(srt/entrypoints/http_server.py:933-940, srt/entrypoints/api_contract.py). scripts/fetch_sglang_contract.sh
(run by .ci/run) downloads the wheel with pip and extracts the file into CONTRACT_DIR; when it is missing
(offline), tests that need it skip with SKIP_REASON and the stand-in falls back to a key-name check.

`verify_sampling` ports `SamplingParams.verify` (srt/sampling/sampling_params.py:252-312), which is not
standalone (it imports torch-side modules); the port keeps its messages."""

from __future__ import annotations

import importlib.util
import math
import os
from functools import lru_cache
from pathlib import Path

VERSION = "0.5.23"
CONTRACT_DIR = Path(
    os.environ.get("BLENDSERVE_SGLANG_CONTRACT_DIR", Path.home() / ".cache" / "blendserve" / f"sglang-{VERSION}")
)
SKIP_REASON = (
    f"SGLang {VERSION}'s api_types.py is not in {CONTRACT_DIR} (offline?): run scripts/fetch_sglang_contract.sh"
)
SAMPLING_KEYS = frozenset(
    [
        "max_new_tokens",
        "stop",
        "stop_token_ids",
        "stop_regex",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "min_new_tokens",
        "n",
        "json_schema",
        "regex",
        "ebnf",
        "structural_tag",
        "ignore_eos",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "no_stop_trim",
        "stream_interval",
        "logit_bias",
        "sampling_seed",
        "custom_params",
        "beam_width",
        "watermark",
        "choice",
    ]
)


@lru_cache(maxsize=1)
def api_types():
    """The wheel's api_types module, or None when it has not been fetched."""
    path = CONTRACT_DIR / "api_types.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("sglang_0_5_23_api_types", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def contract_error(body: object) -> str | None:
    """What SGLang's contract gate says about a /generate body (None: accepted)."""
    types = api_types()
    if types is not None:
        try:
            types.GenerateRequest.from_json_value(body)
        except types.JsonContractError as exc:
            return str(exc)
        return None
    params = body.get("sampling_params") if isinstance(body, dict) else None
    for p in params if isinstance(params, list) else [params or {}]:
        unknown = set(p) - SAMPLING_KEYS if isinstance(p, dict) else set()
        if unknown:
            return f"unknown field `{sorted(unknown)[0]}`, expected one of `max_new_tokens`, ..."
    return None


def verify_sampling(p: dict, vocab_size: int) -> str | None:
    """SamplingParams.verify's verdict on one item's sampling_params (defaults as in SamplingParams)."""
    temperature, top_p = p.get("temperature", 1.0), p.get("top_p", 1.0)
    max_new, min_new = p.get("max_new_tokens", 128), p.get("min_new_tokens", 0)
    top_k, seed = p.get("top_k", -1), p.get("sampling_seed")
    checks = [
        (
            not math.isfinite(temperature) or temperature < 0.0,
            f"temperature must be a non-negative finite number, got {temperature}.",
        ),
        (not 0.0 < top_p <= 1.0, f"top_p must be in (0, 1], got {top_p}."),
        (not 0.0 <= p.get("min_p", 0.0) <= 1.0, f"min_p must be in [0, 1], got {p.get('min_p')}."),
        (top_k < 1 and top_k != -1, f"top_k must be -1 (disable) or at least 1, got {top_k}."),
        (
            not -2.0 <= p.get("frequency_penalty", 0.0) <= 2.0,
            f"frequency_penalty must be in [-2, 2], got {p.get('frequency_penalty')}.",
        ),
        (
            not -2.0 <= p.get("presence_penalty", 0.0) <= 2.0,
            f"presence_penalty must be in [-2, 2], got {p.get('presence_penalty')}.",
        ),
        (not 0.0 < p.get("repetition_penalty", 1.0) <= 2.0, "repetition_penalty must be in (0, 2] (1.0 = no penalty)."),
        (min_new < 0, f"min_new_tokens must be in [0, max_new_tokens], got {min_new}."),
        (max_new is not None and max_new < 0, f"max_new_tokens must be at least 0, got {max_new}."),
        (
            max_new is not None and min_new > max_new,
            f"min_new_tokens must be in [0, max_new_tokens({max_new})], got {min_new}.",
        ),
        (
            any(not 0 <= int(t) < vocab_size for t in p.get("logit_bias") or {}),
            f"logit_bias must has keys in [0, {vocab_size - 1}].",
        ),
        (
            seed is not None and not -(2**63) <= seed <= 2**63 - 1,
            f"sampling_seed must be in [-2**63, 2**63 - 1], got {seed}.",
        ),
    ]
    return next((message for failed, message in checks if failed), None)
