"""Store -> pending set: pages of pending rows, each tokenized and mapped to runtime parameters.

A line whose body cannot run (a bad field, a parameter the runtime lacks) fails alone with a per-line 400. A
line whose tokenization hit a retryable runtime error stays pending: the load cursor stops just before it, so
no row is ever left behind the cursor."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson

from blendserve.core.dispatch.db_worker import DbWorker
from blendserve.core.dispatch.line_runner import LineRunner
from blendserve.core.dispatch.pending import PendingSet
from blendserve.core.openai_format import error_body, to_generate
from blendserve.core.runtime.base import EmbedParams, Runtime, SamplingParams, UnsupportedParameter
from blendserve.store import dispatch_queries as ds

log = logging.getLogger("blendserve.dispatch")
LOAD_PAGE = 2000


@dataclass(frozen=True)
class Prepared:
    row: ds.PendingRow
    tokens: list[int] | None = None
    params: SamplingParams | EmbedParams | None = None
    rejection: dict | None = None  # an OpenAI error body: the line fails with a 400
    retry_later: bool = False  # a retryable runtime error (tokenizer down): leave it pending
    error: str | None = None  # why it must wait (for the runtime-health breaker)


class Loader:
    def __init__(self, dbw: DbWorker, runtime: Runtime, pending: PendingSet, runner: LineRunner) -> None:
        self.dbw, self.runtime, self.pending, self.runner = dbw, runtime, pending, runner
        self.cursor = 0  # highest row id loaded
        self.stalled_on: str | None = None  # the retryable error that stopped the last load early, if any

    def reset(self) -> None:
        """Load everything again from the start (after taking the lease over)."""
        self.cursor = 0

    async def load(self) -> None:
        """Pull every pending row past the cursor into the pending set, page by page. Stops early (and says why
        in `stalled_on`) at the first row whose preparation hit a retryable runtime error."""
        self.stalled_on = None
        while True:
            rows = await self.dbw.run(ds.load_pending, self.dbw.db, self.cursor, LOAD_PAGE)
            rows = [r for r in rows if r.id not in self.pending]
            if not rows:
                return
            prepared = await asyncio.to_thread(self._prepare_all, rows)
            for item in prepared:
                if item.retry_later:
                    self.stalled_on = item.error
                    return  # the cursor stays before this row; the next sweep tries it again
                self.cursor = max(self.cursor, item.row.id)
                if item.rejection is not None:
                    await self.runner.fail_line(item.row, item.rejection, 400)
                else:
                    assert item.tokens is not None and item.params is not None
                    self.pending.add(item.row, item.tokens, item.params)
            if len(rows) < LOAD_PAGE:
                return

    def _prepare_all(self, rows: list[ds.PendingRow]) -> list[Prepared]:
        out = []
        for row in rows:
            item = self._prepare(row)
            out.append(item)
            if item.retry_later:
                break
        return out

    def _prepare(self, row: ds.PendingRow) -> Prepared:
        try:
            body = orjson.loads(row.body)
            tokens, params = to_generate(row.endpoint, body, self.runtime.tokenizer, self.runtime.info)
            return Prepared(row, tokens, params)
        except UnsupportedParameter as exc:
            code = getattr(exc, "code", "unsupported_parameter")
            return Prepared(row, rejection=error_body(str(exc), exc.param, code=code))
        except Exception as exc:  # one line's body must never stop the others
            if getattr(exc, "retryable", False):
                log.warning("line %s could not be prepared yet (%s); will retry", row.id, exc)
                return Prepared(row, retry_later=True, error=f"preparing a line: {type(exc).__name__}: {exc}")
            log.warning("line %s rejected: %s: %s", row.id, type(exc).__name__, exc)
            message = f"The request body could not be processed: {exc}" if str(exc) else "Invalid request body."
            return Prepared(row, rejection=error_body(message, None, code="invalid_request"))
