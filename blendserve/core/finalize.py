"""Finishing a batch: write the output/error JSONL files and move it to its terminal status.

Each terminal move writes its webhook outbox rows in the same transaction (core/webhooks).
Result files are written from the rows (the source of truth), so finalizing again after a crash writes
the same lines; every input line lands exactly once, in the output file or in the error file."""

from __future__ import annotations

import hashlib

import orjson

from blendserve.core import ids, lifecycle, webhooks
from blendserve.store import repositories as repo
from blendserve.store.blobs import BlobStore
from blendserve.store.db import Database
from blendserve.store.models import Batch, BatchRequest, File
from blendserve.store.statuses import BatchStatus, RequestStatus

UNFINISHED = (RequestStatus.PENDING, RequestStatus.IN_FLIGHT)
CANCELLED_ERROR = orjson.dumps(
    {"code": "batch_cancelled", "message": "The batch was cancelled before this request finished."}
).decode()
EXPIRED_ERROR = orjson.dumps(
    {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}
).decode()


def finalize_if_idle(db: Database, blobs: BlobStore, batch_id: str) -> str | None:
    """Finish `batch_id` when nothing of it is left to run; returns the new terminal status or None."""
    with db.transaction() as s:
        batch = repo.lock_batch(s, batch_id)
        if batch is None or batch.status not in lifecycle.ACTIVE:
            return None
        if batch.status == BatchStatus.CANCELLING:  # lines in flight are aborted: a late result cannot land
            repo.set_status_where(s, batch_id, UNFINISHED, RequestStatus.CANCELLED, CANCELLED_ERROR, ids.now_precise())
        counts = repo.request_status_counts(s, batch_id)
        if counts.get(RequestStatus.IN_FLIGHT, 0) or (
            batch.status == BatchStatus.IN_PROGRESS and counts.get(RequestStatus.PENDING, 0)
        ):
            return None
        if batch.status == BatchStatus.IN_PROGRESS:
            lifecycle.transition(batch, BatchStatus.FINALIZING, ids.now())
        target = BatchStatus.CANCELLED if batch.status == BatchStatus.CANCELLING else BatchStatus.COMPLETED
    _write_and_close(db, blobs, batch_id, target)
    return target


def expire(db: Database, blobs: BlobStore, batch_id: str) -> bool:
    """Past expires_at: every unfinished line (in flight too; a late result is then dropped) -> batch_expired."""
    with db.transaction() as s:
        batch = repo.lock_batch(s, batch_id)
        if batch is None or batch.status != BatchStatus.IN_PROGRESS:
            return False
        repo.set_status_where(s, batch_id, UNFINISHED, RequestStatus.EXPIRED, EXPIRED_ERROR, ids.now_precise())
    _write_and_close(db, blobs, batch_id, BatchStatus.EXPIRED)
    return True


def _write_and_close(db: Database, blobs: BlobStore, batch_id: str, target: str) -> None:
    with db.transaction() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        owner = batch.owner
        out_id, err_id, n_out, n_err = _write_files(s, blobs, batch_id)
    now = ids.now()
    with db.transaction() as s:
        batch = repo.lock_batch(s, batch_id)
        assert batch is not None
        if not lifecycle.can_transition(batch.status, target):
            blobs.delete(out_id)
            blobs.delete(err_id)
            return  # somebody else finished it meanwhile
        ttl = batch.output_expires_after_s
        for file_id, count, kind in ((out_id, n_out, "output"), (err_id, n_err, "error")):
            if count:
                s.add(
                    File(
                        id=file_id,
                        owner=owner,
                        filename=f"{batch_id}_{kind}.jsonl",
                        purpose="batch_output",
                        bytes=blobs.path(file_id).stat().st_size,
                        line_count=count,
                        created_at=now,
                        created_ns=ids.now_ns(),
                        expires_at=now + ttl if ttl else None,
                        status="processed",
                    )
                )
            else:
                blobs.delete(file_id)
        batch.output_file_id = out_id if n_out else None
        batch.error_file_id = err_id if n_err else None
        counts = repo.request_status_counts(s, batch_id)
        batch.completed, batch.failed = counts.get(RequestStatus.SUCCEEDED, 0), counts.get(RequestStatus.FAILED, 0)
        batch.input_tokens, batch.cached_tokens, batch.output_tokens = repo.usage_totals(s, batch_id)
        lifecycle.transition(batch, target, now)
        webhooks.enqueue(s, owner, batch_id, target, now)  # same transaction: the event cannot be lost


def _write_files(session, blobs: BlobStore, batch_id: str) -> tuple[str, str, int, int]:
    out_id, err_id = ids.file_id(), ids.file_id()
    n_out = n_err = 0
    with blobs.open_writer(out_id) as out, blobs.open_writer(err_id) as err:
        for row in repo.iter_requests(session, batch_id):
            if row.status in UNFINISHED:
                continue  # cannot happen for a finished batch; never invent a result
            line = orjson.dumps(result_line(row)) + b"\n"
            if row.status == RequestStatus.SUCCEEDED:
                out.write(line)
                n_out += 1
            else:
                err.write(line)
                n_err += 1
        out.commit()
        err.commit()
    return out_id, err_id, n_out, n_err


def result_line(row: BatchRequest) -> dict:
    """One line of an output/error file, in OpenAI's batch output format. `id` is the line's batch_req_ id;
    `response.request_id` is the id of the underlying API request (32 hex digits on the hosted API), derived
    from it so that writing the file again after a crash gives the same line."""
    line_id = row.request_id or f"batch_req_{row.batch_id[6:22]}{row.line:08d}"
    response = None
    if row.response is not None:
        request_id = hashlib.sha256(line_id.encode()).hexdigest()[:32]
        response = {"status_code": row.status_code or 200, "request_id": request_id, "body": orjson.loads(row.response)}
    error = orjson.loads(row.error) if row.error else None
    return {"id": line_id, "custom_id": row.custom_id, "response": response, "error": error}
