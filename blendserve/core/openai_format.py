"""OpenAI request bodies -> token ids + sampling params; runtime results -> OpenAI response bodies. Pure.

Unsupported fields raise UnsupportedParameter: the line fails with a 400 body in the error file, the batch
goes on. Fields that change nothing for a batch (user, metadata, store, service_tier, stream_options) pass."""

from __future__ import annotations

import base64
import secrets
import struct
from collections.abc import Sequence

from blendserve.core import ids
from blendserve.core.responses_format import response_object, to_chat_body
from blendserve.core.runtime.base import (
    EmbedParams,
    EmbedResult,
    GenerateResult,
    ModelInfo,
    SamplingParams,
    Tokenizer,
    UnsupportedParameter,
)

IGNORED = {
    "model",
    "user",
    "metadata",
    "store",
    "service_tier",
    "stream_options",
    "parallel_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
}
COMMON = {
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "stream",
}
CHAT_ONLY = {"messages", "max_completion_tokens", "top_logprobs"}
COMPLETION_ONLY = {"prompt", "echo", "suffix", "best_of"}
DEFAULT_MAX_TOKENS = 256  # SGLang defaults to 128; OpenAI to "until the context ends": we pick and always send


class InvalidLineParameter(UnsupportedParameter):
    """A per-line 400 with the hosted API's error code (`context_length_exceeded`, `invalid_type`, ...)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message, param)
        self.code = code


def _opt(body: dict, name: str, default):
    """An optional field: absent or null means its default, as on OpenAI."""
    value = body.get(name)
    return default if value is None else value


def _check_fields(body: dict, allowed: set[str]) -> None:
    for key, value in body.items():
        if key in IGNORED or key in allowed:
            continue
        if value is None:
            continue
        raise UnsupportedParameter(f"The parameter '{key}' is not supported by this server.", param=key)


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise UnsupportedParameter("Only text content parts are supported.", param="messages")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    if content is None:
        return ""
    raise UnsupportedParameter("Message content must be a string or a list of text parts.", param="messages")


def _sampling(body: dict, info: ModelInfo, prompt_len: int, chat: bool) -> SamplingParams:
    max_tokens = body.get("max_completion_tokens") if chat else None
    max_tokens = max_tokens if max_tokens is not None else body.get("max_tokens")
    room = info.max_context_tokens - prompt_len
    if max_tokens is None:
        max_tokens = max(1, min(DEFAULT_MAX_TOKENS, room))
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise UnsupportedParameter("max_tokens must be a positive integer.", param="max_tokens")
    if max_tokens > room:
        raise InvalidLineParameter(
            f"This model's maximum context length is {info.max_context_tokens} tokens. However, you requested "
            f"{prompt_len + max_tokens} tokens ({prompt_len} in the messages, {max_tokens} in the completion). "
            "Please reduce the length of the messages or completion.",
            param="messages" if chat else "prompt",
            code="context_length_exceeded",
        )
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > 4 or not all(isinstance(s, str) for s in stops):
        raise UnsupportedParameter("stop must be a string or up to 4 strings.", param="stop")
    n = _opt(body, "n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > 16:
        raise UnsupportedParameter("n must be an integer from 1 to 16.", param="n")
    if body.get("stream"):
        raise UnsupportedParameter("Streaming is not available in a batch.", param="stream")
    logprobs = body.get("logprobs")
    top = int(body.get("top_logprobs") or 0) if chat else int(logprobs or 0)
    wants_logprobs = bool(logprobs) if chat else logprobs is not None
    if wants_logprobs and "logprobs" not in info.supports:
        raise UnsupportedParameter("logprobs are not supported by this runtime.", param="logprobs")
    return SamplingParams(
        max_new_tokens=max_tokens,
        temperature=float(_opt(body, "temperature", 1.0)),
        top_p=float(_opt(body, "top_p", 1.0)),
        stop=stops,
        seed=body.get("seed"),
        n=n,
        frequency_penalty=float(_opt(body, "frequency_penalty", 0.0)),
        presence_penalty=float(_opt(body, "presence_penalty", 0.0)),
        logprobs=wants_logprobs,
        top_logprobs=top,
    )


def to_generate(endpoint: str, body: dict, tokenizer: Tokenizer, info: ModelInfo) -> tuple[list[int], SamplingParams]:
    """Token ids (chat template applied) and sampling parameters for one input line's body. Raises only
    UnsupportedParameter (a per-line 400): a field of a type nobody checked cannot escape as a TypeError."""
    try:
        return _to_generate(endpoint, body, tokenizer, info)
    except UnsupportedParameter:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise InvalidLineParameter(f"The request body could not be read: {exc}", code="invalid_request") from exc


def _to_generate(endpoint: str, body: dict, tokenizer: Tokenizer, info: ModelInfo):
    if endpoint == "/v1/responses":
        try:
            return _to_generate("/v1/chat/completions", to_chat_body(body), tokenizer, info)
        except UnsupportedParameter as exc:  # name the Responses field, not the chat one it became
            if exc.param in ("messages", "max_completion_tokens"):
                exc.param = "input" if exc.param == "messages" else "max_output_tokens"
            raise
    if endpoint == "/v1/chat/completions":
        _check_fields(body, COMMON | CHAT_ONLY)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise UnsupportedParameter("messages must be a non-empty list.", param="messages")
        clean = []
        for msg in messages:
            if not isinstance(msg, dict) or msg.get("role") not in ("system", "developer", "user", "assistant"):
                raise UnsupportedParameter(
                    "Each message needs a role of system, developer, user or assistant.", param="messages"
                )
            role = "system" if msg["role"] == "developer" else msg["role"]
            clean.append({"role": role, "content": _text_of(msg.get("content"))})
        ids = tokenizer.encode_chat(clean)
        return ids, _sampling(body, info, len(ids), chat=True)
    if endpoint == "/v1/completions":
        _check_fields(body, COMMON | COMPLETION_ONLY)
        if body.get("echo") or body.get("suffix") or (body.get("best_of") or 1) != 1:
            raise UnsupportedParameter("echo, suffix and best_of are not supported.", param="echo")
        ids = _prompt_ids(body.get("prompt"), tokenizer)
        return ids, _sampling(body, info, len(ids), chat=False)
    if endpoint == "/v1/embeddings":
        return to_embed(body, tokenizer, info)
    raise UnsupportedParameter(f"The endpoint {endpoint} is not served by this runtime.", param="url")


def to_embed(body: dict, tokenizer: Tokenizer, info: ModelInfo) -> tuple[list[int], EmbedParams]:
    """Embedding inputs -> token ids. Returns the concatenated ids (what the scheduler's tree sees) too."""
    _check_fields(body, {"input", "encoding_format"})
    if "embeddings" not in info.supports:
        raise UnsupportedParameter("This runtime's model does not serve embeddings.", param="url")
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)):
        raw = [raw]
    if not isinstance(raw, list) or not raw or len(raw) > 2048:
        raise UnsupportedParameter("input must be a string, token ids, or a list of up to 2048 of them.", param="input")
    inputs = []
    for item in raw:
        ids = list(tokenizer.encode_text(item)) if isinstance(item, str) else item
        if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and t >= 0 for t in ids):
            raise UnsupportedParameter("Each input must be a non-empty string or list of token ids.", param="input")
        if len(ids) > info.max_context_tokens:
            raise UnsupportedParameter("An input is longer than the model's context.", param="input")
        inputs.append(tuple(ids))
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise UnsupportedParameter("encoding_format must be 'float' or 'base64'.", param="encoding_format")
    return [t for ids in inputs for t in ids], EmbedParams(tuple(inputs), fmt)


