"""Queries over File, Batch and BatchRequest. Every function takes the caller's Session (its transaction), or for the
API's hot reads a Connection (db.reading())."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult, Row, func, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session

from blendserve.store.models import Batch, BatchRequest, File
from blendserve.store.statuses import BatchStatus


def _page(session: Session, model, owner: str, limit: int, after: str | None, newest_first: bool, *where):
    """Keyset pagination on (created_ns, id): stable while rows are added."""
    stmt = select(model).where(model.owner == owner, *where)
    anchor = session.get(model, after) if after else None
    if anchor is not None and anchor.owner == owner:
        key, at = tuple_(model.created_ns, model.id), tuple_(anchor.created_ns, anchor.id)
        stmt = stmt.where(key < at if newest_first else key > at)
    order = (model.created_ns.desc(), model.id.desc()) if newest_first else (model.created_ns, model.id)
    rows = list(session.scalars(stmt.order_by(*order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


# ---- files -------------------------------------------------------------------------------------


def get_file(session: Session, owner: str, file_id: str, now: int | None = None) -> File | None:
    """The owner's file, unless it has expired (an expired file is gone, as at OpenAI, even before the sweep)."""
    row = session.get(File, file_id)
    if row is None or row.owner != owner:
        return None
    if now is not None and row.expires_at is not None and row.expires_at <= now:
        return None
    return row


def list_files(
    session: Session, owner: str, purpose: str | None, limit: int, order: str, after: str | None, now: int
) -> tuple[list[File], bool]:
    where = [or_(File.expires_at.is_(None), File.expires_at > now)]
    if purpose:
        where.append(File.purpose == purpose)
    return _page(session, File, owner, limit, after, order == "desc", *where)


def expired_files(session: Session, now: int, limit: int = 500) -> list[File]:
    stmt = select(File).where(File.expires_at.is_not(None), File.expires_at <= now).limit(limit)
    return list(session.scalars(stmt))


# ---- batches -----------------------------------------------------------------------------------


def get_batch(session: Session, owner: str, batch_id: str) -> Batch | None:
    row = session.get(Batch, batch_id)
    return row if row is not None and row.owner == owner else None


# Core reads for the API's hot paths (retrieve, list): plain rows whose attributes are Batch's column names.
_BATCHES = Batch.__table__


def read_batch(connection: Connection, owner: str, batch_id: str) -> Row[Any] | None:
    """The owner's batch as a row (attributes named as Batch's columns), or None."""
    stmt = select(_BATCHES).where(_BATCHES.c.id == batch_id, _BATCHES.c.owner == owner)
    return connection.execute(stmt).first()


