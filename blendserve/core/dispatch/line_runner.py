"""Runs dispatched lines on the runtime; each outcome lands in its own transaction.

A line that fails anywhere fails alone: runtime errors are retried with backoff (a new rid per attempt) and
then written as a per-line error; per-line problems (bad parameters) fail at once. A result lands only while
its row is still in flight, so a late answer after cancel, expiry or a takeover never writes a line twice."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

import orjson

from blendserve.core import ids
from blendserve.core.dispatch.config import DispatchConfig
from blendserve.core.dispatch.db_worker import DbWorker
from blendserve.core.dispatch.pending import Entry, PendingSet
from blendserve.core.dispatch.stats import DispatchStats
from blendserve.core.openai_format import embedding_body, error_body, response_body
from blendserve.core.runtime.base import EmbedParams, GenerateRequest, Runtime, UnsupportedParameter
from blendserve.store import dispatch_queries as ds

log = logging.getLogger("blendserve.dispatch")


@dataclasses.dataclass(frozen=True)
class Outcome:
    body: dict
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


class LineRunner:
    def __init__(
        self,
        dbw: DbWorker,
        runtime: Runtime,
        config: DispatchConfig,
        pending: PendingSet,
        stats: DispatchStats,
        on_done: Callable[[], None],
    ) -> None:
        self.dbw, self.runtime, self.config, self.pending, self.stats = dbw, runtime, config, pending, stats
        self.on_done = on_done  # wakes the loop: a slot is free
        self.running: dict[int, asyncio.Task[None]] = {}
        self.rids: dict[int, str] = {}  # the runtime request id of each line's current attempt

    def __len__(self) -> int:
        return len(self.running)

    def start(self, entry: Entry) -> None:
        self.stats.dispatched += 1
        self.running[entry.row.id] = asyncio.create_task(self._run(entry), name=f"line-{entry.row.id}")

    def abort(self, row_id: int) -> None:
        """Stop a line whose batch ended (its row is final, so nothing lands): stop waiting for it and tell the
        runtime to stop generating it."""
        task = self.running.get(row_id)
        if task is not None:
            task.cancel()
        rid = self.rids.pop(row_id, None)
        if rid is not None:
            asyncio.create_task(self._abort_on_runtime(rid), name=f"abort-{rid}")

    async def _abort_on_runtime(self, rid: str) -> None:
        try:
            await self.runtime.abort([rid])
        except Exception as exc:  # best effort: the runtime also drops requests whose client went away
            log.warning("abort of %s on the runtime failed: %s", rid, exc)

    async def stop(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def fail_line(self, row: ds.PendingRow, body: dict | None, status_code: int | None, error=None) -> None:
        """The line failed: its response carries the error envelope with the HTTP status it would have had, or
        (no HTTP answer at all, like a timeout) the output line's top-level `error` says why."""
        landed = await self.dbw.run(
            ds.record_result,
            self.dbw.db,
            row.id,
            row.batch_id,
            ok=False,
            response_json=orjson.dumps(body).decode() if body is not None else None,
            status_code=status_code,
            error_json=orjson.dumps(error).decode() if error is not None else None,
            request_id=ids.request_id(),
            finished_at=ids.now_precise(),
        )
        if landed:
            self.stats.failed += 1

    async def _execute(self, entry: Entry, rid: str) -> Outcome:
        name = self.runtime.info.name
        if isinstance(entry.params, EmbedParams):
            embedded = await self.runtime.embed(entry.params)
            return Outcome(embedding_body(name, entry.params, embedded), embedded.prompt_tokens, 0, 0)
        result = await self.runtime.generate(GenerateRequest(rid, tuple(entry.tokens), entry.params))
        request = orjson.loads(entry.row.body) if entry.row.endpoint == "/v1/responses" else None  # echoed
        body = response_body(entry.row.endpoint, name, result, request)
        return Outcome(body, result.prompt_tokens, result.cached_tokens, result.completion_tokens)

    async def _run(self, entry: Entry) -> None:
        row = entry.row
        attempt = row.attempts + 1
        rid = self.rids[row.id] = f"{row.id}-{attempt}"
        try:
            outcome = await asyncio.wait_for(self._execute(entry, rid), self.config.request_timeout_s)
            await self._land(entry, outcome)
            self.pending.drop(row.id)
        except asyncio.CancelledError:
            self.pending.drop(row.id)
            raise
        except UnsupportedParameter as exc:
            code = getattr(exc, "code", "unsupported_parameter")
            await self.fail_line(row, error_body(str(exc), exc.param, code=code), 400)
            self.pending.drop(row.id)
        except Exception as exc:  # runtime errors and timeouts: retry with backoff, then a per-line error
            await self._retry_or_fail(entry, attempt, exc)
        finally:
            self.pending.finished(entry)
            self.running.pop(row.id, None)
            self.rids.pop(row.id, None)
            self.on_done()

    async def _land(self, entry: Entry, outcome: Outcome) -> None:
        row = entry.row
        landed = await self.dbw.run(
            ds.record_result,
            self.dbw.db,
            row.id,
            row.batch_id,
            ok=True,
            response_json=orjson.dumps(outcome.body).decode(),
            status_code=200,
            error_json=None,
            request_id=ids.request_id(),
            finished_at=ids.now_precise(),
            prompt_tokens=outcome.prompt_tokens,
            cached_tokens=outcome.cached_tokens,
            completion_tokens=outcome.completion_tokens,
        )
        if landed:
            self.stats.succeeded += 1
            if outcome.completion_tokens:
                self.pending.learn(entry, outcome.completion_tokens // max(1, entry.params.n))

    async def _retry_or_fail(self, entry: Entry, attempt: int, exc: Exception) -> None:
        row = entry.row
        retryable = getattr(exc, "retryable", True)
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if retryable and attempt < self.config.max_attempts:
            self.stats.retried += 1
            log.warning("request %s attempt %d failed (%s); retrying", row.id, attempt, message)
            await asyncio.sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))
            await self.dbw.run(ds.return_to_pending, self.dbw.db, row.id)
            entry.row = dataclasses.replace(row, attempts=attempt)
            self.pending.requeue(entry)
            return
        message = f"The request failed after {attempt} attempt(s): {message}"
        if isinstance(exc, TimeoutError):  # the spec's per-line code for a model call that timed out
            await self.fail_line(row, None, None, error={"code": "request_timeout", "message": message})
        else:
            await self.fail_line(row, error_body(message, None, code="runtime_error", type_="server_error"), 500)
        self.pending.drop(row.id)
