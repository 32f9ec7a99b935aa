"""Batch intake and control: create (validate + persist every line), cancel, read. Statuses via lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Row

from blendserve.core import ids, lifecycle, webhooks
from blendserve.core.errors import Conflict, InvalidRequest, NotFound
from blendserve.core.finalize import finalize_if_idle
from blendserve.core.input_validation import SUPPORTED_ENDPOINTS, FileVerdict, ParsedLine, validate_lines
from blendserve.core.openai_format import error_body
from blendserve.store import repositories as repo
from blendserve.store.blobs import BlobStore
from blendserve.store.db import Database
from blendserve.store.models import Batch
from blendserve.store.statuses import BatchStatus, RequestStatus

log = logging.getLogger("blendserve.batches")
COMPLETION_WINDOWS = {"24h": 24 * 3600}
OUTPUT_TTL_RANGE = (3600, 2592000)  # output_expires_after.seconds, as in OpenAI's spec


@dataclass(frozen=True)
class IntakeLimits:
    """max_lines: requests per batch; max_errors: errors.data entries kept; served_models: the model names
    lines may name (empty: not known yet, any name passes)."""

    max_lines: int
    max_errors: int
    served_models: frozenset[str] = frozenset()


def check_metadata(metadata: dict | None) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise InvalidRequest(
            "metadata must be an object with at most 16 key-value pairs.", param="metadata", code="invalid_value"
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise InvalidRequest(
                f"metadata keys are at most 64 characters; '{key[:64]}...' has {len(key)}.",
                param="metadata",
                code="invalid_value",
            )
        if not isinstance(value, str) or len(value) > 512:
            raise InvalidRequest(
                f"metadata values are strings of at most 512 characters; the value of '{key}' is not.",
                param=f"metadata.{key}",
                code="invalid_value",
            )


def check_output_expiry(output_expires_after: dict | None) -> int | None:
    """The output/error files' time to live in seconds, from {"anchor": "created_at", "seconds": N}."""
    if output_expires_after is None:
        return None
    seconds = output_expires_after.get("seconds")
    lo, hi = OUTPUT_TTL_RANGE
    if output_expires_after.get("anchor") != "created_at":
        raise InvalidRequest(
            "output_expires_after.anchor must be 'created_at'.",
            param="output_expires_after.anchor",
            code="invalid_value",
        )
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not lo <= seconds <= hi:
        raise InvalidRequest(
            f"output_expires_after.seconds must be an integer from {lo} to {hi}.",
            param="output_expires_after.seconds",
            code="invalid_value",
        )
    return seconds


def create_batch(
    db: Database,
    blobs: BlobStore,
    limits: IntakeLimits,
    owner: str,
    input_file_id: str,
    endpoint: str,
    completion_window: str,
    metadata: dict | None,
    output_expires_after: dict | None = None,
) -> Batch:
    if endpoint not in SUPPORTED_ENDPOINTS:
        raise InvalidRequest(
            f"Unsupported endpoint '{endpoint}'. Supported: {', '.join(SUPPORTED_ENDPOINTS)}.",
            param="endpoint",
            code="invalid_value",
        )
    if completion_window not in COMPLETION_WINDOWS:
        raise InvalidRequest("completion_window must be '24h'.", param="completion_window", code="invalid_value")
    check_metadata(metadata)
    output_ttl = check_output_expiry(output_expires_after)
    with db.transaction() as s:
        source = repo.get_file(s, owner, input_file_id, now=ids.now())
        if source is None:
            raise NotFound(f"No such File object: {input_file_id}", param="input_file_id", code="file_not_found")
        if source.purpose != "batch":
            raise InvalidRequest(
                "The input file must be uploaded with purpose 'batch'.",
                param="input_file_id",
                code="invalid_file_purpose",
            )
        created = ids.now()
        batch = Batch(
            id=ids.batch_id(),
            owner=owner,
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=completion_window,
            status=BatchStatus.VALIDATING,
            created_at=created,
            created_ns=ids.now_ns(),
            expires_at=created + COMPLETION_WINDOWS[completion_window],
            metadata_json=orjson.dumps(metadata).decode() if metadata is not None else None,
            total=0,
            completed=0,
            failed=0,
            input_tokens=0,
            cached_tokens=0,
            output_tokens=0,
            reasoning_tokens=0,
            output_expires_after_s=output_ttl,
        )
        s.add(batch)
    return validate_and_persist(db, blobs, limits, batch.id)


def _blob_lines(blobs: BlobStore, blob_id: str) -> Iterator[bytes]:
    with blobs.open(blob_id) as fh:
        yield from fh


def validate_and_persist(db: Database, blobs: BlobStore, limits: IntakeLimits, batch_id: str) -> Batch:
    """Stream the input file once: lines go in as rows inside ONE transaction that also moves the batch to
    in_progress; any file-level error rolls the rows back and fails the batch with errors.data. A failure of
    the store itself (never expected: every length is bounded first) also fails the batch, with a reason,
    rather than leaving it in `validating`."""
    try:
        return _persist_all_or_nothing(db, blobs, limits, batch_id)
    except _RejectedFile as rejected:
        return _fail(db, batch_id, rejected.errors)
    except Exception:
        log.exception("intake of batch %s failed", batch_id)
        reason = {"code": "internal_error", "line": None, "param": None, "message": _INTAKE_FAILED}
        return _fail(db, batch_id, [reason])


_INTAKE_FAILED = "The server could not store this batch's requests; the batch was not started."


class _RejectedFile(Exception):
    """Raised inside the intake transaction so that every row it inserted is rolled back."""

    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors


def _row(batch_id: str, parsed: ParsedLine) -> dict:
    """A request row; a line whose body has a bad field is stored already failed, with the hosted API's 400."""
    row = {
        "batch_id": batch_id,
        "line": parsed.line,
        "custom_id": parsed.custom_id,
        "body": parsed.raw_body,
        "status": RequestStatus.PENDING,
        "attempts": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "response": None,
        "status_code": None,
        "request_id": None,
        "finished_at": None,
    }
    if parsed.problem is not None:
        p = parsed.problem
        row.update(
            status=RequestStatus.FAILED,
            response=orjson.dumps(error_body(p.message, p.param, code=p.code)).decode(),
            status_code=400,
            request_id=ids.request_id(),
            finished_at=ids.now_precise(),
        )
    return row


def _persist_all_or_nothing(db: Database, blobs: BlobStore, limits: IntakeLimits, batch_id: str) -> Batch:
    with db.transaction() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        if batch.status != BatchStatus.VALIDATING:
            return batch
        verdict = FileVerdict(batch.endpoint, limits.max_lines, limits.max_errors, limits.served_models)
        if not blobs.exists(batch.input_file_id):
            raise _RejectedFile(
                [
                    {
                        "code": "file_not_found",
                        "line": None,
                        "param": "input_file_id",
                        "message": "The input file no longer exists.",
                    }
                ]
            )
        failed_early = 0

        def rows():
            nonlocal failed_early
            for parsed in validate_lines(_blob_lines(blobs, batch.input_file_id), verdict):
                failed_early += parsed.problem is not None
                yield _row(batch_id, parsed)

        repo.insert_requests(s, rows())
        if verdict.ok:
            batch.model, batch.total, batch.failed = verdict.model, verdict.valid_lines, failed_early
            lifecycle.transition(batch, BatchStatus.IN_PROGRESS, ids.now())
            return batch
        raise _RejectedFile([e.as_dict() for e in verdict.errors])


def _fail(db: Database, batch_id: str, errors: list[dict]) -> Batch:
    now = ids.now()
    with db.transaction() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        batch.errors = orjson.dumps(errors).decode()
        lifecycle.transition(batch, BatchStatus.FAILED, now)
        webhooks.enqueue(s, batch.owner, batch_id, BatchStatus.FAILED, now)
    return batch


def recover_validating(db: Database, blobs: BlobStore, limits: IntakeLimits) -> int:
    """A crash during validation leaves `validating` with no rows (the insert was one transaction): validate
    again. Never raises: a batch that cannot be recovered is failed with a reason and the server starts."""
    with db.transaction() as s:
        stuck = [b.id for b in repo.batches_with_status(s, [BatchStatus.VALIDATING])]
    for batch_id in stuck:
        try:
            validate_and_persist(db, blobs, limits, batch_id)
        except Exception:
            log.exception("batch %s left in 'validating' could not be recovered", batch_id)
    return len(stuck)


def get_batch(db: Database, owner: str, batch_id: str) -> Batch:
    with db.transaction() as s:
        batch = repo.get_batch(s, owner, batch_id)
    if batch is None:
        raise NotFound(f"No such Batch object: {batch_id}", param="batch_id", code="batch_not_found")
    return batch


def read_batch(db: Database, owner: str, batch_id: str) -> Row[Any]:
    """get_batch for the API's retrieve: a plain row with Batch's column names (no ORM object); NotFound (404)."""
    with db.reading() as connection:
        batch = repo.read_batch(connection, owner, batch_id)
    if batch is None:
        raise NotFound(f"No such Batch object: {batch_id}", param="batch_id", code="batch_not_found")
    return batch


def list_batches(db: Database, owner: str, limit: int, after: str | None) -> tuple[list[Row[Any]], bool]:
    """The owner's batches as rows, newest first, after the batch `after` (keyset); and whether more follow."""
    with db.reading() as connection:
        return repo.page_batches(connection, owner, limit, after)


def cancel_batch(db: Database, blobs: BlobStore, owner: str, batch_id: str) -> Batch:
    """in_progress -> cancelling -> cancelled: lines not finished yet are written as batch_cancelled and the
    files are written now; the dispatcher aborts what it still has running for the batch on its next sweep.
    A finished batch -> Conflict (409); a cancelling or cancelled one is returned as it is."""
    with db.transaction() as s:
        batch = repo.get_batch(s, owner, batch_id)
        if batch is None:
            raise NotFound(f"No such Batch object: {batch_id}", param="batch_id", code="batch_not_found")
        if batch.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
            return batch  # as on OpenAI: cancelling again is not an error
        if batch.status not in lifecycle.CANCELLABLE:
            raise Conflict(f"Cannot cancel a batch with status '{batch.status}'.")
        lifecycle.transition(batch, BatchStatus.CANCELLING, ids.now())
    finalize_if_idle(db, blobs, batch_id)
    return get_batch(db, owner, batch_id)