def embedding_body(model: str, params: EmbedParams, result: EmbedResult) -> dict:
    def encode(vec: tuple[float, ...]):
        if params.encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        return list(vec)

    data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(result.vectors)]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }


def _prompt_ids(prompt: object, tokenizer: Tokenizer) -> Sequence[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a one-element list of prompts is one prompt
    if isinstance(prompt, str):
        return tokenizer.encode_text(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and t >= 0 for t in prompt):
        return list(prompt)
    raise UnsupportedParameter(
        "prompt must be a string, a list with one string, or a list of token ids (one prompt per line).", param="prompt"
    )


def _usage(result: GenerateResult) -> dict:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def response_body(endpoint: str, model: str, result: GenerateResult, request: dict | None = None) -> dict:
    """The response body of one line; `request` (the line's body) is echoed by Responses objects only."""
    if endpoint == "/v1/responses":
        return response_object(model, result, request or {})
    if endpoint == "/v1/chat/completions":
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text, "refusal": None},
                "logprobs": {"content": c.logprobs, "refusal": None} if c.logprobs is not None else None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(result.choices)
        ]
        return _completion_envelope("chatcmpl-", "chat.completion", model, choices, result)
    choices = [
        {
            "index": i,
            "text": c.text,
            "finish_reason": c.finish_reason,
            "logprobs": _completion_logprobs(c.logprobs) if c.logprobs is not None else None,
        }
        for i, c in enumerate(result.choices)
    ]
    return _completion_envelope("cmpl-", "text_completion", model, choices, result)


def _completion_envelope(id_prefix: str, object_: str, model: str, choices: list[dict], result: GenerateResult):
    return {
        "id": id_prefix + secrets.token_hex(12),
        "object": object_,
        "created": ids.now(),
        "model": model,
        "choices": choices,
        "usage": _usage(result),
        "system_fingerprint": "blendserve-simulated" if result.simulated else "blendserve",
    }


def _completion_logprobs(entries: list[dict]) -> dict:
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", [])} for e in entries],
        "text_offset": [],
    }


def error_body(message: str, param: str | None, code: str = "invalid_request", type_: str = "invalid_request_error"):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
