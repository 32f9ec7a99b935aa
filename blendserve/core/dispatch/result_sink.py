"""Finished lines land in group commits: whatever finished while the previous write was in progress goes in the
next transaction together.

One transaction per result capped the whole server at a few hundred results a second (SQLite: one writer,
each commit ~0.3 ms plus a thread hop); a group commit costs about one commit per flush. Nothing waits on a
timer: an idle sink writes a lone result at once, and a busy one batches by itself. `land()` returns only after
the commit, so a result is reported (stats, learning, the next wave) only once it is durable; a crash before
that leaves its row in flight, to run again after recovery (each line lands exactly once either way)."""

from __future__ import annotations

import asyncio

from blendserve.core.dispatch.db_worker import DbWorker
from blendserve.store import dispatch_queries as ds

MAX_GROUP = 512  # bounds one transaction's length (and the write lock's hold on SQLite)


class ResultSink:
    def __init__(self, dbw: DbWorker) -> None:
        self.dbw = dbw
        self._queue: list[tuple[ds.LineResult, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def land(self, result: ds.LineResult) -> bool:
        """Write one finished line (in the next group); True when it landed (its row was still unfinished).
        Raises what the store raised for its group."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((result, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="result-sink")
        # shield: a line task cancelled while waiting (its batch ended) must not cancel the group's write
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            try:
                landed = await self.dbw.run(ds.record_results, self.dbw.db, [result for result, _ in group])
            except Exception as exc:  # the group's callers see the store's error, as a lone write's would
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), ok in zip(group, landed, strict=True):
                if not future.done():
                    future.set_result(ok)
