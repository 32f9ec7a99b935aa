"""File uploads: stream to a blob (never whole in memory), enforce limits, record the File row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from blendserve.core import ids
from blendserve.core.errors import InvalidRequest, NotFound
from blendserve.store import repositories as repo
from blendserve.store.blobs import CHUNK, BlobStore
from blendserve.store.db import Database
from blendserve.store.models import File

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_FILENAME = 512  # the store's column width (files.filename)
DEFAULT_BATCH_FILE_TTL = 30 * 24 * 3600  # OpenAI: batch files expire after 30 days by default


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int


def store_upload(
    db: Database,
    blobs: BlobStore,
    limits: UploadLimits,
    owner: str,
    filename: str,
    purpose: str,
    stream: BinaryIO,
    expires_after_s: int | None = None,
) -> File:
    _check_purpose(purpose, filename)
    file_id = ids.file_id()
    lines = _copy_with_limits(blobs, file_id, stream, limits, count_lines=purpose == "batch")
    created = ids.now()
    ttl = expires_after_s if expires_after_s is not None else (DEFAULT_BATCH_FILE_TTL if purpose == "batch" else None)
    row = File(
        id=file_id,
        owner=owner,
        filename=filename,
        purpose=purpose,
        bytes=blobs.path(file_id).stat().st_size,
        line_count=lines,
        created_at=created,
        created_ns=ids.now_ns(),
        expires_at=created + ttl if ttl else None,
        status="processed",
    )
    try:
        with db.transaction() as s:
            s.add(row)
    except Exception:
        blobs.delete(file_id)
        raise
    return row


def _check_purpose(purpose: str, filename: str) -> None:
    if not filename or len(filename) > MAX_FILENAME:
        raise InvalidRequest(
            f"The filename must be 1 to {MAX_FILENAME} characters long.", param="file", code="invalid_value"
        )
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"Invalid purpose '{purpose}'. Expected one of: {', '.join(UPLOAD_PURPOSES)}.",
            param="purpose",
            code="invalid_value",
        )
    if purpose == "batch" and not filename.lower().endswith(".jsonl"):
        raise InvalidRequest(
            "Invalid file format for Batch API. Must be .jsonl", param="file", code="invalid_file_format"
        )


def _copy_with_limits(blobs: BlobStore, file_id: str, stream: BinaryIO, limits: UploadLimits, count_lines: bool) -> int:
    """Copy chunk by chunk; abort (and delete the partial blob) the moment the size limit is passed. Returns
    the number of lines (a last line without a newline counts). The request limit of a batch is checked when
    a batch is created from the file, on requests, not lines (`too_many_tasks`), as on OpenAI."""
    newlines, last = 0, b"\n"
    with blobs.open_writer(file_id) as writer:
        while chunk := stream.read(CHUNK):
            writer.write(chunk)
            if writer.size > limits.max_bytes:
                raise InvalidRequest(
                    f"File is too large: the limit is {limits.max_bytes} bytes.", param="file", code="file_too_large"
                )
            if count_lines:
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
        writer.commit()
    return newlines + (0 if last == b"\n" else 1)


def get_file(db: Database, owner: str, file_id: str) -> File:
    with db.transaction() as s:
        row = repo.get_file(s, owner, file_id, now=ids.now())
    if row is None:
        raise NotFound(f"No such File object: {file_id}", param="file_id", code="file_not_found")
    return row


def list_files(
    db: Database, owner: str, purpose: str | None, limit: int, order: str, after: str | None
) -> tuple[list[File], bool]:
    """The owner's unexpired files in created order (`order` "asc"/"desc") after the file `after` (keyset)."""
    with db.transaction() as s:
        return repo.list_files(s, owner, purpose, limit, order, after, now=ids.now())


def delete_file(db: Database, blobs: BlobStore, owner: str, file_id: str) -> None:
    with db.transaction() as s:
        row = repo.get_file(s, owner, file_id, now=ids.now())
        if row is None:
            raise NotFound(f"No such File object: {file_id}", param="file_id", code="file_not_found")
        s.delete(row)
    blobs.delete(file_id)  # after commit: a crash here leaves an orphan blob, never a row without bytes


def delete_expired(db: Database, blobs: BlobStore) -> int:
    """Delete files past their expires_at (rows first, then bytes); returns how many went."""
    with db.transaction() as s:
        gone = [row.id for row in repo.expired_files(s, ids.now())]
        for file_id in gone:
            s.delete(s.get(File, file_id))
    for file_id in gone:
        blobs.delete(file_id)
    return len(gone)
