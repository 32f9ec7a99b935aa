"""`/v1/responses` lines: a Responses body -> the chat body openai_format runs; a result -> a Response object.
Pure. Text in, text out: tools, reasoning, background and stored conversation state fail the line with a 400."""

from __future__ import annotations

import secrets

from blendserve.core import ids
from blendserve.core.runtime.base import GenerateResult, UnsupportedParameter

# Fields that change nothing for a text-only batch line (echoed or ignored).
PASSIVE = {"model", "metadata", "store", "user", "service_tier", "prompt_cache_key", "safety_identifier", "stream"}
MAPPED = {"input", "instructions", "max_output_tokens", "temperature", "top_p"}
NEUTRAL_DEFAULTS = {  # accepted when they ask for nothing beyond plain text
    "tools": [],
    "tool_choice": ("auto", "none"),
    "parallel_tool_calls": (True, False),
    "truncation": ("disabled", "auto"),
    "include": [],
}
INPUT_ROLES = ("system", "developer", "user", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text")


def _unsupported(param: str, what: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"{what} is not supported by this server.", param=param)


def _check_extras(body: dict) -> None:
    for key, value in body.items():
        if key in PASSIVE or key in MAPPED or value is None:
            continue
        if key in NEUTRAL_DEFAULTS:
            allowed = NEUTRAL_DEFAULTS[key]
            if value == allowed or (isinstance(allowed, tuple) and value in allowed):
                continue
            raise _unsupported(key, f"'{key}' other than its default")
        if key == "text" and isinstance(value, dict) and (value.get("format") or {"type": "text"}) == {"type": "text"}:
            continue
        raise _unsupported(key, f"The parameter '{key}'")


def _part_text(part: object, where: str) -> str:
    if isinstance(part, dict) and part.get("type") in TEXT_PARTS and isinstance(part.get("text"), str):
        return part["text"]
    raise _unsupported(where, "Only text content parts (input_text)")


def _message(item: object, i: int) -> dict:
    where = f"input[{i}]"
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        raise _unsupported(where, "Only message items")
    role, content = item.get("role"), item.get("content")
    if role not in INPUT_ROLES:
        raise UnsupportedParameter(f"{where}.role must be one of {', '.join(INPUT_ROLES)}.", param=f"{where}.role")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "".join(_part_text(p, f"{where}.content") for p in content)
    else:
        raise UnsupportedParameter(f"{where}.content must be a string or a list of parts.", param=f"{where}.content")
    return {"role": "system" if role == "developer" else role, "content": text}


def to_chat_body(body: dict) -> dict:
    """The chat-completions body that runs this Responses body (instructions first, as a system message)."""
    _check_extras(body)
    raw = body.get("input")
    if isinstance(raw, str):
        messages = [{"role": "user", "content": raw}]
    elif isinstance(raw, list) and raw:
        messages = [_message(item, i) for i, item in enumerate(raw)]
    else:
        raise UnsupportedParameter("input must be a string or a non-empty list of messages.", param="input")
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise UnsupportedParameter("instructions must be a string.", param="instructions")
        messages.insert(0, {"role": "system", "content": instructions})
    chat = {"model": body.get("model"), "messages": messages}
    renames = (("max_output_tokens", "max_completion_tokens"), ("temperature", "temperature"), ("top_p", "top_p"))
    for src, dst in renames:
        if body.get(src) is not None:
            chat[dst] = body[src]
    return chat


def response_object(model: str, result: GenerateResult, request: dict) -> dict:
    """A Response object (`object: "response"`) with one assistant output_text message."""
    choice = result.choices[0]
    incomplete = choice.finish_reason == "length"
    now = ids.now()
    return {
        "id": "resp_" + secrets.token_hex(24),
        "object": "response",
        "created_at": now,
        "completed_at": now,
        "status": "incomplete" if incomplete else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [
            {
                "id": "msg_" + secrets.token_hex(24),
                "type": "message",
                "status": "incomplete" if incomplete else "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": choice.text, "annotations": [], "logprobs": []}],
            }
        ],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": {
            "input_tokens": result.prompt_tokens,
            "input_tokens_details": {"cached_tokens": result.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": result.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }
