"""Batch intake and control: create (validate + persist every line), cancel, read. Statuses via lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from blendserve.core import ids, lifecycle
from blendserve.core.errors import InvalidRequest, InvalidState, NotFound
from blendserve.core.finalize import finalize_if_idle
from blendserve.core.input_validation import SUPPORTED_ENDPOINTS, FileVerdict, validate_lines
from blendserve.store import repositories as repo
from blendserve.store.blobs import BlobStore
from blendserve.store.db import Database
from blendserve.store.models import Batch
from blendserve.store.statuses import BatchStatus, RequestStatus

COMPLETION_WINDOWS = {"24h": 24 * 3600}


@dataclass(frozen=True)
class IntakeLimits:
    max_lines: int
    max_errors: int


def check_metadata(metadata: dict | None) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise InvalidRequest(
            "metadata must be an object with at most 16 key-value pairs.", param="metadata", code="invalid_value"
        )
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise InvalidRequest(
                "metadata keys are strings of at most 64 characters and values strings of at most 512 characters.",
                param="metadata",
                code="invalid_value",
            )


def create_batch(
    db: Database,
    blobs: BlobStore,
    limits: IntakeLimits,
    owner: str,
    input_file_id: str,
    endpoint: str,
    completion_window: str,
    metadata: dict | None,
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
        )
        s.add(batch)
    return validate_and_persist(db, blobs, limits, batch.id)


def _blob_lines(blobs: BlobStore, blob_id: str) -> Iterator[bytes]:
    with blobs.open(blob_id) as fh:
        yield from fh


def validate_and_persist(db: Database, blobs: BlobStore, limits: IntakeLimits, batch_id: str) -> Batch:
    """Stream the input file once: good lines go in as rows inside ONE transaction that also moves the batch
    to in_progress; any bad line rolls the rows back and fails the batch with errors.data."""
    try:
        return _persist_all_or_nothing(db, blobs, limits, batch_id)
    except _RejectedFile as rejected:
        return _fail(db, batch_id, rejected.errors)


class _RejectedFile(Exception):
    """Raised inside the intake transaction so that every row it inserted is rolled back."""

    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors


def _persist_all_or_nothing(db: Database, blobs: BlobStore, limits: IntakeLimits, batch_id: str) -> Batch:
    with db.transaction() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        if batch.status != BatchStatus.VALIDATING:
            return batch
        verdict = FileVerdict(batch.endpoint, limits.max_lines, limits.max_errors)
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
        rows = (
            {
                "batch_id": batch_id,
                "line": p.line,
                "custom_id": p.custom_id,
                "body": p.raw_body,
                "status": RequestStatus.PENDING,
                "attempts": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cached_tokens": 0,
            }
            for p in validate_lines(_blob_lines(blobs, batch.input_file_id), verdict)
        )
        repo.insert_requests(s, rows)
        if verdict.ok:
            batch.model, batch.total = verdict.model, verdict.valid_lines
            lifecycle.transition(batch, BatchStatus.IN_PROGRESS, ids.now())
            return batch
        raise _RejectedFile([e.as_dict() for e in verdict.errors])


def _fail(db: Database, batch_id: str, errors: list[dict]) -> Batch:
    with db.transaction() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        batch.errors = orjson.dumps(errors).decode()
        lifecycle.transition(batch, BatchStatus.FAILED, ids.now())
    return batch


def recover_validating(db: Database, blobs: BlobStore, limits: IntakeLimits) -> int:
    """A crash during validation leaves `validating` with no rows (the insert was one transaction)."""
    with db.transaction() as s:
        stuck = [b.id for b in repo.batches_with_status(s, [BatchStatus.VALIDATING])]
    for batch_id in stuck:
        validate_and_persist(db, blobs, limits, batch_id)
    return len(stuck)


def get_batch(db: Database, owner: str, batch_id: str) -> Batch:
    with db.transaction() as s:
        batch = repo.get_batch(s, owner, batch_id)
    if batch is None:
        raise NotFound(f"No such Batch object: {batch_id}", param="batch_id", code="batch_not_found")
    return batch


def list_batches(db: Database, owner: str, limit: int, after: str | None) -> tuple[list[Batch], bool]:
    """The owner's batches, newest first, after the batch `after` (keyset); and whether more follow."""
    with db.transaction() as s:
        return repo.list_batches(s, owner, limit, after)


def cancel_batch(db: Database, blobs: BlobStore, owner: str, batch_id: str) -> Batch:
    """in_progress -> cancelling -> cancelled: lines not finished yet are written as batch_cancelled and the
    files are written now; the dispatcher aborts what it still has running for the batch on its next sweep."""
    with db.transaction() as s:
        batch = repo.get_batch(s, owner, batch_id)
        if batch is None:
            raise NotFound(f"No such Batch object: {batch_id}", param="batch_id", code="batch_not_found")
        if batch.status == BatchStatus.CANCELLING:
            return batch
        if batch.status not in lifecycle.CANCELLABLE:
            raise InvalidState(f"Cannot cancel a batch with status '{batch.status}'.", code="invalid_state")
        lifecycle.transition(batch, BatchStatus.CANCELLING, ids.now())
    finalize_if_idle(db, blobs, batch_id)
    return get_batch(db, owner, batch_id)
