"""Validation of a batch input file, line by line, like OpenAI's (pure: bytes in, rows or errors out)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

SUPPORTED_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
# The body field each endpoint cannot do without.
REQUIRED_BODY_FIELD = {"/v1/chat/completions": "messages", "/v1/completions": "prompt", "/v1/embeddings": "input"}


@dataclass(frozen=True)
class LineError:
    code: str
    message: str
    line: int | None = None
    param: str | None = None

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(frozen=True)
class ParsedLine:
    line: int
    custom_id: str
    body: dict
    raw_body: str


@dataclass
class FileVerdict:
    """What validation found: the model, the good line count, and errors (capped, with the true total)."""

    endpoint: str
    max_lines: int
    max_errors: int
    model: str | None = None
    valid_lines: int = 0
    error_count: int = 0
    errors: list[LineError] = field(default_factory=list)
    _seen_ids: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def add_error(self, err: LineError) -> None:
        self.error_count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(err)


def _missing(line: int, name: str) -> LineError:
    return LineError("missing_required_parameter", f"Missing required parameter: '{name}'.", line, name)


def check_line(raw: bytes, line_no: int, verdict: FileVerdict) -> ParsedLine | None:
    """Validate one non-blank line; record any error on the verdict and return the parsed line or None."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        verdict.add_error(LineError("invalid_encoding", "This line is not valid UTF-8.", line_no))
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        verdict.add_error(LineError("invalid_json_line", "This line is not parseable as valid JSON.", line_no))
        return None
    err = _shape_error(obj, line_no, verdict.endpoint)
    if err is None:
        err = _identity_error(obj, line_no, verdict)
    if err is not None:
        verdict.add_error(err)
        return None
    verdict.valid_lines += 1
    return ParsedLine(line_no, obj["custom_id"], obj["body"], orjson.dumps(obj["body"]).decode())


def _shape_error(obj: object, line_no: int, endpoint: str) -> LineError | None:
    if not isinstance(obj, dict):
        return LineError("invalid_request", "Each line must be a JSON object.", line_no)
    for name in ("custom_id", "method", "url", "body"):
        if name not in obj:
            return _missing(line_no, name)
    if not isinstance(obj["custom_id"], str) or not obj["custom_id"]:
        return LineError("invalid_custom_id", "custom_id must be a non-empty string.", line_no, "custom_id")
    if len(obj["custom_id"]) > 512:
        return LineError("invalid_custom_id", "custom_id must be at most 512 characters.", line_no, "custom_id")
    if obj["method"] != "POST":
        return LineError("invalid_method", "Only the POST method is supported.", line_no, "method")
    if obj["url"] != endpoint:
        return LineError("mismatched_url", f"The url must be '{endpoint}', the batch's endpoint.", line_no, "url")
    body = obj["body"]
    if not isinstance(body, dict):
        return LineError("invalid_body", "body must be a JSON object.", line_no, "body")
    if not isinstance(body.get("model"), str) or not body.get("model"):
        return _missing(line_no, "body.model")
    needed = REQUIRED_BODY_FIELD[endpoint]
    if needed not in body:
        return _missing(line_no, f"body.{needed}")
    return None


def _identity_error(obj: dict, line_no: int, verdict: FileVerdict) -> LineError | None:
    model, custom_id = obj["body"]["model"], obj["custom_id"]
    if verdict.model is None:
        verdict.model = model
    elif model != verdict.model:
        return LineError(
            "mismatched_model",
            f"All lines must use the same model; expected '{verdict.model}', got '{model}'.",
            line_no,
            "body.model",
        )
    if custom_id in verdict._seen_ids:
        return LineError(
            "duplicate_custom_id", f"The custom_id '{custom_id}' is used more than once.", line_no, "custom_id"
        )
    verdict._seen_ids.add(custom_id)
    return None


def validate_lines(lines: Iterable[bytes], verdict: FileVerdict) -> Iterator[ParsedLine]:
    """Yield good lines in order while recording errors; stops at the line limit and at empty files."""
    count = 0
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        count += 1
        if count > verdict.max_lines:
            verdict.add_error(
                LineError(
                    "too_many_lines",
                    f"The file has more than {verdict.max_lines} requests, the limit for one batch.",
                    line_no,
                )
            )
            return
        parsed = check_line(raw.rstrip(b"\r\n"), line_no, verdict)
        if parsed is not None:
            yield parsed
    if count == 0:
        verdict.add_error(LineError("empty_file", "The input file has no requests."))
