"""Type and range checks for the fields of one request body (pure: a dict in, the first problem or None out).

What a line's body can get wrong on its own — a mistyped or out-of-range field — fails that line alone with
the 400 the hosted API would have given it; the batch goes on. `null` for an optional field means its
default, as on OpenAI. Fields not listed here are left to openai_format (supported or `unsupported_parameter`).
Error codes and message shapes follow the hosted API's (`invalid_type`, `decimal_above_max_value`, ...)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_STRING = 1 << 20  # a string field longer than this is not a sampling parameter anyone means


@dataclass(frozen=True)
class FieldProblem:
    code: str
    message: str
    param: str


Check = Callable[[str, object], "FieldProblem | None"]


def _got(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _invalid_type(name: str, expected: str, value: object) -> FieldProblem:
    return FieldProblem(
        "invalid_type", f"Invalid type for '{name}': expected {expected}, but got {_got(value)} instead.", name
    )


def _bound(name: str, value: float, lo: float | None, hi: float | None, kind: str) -> FieldProblem | None:
    if lo is not None and value < lo:
        return FieldProblem(
            f"{kind}_below_min_value",
            f"Invalid '{name}': {kind} below minimum value. Expected a value >= {lo}, but got {value} instead.",
            name,
        )
    if hi is not None and value > hi:
        return FieldProblem(
            f"{kind}_above_max_value",
            f"Invalid '{name}': {kind} above maximum value. Expected a value <= {hi}, but got {value} instead.",
            name,
        )
    return None


def number(lo: float | None = None, hi: float | None = None) -> Check:
    def check(name: str, value: object) -> FieldProblem | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _invalid_type(name, "a decimal", value)
        if value != value or value in (float("inf"), float("-inf")):
            return FieldProblem("invalid_value", f"Invalid '{name}': the value must be a finite number.", name)
        return _bound(name, value, lo, hi, "decimal")

    return check


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    def check(name: str, value: object) -> FieldProblem | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return _invalid_type(name, "an integer", value)
        return _bound(name, value, lo, hi, "integer")

    return check


def boolean(name: str, value: object) -> FieldProblem | None:
    return None if isinstance(value, bool) else _invalid_type(name, "a boolean", value)


def string(max_len: int = MAX_STRING) -> Check:
    def check(name: str, value: object) -> FieldProblem | None:
        if not isinstance(value, str):
            return _invalid_type(name, "a string", value)
        if len(value) > max_len:
            return FieldProblem(
                "string_above_max_length",
                f"Invalid '{name}': string too long. Expected a string with maximum length {max_len}, "
                f"but got a string with length {len(value)} instead.",
                name,
            )
        return None

    return check


def obj(name: str, value: object) -> FieldProblem | None:
    return None if isinstance(value, dict) else _invalid_type(name, "an object", value)


def stop(name: str, value: object) -> FieldProblem | None:
    if isinstance(value, str):
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        return _invalid_type(name, "a string or an array of strings", value)
    if len(value) > 4:
        return FieldProblem(
            "array_above_max_length",
            f"Invalid '{name}': array too long. Expected an array with maximum length 4, "
            f"but got an array with length {len(value)} instead.",
            name,
        )
    return None


def messages(name: str, value: object) -> FieldProblem | None:
    if not isinstance(value, list):
        return _invalid_type(name, "an array", value)
    if not value:
        return FieldProblem(
            "empty_array", f"Invalid '{name}': empty array. Expected an array with minimum length 1.", name
        )
    for i, msg in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(msg, dict):
            return _invalid_type(where, "an object", msg)
        if not isinstance(msg.get("role"), str):
            return _invalid_type(f"{where}.role", "a string", msg.get("role"))
        content = msg.get("content")
        if content is not None and not isinstance(content, (str, list)):
            return _invalid_type(f"{where}.content", "a string or an array of content parts", content)
    return None


def text_or_tokens(name: str, value: object) -> FieldProblem | None:
    if isinstance(value, str):
        return None
    if isinstance(value, list) and value:
        return None  # element shapes (strings, token ids, lists of them) are checked where they are tokenized
    return _invalid_type(name, "a string or a non-empty array", value)


SAMPLING: dict[str, Check] = {
    "model": string(256),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "n": integer(1, 128),
    "stop": stop,
    "seed": integer(),
    "frequency_penalty": number(-2, 2),
    "presence_penalty": number(-2, 2),
    "stream": boolean,
    "stream_options": obj,
    "user": string(),
    "metadata": obj,
    "store": boolean,
    "service_tier": string(64),
    "prompt_cache_key": string(),
    "safety_identifier": string(),
}
FIELDS: dict[str, dict[str, Check]] = {
    "/v1/chat/completions": {
        **SAMPLING,
        "messages": messages,
        "max_tokens": integer(1),
        "max_completion_tokens": integer(1),
        "logprobs": boolean,
        "top_logprobs": integer(0, 20),
        "parallel_tool_calls": boolean,
    },
    "/v1/completions": {
        **SAMPLING,
        "prompt": text_or_tokens,
        "max_tokens": integer(0),
        "logprobs": integer(0, 5),
        "echo": boolean,
        "suffix": string(),
        "best_of": integer(0, 20),
    },
    "/v1/responses": {
        **SAMPLING,
        "input": text_or_tokens,
        "instructions": string(),
        "max_output_tokens": integer(1),
        "background": boolean,
        "parallel_tool_calls": boolean,
        "truncation": string(16),
    },
    "/v1/embeddings": {
        "model": string(256),
        "input": text_or_tokens,
        "encoding_format": string(16),
        "dimensions": integer(1),
        "user": string(),
    },
}


def first_problem(endpoint: str, body: dict) -> FieldProblem | None:
    """The first mistyped or out-of-range field of `body` (None values are defaults and pass)."""
    checks = FIELDS.get(endpoint, {})
    for name, value in body.items():
        check = checks.get(name)
        if check is None or value is None:
            continue
        problem = check(name, value)
        if problem is not None:
            return problem
    return None
