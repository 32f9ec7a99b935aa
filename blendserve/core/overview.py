"""Read-only views over the store for operations: database liveness, counts by status, a tenant's recent
batches. Routes call these; the SQL lives in store/repositories.py."""

from __future__ import annotations

from dataclasses import dataclass

from blendserve.store import repositories as repo
from blendserve.store.db import Database
from blendserve.store.models import Batch


@dataclass(frozen=True)
class StatusCounts:
    batches: dict[str, int]
    lines: dict[str, int]


def database_ok(db: Database) -> bool:
    """True when the database answers a trivial query (never raises)."""
    try:
        with db.transaction() as s:
            repo.ping(s)
        return True
    except Exception:
        return False


def status_counts(db: Database) -> StatusCounts:
    with db.transaction() as s:
        return StatusCounts(repo.batch_status_counts(s), repo.line_status_counts(s))


def recent_batches(db: Database, owner: str, limit: int = 50) -> list[Batch]:
    with db.transaction() as s:
        return repo.recent_batches(s, owner, limit)