def page_batches(connection: Connection, owner: str, limit: int, after: str | None) -> tuple[list[Row[Any]], bool]:
    """list_batches as rows: newest first, keyset on (created_ns, id) after the owner's batch `after` (an
    unknown or foreign `after` is ignored, as list_batches does); and whether more follow."""
    c = _BATCHES.c
    stmt = select(_BATCHES).where(c.owner == owner)
    if after:
        anchor = connection.execute(select(c.created_ns).where(c.id == after, c.owner == owner)).first()
        if anchor is not None:
            stmt = stmt.where(tuple_(c.created_ns, c.id) < tuple_(anchor.created_ns, after))
    rows = list(connection.execute(stmt.order_by(c.created_ns.desc(), c.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def batches_with_status(session: Session, statuses: Sequence[str]) -> list[Batch]:
    return list(session.scalars(select(Batch).where(Batch.status.in_(statuses)).order_by(Batch.created_ns)))


# ---- requests ----------------------------------------------------------------------------------


def insert_requests(session: Session, rows: Iterable[dict], chunk: int = 5000) -> int:
    """Bulk insert of {batch_id, line, custom_id, body}; executemany in chunks keeps memory flat."""
    total, buf = 0, []
    for row in rows:
        buf.append(row)
        if len(buf) >= chunk:
            session.execute(insert(BatchRequest), buf)
            total, buf = total + len(buf), []
    if buf:
        session.execute(insert(BatchRequest), buf)
        total += len(buf)
    return total


def request_status_counts(session: Session, batch_id: str) -> dict[str, int]:
    stmt = (
        select(BatchRequest.status, func.count()).where(BatchRequest.batch_id == batch_id).group_by(BatchRequest.status)
    )
    return {status: n for status, n in session.execute(stmt)}


def iter_requests(session: Session, batch_id: str, page: int = 2000) -> Iterator[BatchRequest]:
    """Rows of a batch in line order, paged so a 50k-line batch is never all in memory."""
    last = -1
    while True:
        stmt = select(BatchRequest).where(BatchRequest.batch_id == batch_id, BatchRequest.line > last)
        rows = list(session.scalars(stmt.order_by(BatchRequest.line).limit(page)))
        if not rows:
            return
        yield from rows
        last = rows[-1].line
        session.expunge_all()


def set_status_where(
    session: Session,
    batch_id: str,
    from_statuses: Sequence[str],
    to_status: str,
    error_json: str | None = None,
    finished_at: float | None = None,
) -> int:
    values: dict = {"status": to_status}
    if error_json is not None:
        values["error"] = error_json
    if finished_at is not None:
        values["finished_at"] = finished_at
    stmt = (
        update(BatchRequest)
        .where(BatchRequest.batch_id == batch_id, BatchRequest.status.in_(from_statuses))
        .values(**values)
    )
    result: CursorResult = session.execute(stmt)  # type: ignore[assignment]  # an UPDATE gives a cursor result
    return result.rowcount or 0


def lock_batch(session: Session, batch_id: str) -> Batch | None:
    """The batch, locked for the rest of the transaction so status moves never interleave: a row lock on
    Postgres. SQLite has no row locks and reads before a transaction's first write see whatever was committed
    last, so two finalizers could both read 'cancelling': a no-op write first takes the database's write lock,
    and the read after it sees the state under that lock."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Batch).where(Batch.id == batch_id).values(status=Batch.status))
    return session.scalars(
        select(Batch).where(Batch.id == batch_id).with_for_update().execution_options(populate_existing=True)
    ).first()


def usage_totals(session: Session, batch_id: str) -> tuple[int, int, int]:
    stmt = select(
        func.coalesce(func.sum(BatchRequest.prompt_tokens), 0),
        func.coalesce(func.sum(BatchRequest.cached_tokens), 0),
        func.coalesce(func.sum(BatchRequest.completion_tokens), 0),
    ).where(BatchRequest.batch_id == batch_id)
    row = session.execute(stmt).one()
    return int(row[0]), int(row[1]), int(row[2])


# ---- operations (metrics, health, dashboard) ---------------------------------------------------


def ping(session: Session) -> None:
    """Raises when the database cannot answer."""
    session.execute(select(1))


def batch_status_counts(session: Session) -> dict[str, int]:
    """Batches by status, every owner (for /metrics: operators, not tenants)."""
    return {status: n for status, n in session.execute(select(Batch.status, func.count()).group_by(Batch.status))}


def line_status_counts(session: Session) -> dict[str, int]:
    """Request lines by status, every owner (an index-only count on ix_batch_requests_status)."""
    stmt = select(BatchRequest.status, func.count()).group_by(BatchRequest.status)
    return {status: n for status, n in session.execute(stmt)}


def recent_batches(session: Session, owner: str, limit: int) -> list[Batch]:
    """The owner's open batches first (oldest first: they finish first), then the latest finished ones."""
    open_statuses = (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, BatchStatus.CANCELLING)
    open_rows = session.scalars(
        select(Batch).where(Batch.owner == owner, Batch.status.in_(open_statuses)).order_by(Batch.created_ns)
    ).all()
    closed_rows = session.scalars(
        select(Batch)
        .where(Batch.owner == owner, Batch.status.not_in(open_statuses))
        .order_by(Batch.created_ns.desc())
        .limit(max(0, limit - len(open_rows)))
    ).all()
    return [*open_rows[:limit], *closed_rows]
