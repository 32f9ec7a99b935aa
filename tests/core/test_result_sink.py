"""ResultSink: results that finish together land in one group commit, each line at most once, with the batches'
counts and usage bumped by the group's sums; a row no longer in flight takes no result (both backends)."""

from __future__ import annotations

import asyncio

import pytest

from blendserve.core.dispatch.db_worker import DbWorker
from blendserve.core.dispatch.result_sink import ResultSink
from blendserve.store import dispatch_queries as ds
from blendserve.store.db import Database
from blendserve.store.models import Batch, BatchRequest
from blendserve.store.statuses import BatchStatus, RequestStatus

pytestmark = pytest.mark.anyio


def seed(db: Database, batches: int, lines: int) -> list[tuple[int, str]]:
    with db.transaction() as s:
        for b in range(batches):
            s.add(
                Batch(id=f"batch_{b}", owner="o", endpoint="/v1/chat/completions", input_file_id="f",
                      completion_window="24h", status=BatchStatus.IN_PROGRESS, created_at=0, created_ns=0,
                      total=lines, completed=0, failed=0, input_tokens=0, cached_tokens=0, output_tokens=0)
            )  # fmt: skip
        s.flush()
        for b in range(batches):
            for i in range(lines):
                s.add(BatchRequest(batch_id=f"batch_{b}", line=i + 1, custom_id=f"c{i}", body="{}",
                                   status=RequestStatus.IN_FLIGHT, attempts=1))  # fmt: skip
    with db.transaction() as s:
        return [(r.id, r.batch_id) for r in s.query(BatchRequest).order_by(BatchRequest.id)]


def result(row_id: int, batch_id: str, ok: bool) -> ds.LineResult:
    return ds.LineResult(row_id, batch_id, ok, '{"x": 1}', 200 if ok else 500, None, "req", 1.0, 10, 4, 3)


async def test_results_that_finish_together_land_in_group_commits(db_url, monkeypatch):
    db = Database(db_url)
    dbw = DbWorker(db)
    calls = []
    real = ds.record_results

    def counting(db_, results):
        calls.append(len(results))
        return real(db_, results)

    try:
        rows = seed(db, batches=2, lines=50)
        sink = ResultSink(dbw)
        monkeypatch.setattr(ds, "record_results", counting)
        landed = await asyncio.gather(*(sink.land(result(i, b, ok=i % 5 != 0)) for i, b in rows))
        again = await sink.land(result(*rows[0], ok=True))  # already finished: never written twice
        assert all(landed) and again is False
        assert sum(calls) == len(rows) + 1 and len(calls) < len(rows)  # grouped, not one commit per line
        with db.transaction() as s:
            for b in ("batch_0", "batch_1"):
                batch = s.get(Batch, b)
                ids = [i for i, bid in rows if bid == b]
                failed = sum(1 for i in ids if i % 5 == 0)
                assert (batch.completed, batch.failed) == (len(ids) - failed, failed)
                assert (batch.input_tokens, batch.cached_tokens, batch.output_tokens) == (10 * 50, 4 * 50, 3 * 50)
            statuses = {r.status for r in s.query(BatchRequest)}
        assert statuses == {RequestStatus.SUCCEEDED, RequestStatus.FAILED}
    finally:
        with db.transaction() as s:
            s.query(BatchRequest).delete()
            s.query(Batch).delete()
        dbw.close()
        db.dispose()
