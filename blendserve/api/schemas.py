"""Wire shapes, as in OpenAI's spec (shared/openai-batch-spec.json). Optional fields that are unset are sent as
null, as the hosted API sends them (the spec's own examples show `"errors": null`, `"output_file_id": null`):
JavaScript clients test `=== null`, and the Python SDK reads null and absent alike."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Row

from blendserve.store.models import Batch, File


class FileObject(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class BatchError(BaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class InputTokensDetails(BaseModel):
    cached_tokens: int


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int


class BatchUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: Literal[
        "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
    ]
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts
    usage: BatchUsage
    metadata: dict[str, str] | None = None


ListT = TypeVar("ListT", "FileList", "BatchList")


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class PlanLines(BaseModel):
    total: int
    finished: int
    in_flight: int
    pending: int


class PlanSchedule(BaseModel):
    position: int = Field(
        description="1 = the next batch to start in the global schedule; 0 = nothing left to dispatch"
    )
    batches_queued: int
    lines_ahead: int = Field(description="lines of any batch dispatched before this batch's first pending line")
    queue_lines: int
    queue_drain_seconds: float = Field(description="predicted seconds until everything queued now has run")
    compute_heavy_lines: int
    memory_heavy_lines: int


class PlanCalibration(BaseModel):
    calibrated: bool = Field(description="false until enough results were observed; the perf model alone then")
    work_rate: float | None = Field(description="observed model-seconds of work finished per wall second")
    latency_ratio: float = Field(description="wall seconds per model-second of a line's own work")
    lines_observed: int


class BatchPlan(BaseModel):
    """Extension: GET /v1/batches/{batch_id}/plan (not part of OpenAI's API). Times are unix seconds."""

    object: Literal["batch.plan"] = "batch.plan"
    batch_id: str
    status: str
    computed_at: float
    started: bool | None = None
    predicted_start_at: float | None = None
    predicted_finish_at: float | None = None
    predicted_seconds_remaining: float | None = None
    predicted_cached_tokens_share: float | None = None
    finished_at: int | None = None
    lines: PlanLines | None = None
    schedule: PlanSchedule | None = None
    calibration: PlanCalibration | None = None


class OutputExpiresAfter(BaseModel):
    anchor: str
    seconds: int


class CreateBatchBody(BaseModel):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = Field(default=None)
    output_expires_after: OutputExpiresAfter | None = None


class WebhookDeliveryObject(BaseModel):
    """One event for one endpoint: `id` is the `webhook-id` header (the same on every retry)."""

    id: str
    object: Literal["webhook.delivery"] = "webhook.delivery"
    event_id: str
    type: str
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None
    next_attempt_at: float | None


class WebhookDeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookDeliveryObject]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorDetail


def file_object(row: File) -> FileObject:
    return FileObject.model_validate(row)


_COMPOSED = frozenset({"object", "errors", "request_counts", "usage", "metadata"})  # not plain columns


def batch_object(row: Batch) -> BatchObject:
    """Counts and usage are the row's: the dispatcher bumps them in the same transaction as each result."""
    inp, cached, out = row.input_tokens, row.cached_tokens, row.output_tokens
    errors = BatchErrors(data=[BatchError(**e) for e in orjson.loads(row.errors)]) if row.errors else None
    return BatchObject(
        **{name: getattr(row, name) for name in BatchObject.model_fields if name not in _COMPOSED},
        errors=errors,
        request_counts=RequestCounts(total=row.total, completed=row.completed, failed=row.failed),
        usage=BatchUsage(
            input_tokens=inp,
            input_tokens_details=InputTokensDetails(cached_tokens=cached),
            output_tokens=out,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
            total_tokens=inp + out,
        ),
        metadata=orjson.loads(row.metadata_json) if row.metadata_json else None,
    )


_BATCH_FIELDS = tuple(BatchObject.model_fields)  # the wire order
_ERROR_FIELDS = tuple(BatchError.model_fields)


def batch_dict(row: Batch | Row[Any]) -> dict[str, Any]:
    """batch_object(row).model_dump(), built directly: the hot path of retrieve and list (pydantic models cost
    about as much CPU as the database read here). The row's columns are typed by the store, so nothing needs
    validating; tests/api/test_batches.py checks both give the same object."""
    inp, out = row.input_tokens, row.output_tokens
    errors = [{k: e.get(k) for k in _ERROR_FIELDS} for e in orjson.loads(row.errors)] if row.errors else None
    composed = {
        "object": "batch",
        "errors": {"object": "list", "data": errors} if errors is not None else None,
        "request_counts": {"total": row.total, "completed": row.completed, "failed": row.failed},
        "usage": {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": row.cached_tokens},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        },
        "metadata": orjson.loads(row.metadata_json) if row.metadata_json else None,
    }
    columns = (
        row._asdict() if isinstance(row, Row) else {n: getattr(row, n) for n in _BATCH_FIELDS if n not in composed}
    )
    return {name: composed[name] if name in composed else columns[name] for name in _BATCH_FIELDS}


def batch_page(rows: list[Any], has_more: bool) -> dict[str, Any]:
    """A BatchList as a dict (see batch_dict)."""
    data = [batch_dict(r) for r in rows]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more}


def json_response(body: dict[str, Any]) -> Response:
    """A dict built to a response_model's shape (batch_dict, batch_page), serialized once with orjson."""
    return Response(orjson.dumps(body), media_type="application/json")


def list_page(cls: type[ListT], data: list, has_more: bool) -> ListT:
    """An OpenAI list object: the page, its first and last ids, and whether more follow."""
    first, last = (data[0].id, data[-1].id) if data else (None, None)
    return cls(data=data, first_id=first, last_id=last, has_more=has_more)


def as_json(model: BaseModel) -> Response:
    """The model, serialized once, as the response. Routes still declare response_model (the OpenAPI shape), but
    returning the model itself would make FastAPI validate it again and re-serialize it: about 1 ms of CPU a
    request on this machine (measured with bench/load.py and in-process), for a model built here from typed rows."""
    return Response(model.model_dump_json(), media_type="application/json")
