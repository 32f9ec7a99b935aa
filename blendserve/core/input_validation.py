"""Validation of a batch input file, line by line, like OpenAI's (pure: bytes in, rows or errors out).

Two kinds of problem, as on the hosted API:
- the file's shape (not JSON, no custom_id, wrong url, an unknown model, `stream: true`, ...) fails the whole
  batch at validation with errors.data [{code, message, param, line}];
- a mistyped or out-of-range field of one body (`"temperature": "hot"`) fails that line alone: the line is
  kept, with the 400 the hosted API would have answered, and the batch goes on (body_checks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from blendserve.core.body_checks import FieldProblem, first_problem

SUPPORTED_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/completions", "/v1/embeddings")
# The body field each endpoint cannot do without.
REQUIRED_BODY_FIELD = {
    "/v1/responses": "input",
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
}
MAX_CUSTOM_ID = 512  # the store's column width (batch_requests.custom_id)
MAX_MODEL = 256  # the store's column width (batches.model)
BOM = b"\xef\xbb\xbf"


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
    problem: FieldProblem | None = None  # set: this line fails alone with a 400 (the batch goes on)


@dataclass
class FileVerdict:
    """What validation found: the model, the good line count, and errors (capped, with the true total).

    served_models: the model names this server answers to (empty: unknown, any name is accepted)."""

    endpoint: str
    max_lines: int
    max_errors: int
    served_models: frozenset[str] = frozenset()
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
    """Validate one non-blank line; record any file-level error on the verdict and return the parsed line or
    None. A line whose body only has a bad field comes back with `problem` set."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            verdict.add_error(LineError("invalid_json_line", "This line is not valid UTF-8 JSON.", line_no))
            return None
        verdict.add_error(LineError("invalid_json_line", "This line is not parseable as valid JSON.", line_no))
        return None
    err = _shape_error(obj, line_no, verdict.endpoint) or _model_error(obj["body"], line_no, verdict)
    if err is None:
        err = _identity_error(obj, line_no, verdict)
    if err is not None:
        verdict.add_error(err)
        return None
    verdict.valid_lines += 1
    body = obj["body"]
    return ParsedLine(
        line_no, obj["custom_id"], body, orjson.dumps(body).decode(), first_problem(verdict.endpoint, body)
    )


def _shape_error(obj: object, line_no: int, endpoint: str) -> LineError | None:
    if not isinstance(obj, dict):
        return LineError("invalid_request", "Each line must be a JSON object.", line_no)
    for name in ("custom_id", "method", "url", "body"):
        if name not in obj:
            return _missing(line_no, name)
    if not isinstance(obj["custom_id"], str) or not obj["custom_id"]:
        return LineError("invalid_custom_id", "custom_id must be a non-empty string.", line_no, "custom_id")
    if len(obj["custom_id"]) > MAX_CUSTOM_ID:
        return LineError(
            "invalid_custom_id", f"custom_id must be at most {MAX_CUSTOM_ID} characters.", line_no, "custom_id"
        )
    if obj["method"] != "POST":
        return LineError("invalid_method", "Only the POST method is supported.", line_no, "method")
    if obj["url"] != endpoint:
        return LineError("invalid_url", f"The url must be '{endpoint}', the batch's endpoint.", line_no, "url")
    body = obj["body"]
    if not isinstance(body, dict):
        return LineError("invalid_request", "body must be a JSON object.", line_no, "body")
    needed = REQUIRED_BODY_FIELD[endpoint]
    for name in ("model", needed):
        if body.get(name) is None:
            return LineError("invalid_request", f"Missing required parameter: 'body.{name}'.", line_no, f"body.{name}")
    if body.get("stream") not in (None, False):
        return LineError(
            "streaming_unsupported", "Streaming is not supported in the Batch API.", line_no, "body.stream"
        )
    return None


def _model_error(body: dict, line_no: int, verdict: FileVerdict) -> LineError | None:
    model = body["model"]
    if not isinstance(model, str) or not model:
        return LineError("invalid_request", "body.model must be a non-empty string.", line_no, "body.model")
    if len(model) > MAX_MODEL:
        return LineError("invalid_value", f"body.model must be at most {MAX_MODEL} characters.", line_no, "body.model")
    if verdict.served_models and model not in verdict.served_models:
        return LineError(
            "model_not_found",
            f"The model '{model}' does not exist or you do not have access to it. "
            f"This server serves: {', '.join(sorted(verdict.served_models))}.",
            line_no,
            "body.model",
        )
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
    """Yield parsed lines in order while recording errors. Blank lines (any line ending, a leading UTF-8 BOM)
    are skipped and not counted; more requests than the limit stop with `too_many_tasks`."""
    count = 0
    for line_no, raw in enumerate(lines, start=1):
        if line_no == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        if not raw.strip():
            continue
        count += 1
        if count > verdict.max_lines:
            verdict.add_error(
                LineError(
                    "too_many_tasks",
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
