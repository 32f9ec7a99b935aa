"""Runs dispatched lines on the runtime; outcomes land in group commits (result_sink.py).

A line that fails anywhere fails alone: runtime errors are retried with backoff (a new rid per attempt) and
then written as a per-line error (`runtime_error`, or `request_timeout` when the line outlived its deadline);
per-line problems (bad parameters) fail at once. A failure that is not the line's fault (RuntimeUnavailable, or
any retryable failure while the health breaker is open) costs the line no attempt. Each line waits at most the
deadline its runtime gives for it (Runtime.deadline_s: max_tokens over the measured rate). A result
lands only while its row is still in flight, so a late answer after cancel, expiry or a takeover never writes
a line twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any

import orjson

from blendserve.core import ids
from blendserve.core.dispatch.config import DispatchConfig
from blendserve.core.dispatch.db_worker import DbWorker
from blendserve.core.dispatch.health import RuntimeHealth
from blendserve.core.dispatch.pending import Entry, PendingSet
from blendserve.core.dispatch.result_sink import ResultSink
from blendserve.core.dispatch.stats import DispatchStats, LineEvent
from blendserve.core.openai_format import embedding_body, error_body, response_body
from blendserve.core.runtime.base import (
    EmbedParams,
    GenerateRequest,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
    UnsupportedParameter,
)
from blendserve.store import dispatch_queries as ds

log = logging.getLogger("blendserve.dispatch")
ABORT_TIMEOUT_S = 5.0


class LineErrorCode(StrEnum):
    """The per-line error codes a line that ran and failed is written with."""

    RUNTIME_ERROR = "runtime_error"
    REQUEST_TIMEOUT = "request_timeout"
    UNSUPPORTED_PARAMETER = "unsupported_parameter"


class LineTimeout(Exception):
    """The runtime did not answer the line within its deadline (retryable)."""

    retryable = True


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
        health: RuntimeHealth,
    ) -> None:
        self.dbw, self.runtime, self.config, self.pending, self.stats = dbw, runtime, config, pending, stats
        self.sink = ResultSink(dbw)  # results land in group commits
        self.health = health
        self.on_done = on_done  # wakes the loop: a slot is free
        self.running: dict[int, asyncio.Task[None]] = {}
        self.rids: dict[int, str] = {}  # the runtime request id of each line's current attempt
        self._requeued: set[int] = set()  # cancelled to run again (lost worker), not because their batch ended
        self._landing: set[int] = set()  # answered, being written: never taken back for a requeue
        self._stopping = False

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
        self.abort_rid(row_id)

    def requeue(self, row_ids: list[int]) -> None:
        """Take these lines off the runtime and run them again (their worker was lost, perhaps hung: waiting for
        it could take until their deadlines). Not their fault: no attempt is spent. A line that lands first stays
        landed; the store takes one result per line."""
        for row_id in row_ids:
            task = self.running.get(row_id)
            if task is not None and not task.done() and row_id not in self._landing:  # answered: let it land
                self._requeued.add(row_id)
                task.cancel()
                self.abort_rid(row_id)

    def abort_rid(self, row_id: int) -> None:
        rid = self.rids.pop(row_id, None)
        if rid is not None:
            asyncio.create_task(self._abort_on_runtime(rid), name=f"abort-{rid}")

    async def _abort_on_runtime(self, rid: str) -> None:
        try:
            await asyncio.wait_for(self.runtime.abort([rid]), ABORT_TIMEOUT_S)  # the worker may be the hung one
        except Exception as exc:  # best effort: the runtime also drops requests whose client went away
            log.warning("abort of %s on the runtime failed: %s", rid, exc)

    async def stop(self) -> None:
        self._stopping = True  # rows left in flight go back to pending when the next holder takes over
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def fail_line(
        self, row: ds.PendingRow, body: dict | None, status_code: int | None, error=None, seconds: float = 0.0
    ) -> None:
        """The line failed: its response carries the error envelope with the HTTP status it would have had, or
        (no HTTP answer at all, like a timeout) the output line's top-level `error` says why. `seconds`: how long
        it spent on the runtime (for the metrics)."""
        landed = await self.sink.land(
            ds.LineResult(
                row.id,
                row.batch_id,
                ok=False,
                response_json=orjson.dumps(body).decode() if body is not None else None,
                status_code=status_code,
                error_json=orjson.dumps(error).decode() if error is not None else None,
                request_id=ids.request_id(),
                finished_at=ids.now_precise(),
            )
        )
        if landed:
            self.stats.line_done(LineEvent("failed", seconds, 0.0))

    async def _execute(self, entry: Entry, rid: str) -> Outcome:
        """Raises LineTimeout past the line's deadline, after asking the runtime to drop the request."""
        name = self.runtime.info.name
        if isinstance(entry.params, EmbedParams):
            embedded = await self._within(self.runtime.embed(entry.params), self.config.request_timeout_s, rid)
            return Outcome(embedding_body(name, entry.params, embedded), embedded.prompt_tokens, 0, 0)
        lane = None if entry.lane is None else str(entry.lane)
        request = GenerateRequest(rid, entry.tokens, entry.params, route=lane)
        result = await self._within(self.runtime.generate(request), self.runtime.deadline_s(request), rid)
        echoed = orjson.loads(entry.row.body) if entry.row.endpoint == "/v1/responses" else None
        body = response_body(entry.row.endpoint, name, result, echoed)
        return Outcome(body, result.prompt_tokens, result.cached_tokens, result.completion_tokens)

    async def _within(self, call: Coroutine[Any, Any, Any], deadline: float, rid: str) -> Any:
        try:
            return await asyncio.wait_for(call, deadline)
        except TimeoutError:
            with contextlib.suppress(Exception):  # best effort, bounded: the runtime may be the thing that hangs
                await asyncio.wait_for(self.runtime.abort([rid]), ABORT_TIMEOUT_S)
            raise LineTimeout(f"no answer within the line's deadline of {deadline:.1f} s") from None

    async def _run(self, entry: Entry) -> None:
        row = entry.row
        attempt = row.attempts + 1
        rid = self.rids[row.id] = f"{row.id}-{attempt}" + (f"r{entry.free_requeues}" if entry.free_requeues else "")
        started = time.monotonic()
        try:
            outcome = await self._execute(entry, rid)
            self.health.record_success()
            self._landing.add(row.id)
            await self._land(entry, outcome, time.monotonic() - started)
            self.pending.drop(row.id)
        except asyncio.CancelledError:
            if row.id not in self._requeued or self._stopping:
                self.pending.drop(row.id)
                raise
            self.stats.line_done(LineEvent("requeued", time.monotonic() - started, 0.0))
            await self.dbw.run(ds.return_to_pending, self.dbw.db, row.id, refund_attempt=True)
            self.pending.requeue(entry)
        except UnsupportedParameter as exc:
            code = getattr(exc, "code", LineErrorCode.UNSUPPORTED_PARAMETER)
            body = error_body(str(exc), exc.param, code=code)
            await self.fail_line(row, body, 400, seconds=time.monotonic() - started)
            self.pending.drop(row.id)
        except Exception as exc:  # runtime errors and timeouts: retry with backoff, then a per-line error
            await self._retry_or_fail(entry, attempt, exc, time.monotonic() - started)
        finally:
            self._requeued.discard(row.id)
            self._landing.discard(row.id)
            self.pending.finished(entry)
            self.running.pop(row.id, None)
            self.rids.pop(row.id, None)
            self.on_done()

    async def _land(self, entry: Entry, outcome: Outcome, seconds: float) -> None:
        row = entry.row
        landed = await self.sink.land(
            ds.LineResult(
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
        )
        if landed:
            perf = self.runtime.info.perf
            work = perf.comp(outcome.prompt_tokens - outcome.cached_tokens, outcome.completion_tokens) + perf.mem(
                outcome.prompt_tokens, outcome.completion_tokens
            )
            self.stats.line_done(
                LineEvent(
                    "succeeded",
                    seconds,
                    work,
                    outcome.prompt_tokens,
                    outcome.cached_tokens,
                    outcome.completion_tokens,
                )
            )
            if outcome.completion_tokens:
                self.pending.learn(entry, outcome.completion_tokens // max(1, entry.params.n))

    async def _retry_or_fail(self, entry: Entry, attempt: int, exc: Exception, seconds: float) -> None:
        row = entry.row
        retryable = getattr(exc, "retryable", True)
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        # Only the runtime's own failures say anything about its health: an error of ours (a bug on one line)
        # is retried and then fails that line, but must never pause dispatch for everyone.
        if retryable and isinstance(exc, (RuntimeFailure, LineTimeout)):
            sent_at = time.monotonic() - seconds
            # A trial line that fails after the runtime's health check had passed spends its attempt: a line that
            # fails on a runtime claiming to be up must end, not reopen the breaker again and again. (Without a
            # health check, trial lines are the probe: their failures are the outage's.)
            trial = self.health.is_trial and self.health.check is not None
            self.health.record_failure(exc, sent_at)
            not_the_lines_fault = isinstance(exc, RuntimeUnavailable) or (
                not trial and self.health.should_refund(sent_at)
            )
            if not_the_lines_fault and entry.free_requeues < self.config.max_free_requeues:
                entry.free_requeues += 1
                self.stats.line_done(LineEvent("requeued", seconds, 0.0))  # the runtime's fault: attempt refunded
                await self.dbw.run(ds.return_to_pending, self.dbw.db, row.id, refund_attempt=True)
                self.pending.requeue(entry)
                return
        if retryable and attempt < self.config.max_attempts:
            self.stats.line_done(LineEvent("retried", seconds, 0.0))
            log.warning("request %s attempt %d failed (%s); retrying", row.id, attempt, message)
            await asyncio.sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))
            await self.dbw.run(ds.return_to_pending, self.dbw.db, row.id)
            entry.row = dataclasses.replace(row, attempts=attempt)
            self.pending.requeue(entry)
            return
        message = f"The request failed after {attempt} attempt(s): {message}"
        if isinstance(exc, LineTimeout):  # the spec's per-line code: no answer in time, so no response body
            error = {"code": LineErrorCode.REQUEST_TIMEOUT, "message": message}
            await self.fail_line(row, None, None, error=error, seconds=seconds)
        else:
            body = error_body(message, None, code=LineErrorCode.RUNTIME_ERROR, type_="server_error")
            await self.fail_line(row, body, 500, seconds=seconds)
        self.pending.drop(row.id)
