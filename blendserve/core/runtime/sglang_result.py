"""SGLang /generate items (one per copy) -> GenerateResult, shared by the HTTP and Engine adapters.

Item shape (srt/managers/tokenizer_manager.py meta_info, 2507-2620): `meta_info.finish_reason` is a dict
({"type": "stop"|"length"|"abort", ...}); logprobs come as (logprob, token_id, text|None) tuples in
`output_token_logprobs`, and per position a list of such tuples or None in `output_top_logprobs`."""

from __future__ import annotations

from blendserve.core.runtime.base import Aborted, Choice, GenerateRequest, GenerateResult, RuntimeFailure
from blendserve.core.runtime.token_text import TokenText


def _fallback_entry(logprob: float, text: str | None, top: list | None) -> dict:
    """No tokenizer here: SGLang's per-token text (a split UTF-8 character shows as U+FFFD)."""
    return {
        "token": text or "",
        "logprob": logprob,
        "bytes": list((text or "").encode()),
        "top_logprobs": [{"token": t or "", "logprob": v, "bytes": list((t or "").encode())} for v, _, t in top or []],
    }


def _logprobs(meta: dict, token_text: TokenText | None) -> list[dict] | None:
    if "output_token_logprobs" not in meta:
        return None
    tokens = meta["output_token_logprobs"] or []
    matched = (meta.get("finish_reason") or {}).get("matched")
    if tokens and isinstance(matched, int) and not isinstance(matched, bool) and tokens[-1][1] == matched:
        tokens = tokens[:-1]  # the stop token is not in the text; OpenAI lists no entry for it
    tops = meta.get("output_top_logprobs") or [None] * len(tokens)
    out = []
    for (logprob, token_id, text), top in zip(tokens, tops, strict=False):
        if token_text is None:
            out.append(_fallback_entry(logprob, text, top))
        else:
            out.append(token_text.entry(logprob, token_id, [(v, t) for v, t, _ in top or []]))
    return out


def parse_items(
    request: GenerateRequest, items: object, aborted: bool, token_text: TokenText | None = None
) -> tuple[GenerateResult, list[tuple[int, float]]]:
    """The result, and (completion tokens, e2e seconds) per copy for the deadline estimator.

    Raises Aborted when a copy was aborted and the caller asked for it (`aborted`), RuntimeFailure (retryable)
    when SGLang aborted it on its own or the answer is malformed."""
    if not isinstance(items, list) or len(items) != request.params.n:
        raise RuntimeFailure(f"SGLang answered {type(items).__name__} for {request.params.n} item(s)")
    choices, prompt, cached, retractions, timings = [], 0, 0, 0, []
    try:
        for item in items:
            meta = item["meta_info"]
            finish = meta.get("finish_reason") or {}
            if finish.get("type") == "abort":
                if aborted:
                    raise Aborted(f"aborted on request: {finish.get('message')}")
                raise RuntimeFailure(f"SGLang aborted the request: {finish.get('message')}")
            prompt, cached = int(meta["prompt_tokens"]), max(cached, int(meta.get("cached_tokens") or 0))
            retractions += int(meta.get("num_retractions") or 0)
            completion = int(meta["completion_tokens"])
            timings.append((completion, float(meta.get("e2e_latency") or 0.0)))
            reason = "length" if finish.get("type") == "length" else "stop"
            choices.append(Choice(str(item.get("text", "")), completion, reason, _logprobs(meta, token_text)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RuntimeFailure(f"SGLang answered a malformed item: {type(exc).__name__}: {exc}") from exc
    return GenerateResult(request.rid, tuple(choices), prompt, cached, retractions), timings
