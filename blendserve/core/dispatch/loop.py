"""The worker loop: store -> global prefix tree -> dual scanner -> runtime -> store (ARCHITECTURE.md, step 3).

One dispatcher is active per database (a lease row). Every pending line of every in-progress batch sits in ONE
PrefixTree; the DualScanner decides what runs next and on which side, within KV budgets from the runtime.
Results are written one transaction each, as they land; batches finalize when nothing of them is left."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson

from blendserve.config import Settings
from blendserve.core import files, finalize, ids
from blendserve.core.openai_format import embedding_body, error_body, response_body, to_generate
from blendserve.core.runtime.base import (
    EmbedParams,
    GenerateRequest,
    Runtime,
    SamplingParams,
    UnsupportedParameter,
)
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sched.scanner import LEFT, RIGHT, DualScanner, sample_requests
from blendserve.store import dispatch_queries as ds
from blendserve.store.blobs import BlobStore
from blendserve.store.db import Database, is_sqlite
from blendserve.store.statuses import BatchStatus

log = logging.getLogger("blendserve.dispatcher")
LEASE = "dispatcher"
LOAD_PAGE = 2000


@dataclass
class Entry:
    row: ds.PendingRow
    tokens: list[int]
    params: SamplingParams | EmbedParams
    treq: TreeRequest
    side: str = LEFT


class Dispatcher:
    def __init__(self, db: Database, blobs: BlobStore, settings: Settings, runtime: Runtime) -> None:
        self.db, self.blobs, self.settings, self.runtime = db, blobs, settings, runtime
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.tree = PrefixTree(runtime.info.perf)
        self.scanner = DualScanner(self.tree)
        self.entries: dict[int, Entry] = {}
        self.by_batch: dict[str, set[int]] = {}
        self.inflight: dict[str, float] = {LEFT: 0.0, RIGHT: 0.0}
        self.running: dict[int, asyncio.Task] = {}
        self.last_loaded = 0
        self.holding = False
        self.lease_renewed = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._new_work = True
        self._last_sweep = 0.0
        self._last_file_sweep = 0
        self._needs_sample = False  # new lines arrived: run a small sample of each new group first
        self._observed = 0
        self._next_rebuild = 16
        # SQLite takes one writer at a time, and threads contending for its lock back off in sleeps of up to
        # 100 ms each: one thread does all of the dispatcher's database work there. Postgres takes concurrent
        # writers, and each result's transaction is mostly round trips: four threads overlap them.
        workers = 1 if is_sqlite(db.url) else 4
        self._db_thread = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dispatcher-db")
        self.stats = {"dispatched": 0, "succeeded": 0, "failed": 0, "retried": 0, "finalized": 0}

    async def _db(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, functools.partial(fn, *args, **kwargs))

    @property
    def model_ids(self) -> list[str]:
        return [self.runtime.info.name]

    def wake(self, new_work: bool = True) -> None:
        """new_work: batches were created or cancelled (load and housekeep now); False: a result landed."""
        self._new_work = self._new_work or new_work
        self._wake.set()

    def describe(self) -> dict:
        return {
            "holder": self.holder,
            "active": self.holding,
            "pending": len(self.tree),
            "in_flight": len(self.running),
            "model": self.runtime.info.name,
        }

    def counters(self) -> dict[str, int]:
        return dict(self.stats)

    async def start(self) -> None:
        await self.runtime.start()
        self._task = asyncio.create_task(self._loop(), name="blendserve-dispatcher")

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        if self.holding:  # rows left in_flight go back to pending when the next holder takes over
            await self._db(ds.release_lease, self.db, LEASE, self.holder)
        await self.runtime.close()
        self._db_thread.shutdown(wait=True)

    # ---- loop ---------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad tick kill the worker; the next tick retries
                log.exception("dispatcher tick failed")
                await asyncio.sleep(1.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.5)

    async def tick(self) -> None:
        if not await self._hold_lease():
            return
        now = time.monotonic()
        if self._new_work or now - self._last_sweep >= 0.5:  # results alone only need a dispatch
            self._new_work, self._last_sweep = False, now
            await self._load()
            await self._housekeeping()
        await self._dispatch()

    async def _hold_lease(self) -> bool:
        now = time.monotonic()
        if self.holding and now - self.lease_renewed < self.settings.lease_seconds / 3:
            return True
        held = await self._db(ds.acquire_lease, self.db, LEASE, self.holder, self.settings.lease_seconds)
        if held and not self.holding:
            requeued = await self._db(ds.requeue_in_flight, self.db)
            log.info(
                "dispatcher %s active; %d request(s) left in flight by a previous holder requeued",
                self.holder,
                requeued,
            )
            self.last_loaded = 0
        self.holding, self.lease_renewed = held, now
        return held

    # ---- store -> tree ------------------------------------------------------------------------------
    async def _load(self) -> None:
        while True:
            rows = await self._db(ds.load_pending, self.db, self.last_loaded, LOAD_PAGE)
            rows = [r for r in rows if r.id not in self.entries]
            if not rows:
                return
            self.last_loaded = max(self.last_loaded, rows[-1].id)
            prepared = await asyncio.to_thread(self._prepare, rows)
            for row, tokens, params, problem in prepared:
                if problem is not None:
                    await self._db(self._reject, row, problem)
                    continue
                treq = TreeRequest(row.id, tokens, params.max_new_tokens * params.n)
                entry = Entry(row, tokens, params, treq)
                treq.payload = entry
                self.entries[row.id] = entry
                self.by_batch.setdefault(row.batch_id, set()).add(row.id)
                self.tree.insert(treq)
                self._needs_sample = True
            if len(rows) < LOAD_PAGE:
                return

    def _prepare(self, rows: list[ds.PendingRow]) -> list:
        out = []
        for row in rows:
            try:
                tokens, params = to_generate(
                    row.endpoint, orjson.loads(row.body), self.runtime.tokenizer, self.runtime.info
                )
                out.append((row, tokens, params, None))
            except UnsupportedParameter as exc:
                out.append((row, None, None, exc))
        return out

    def _reject(self, row: ds.PendingRow, exc: UnsupportedParameter) -> None:
        self._fail_line(row, error_body(str(exc), exc.param, code="unsupported_parameter"), 400)

    def _fail_line(self, row: ds.PendingRow, body: dict, status_code: int) -> None:
        """The line failed: its response carries the error envelope with the HTTP status it would have had."""
        if ds.record_result(
            self.db,
            row.id,
            row.batch_id,
            ok=False,
            response_json=orjson.dumps(body).decode(),
            status_code=status_code,
            error_json=None,
            request_id=ids.request_id(),
        ):
            self.stats["failed"] += 1

    # ---- cancel / expire / finalize -----------------------------------------------------------------
    async def _housekeeping(self) -> None:
        now = ids.now()
        if now - self._last_file_sweep >= 60:
            self._last_file_sweep = now
            await self._db(files.delete_expired, self.db, self.blobs)
        for batch_id, status, expires_at in await self._db(ds.active_batches, self.db):
            if status == BatchStatus.IN_PROGRESS and expires_at is not None and expires_at <= now:
                self._forget_batch(batch_id)
                if await self._db(finalize.expire, self.db, self.blobs, batch_id):
                    self.stats["finalized"] += 1
                continue
            if status == BatchStatus.CANCELLING:
                self._forget_batch(batch_id, keep_running=True)
            idle = status != BatchStatus.IN_PROGRESS or not self.by_batch.get(batch_id)
            if idle and await self._db(finalize.finalize_if_idle, self.db, self.blobs, batch_id):
                self.stats["finalized"] += 1
                self.by_batch.pop(batch_id, None)

    def _forget_batch(self, batch_id: str, keep_running: bool = False) -> None:
        """Take a batch's pending lines out of the tree; in-flight ones finish (cancel) or are dropped (expiry:
        their rows are already expired, so a late result cannot land)."""
        for row_id in list(self.by_batch.get(batch_id, ())):
            entry = self.entries.get(row_id)
            if entry is None:
                continue
            if entry.treq.node is not None:
                self.tree.remove(entry.treq)
                self._drop(row_id)
            elif not keep_running and row_id in self.running:
                self.running[row_id].cancel()

    def _drop(self, row_id: int) -> None:
        entry = self.entries.pop(row_id, None)
        if entry is not None:
            rows = self.by_batch.get(entry.row.batch_id)
            if rows is not None:
                rows.discard(row_id)

    # ---- tree -> runtime -> store -------------------------------------------------------------------
    async def _dispatch(self) -> None:
        cap = self.runtime.info.max_concurrency
        if self.settings.max_inflight:
            cap = min(cap, self.settings.max_inflight)
        room = cap - len(self.running)
        if room <= 0 or not len(self.tree) or (self.running and room < max(1, cap // 8)):
            return  # wait for a wave's worth of room: one mark_in_flight transaction per wave, not per request
        picked: list[tuple[TreeRequest, str]] = []
        if self._needs_sample:
            self._needs_sample = False
            picked = [(r, LEFT) for r in sample_requests(self.tree, cap=max(1, room // 2), unobserved_only=True)]
        picked += self.scanner.next_requests(
            float(self.runtime.info.kv_capacity_tokens),
            self.inflight[LEFT],
            self.inflight[RIGHT],
            limit=room - len(picked),
        )
        if not picked:
            return
        moved = await self._db(ds.mark_in_flight, self.db, [r.key for r, _ in picked])
        for treq, side in picked:
            if treq.key not in moved:  # cancelled or finished meanwhile
                self._drop(treq.key)
                continue
            entry = treq.payload
            entry.side = side
            self.inflight[side] += treq.footprint
            self.stats["dispatched"] += 1
            self.running[treq.key] = asyncio.create_task(self._run(entry))

    def _learn(self, entry: Entry, output_tokens: int) -> None:
        """Refine the subtree's output-length estimate; re-lay the order each time observations double."""
        self.tree.observe(entry.tokens, output_tokens)
        self._observed += 1
        if self._observed >= self._next_rebuild:
            self._next_rebuild = max(16, int(self._observed * 2))
            self.scanner.invalidate()

    async def _execute(self, entry: Entry, rid: str) -> tuple[dict, int, int, int]:
        """Run one line; returns (response body, prompt, cached and completion tokens)."""
        name = self.runtime.info.name
        if isinstance(entry.params, EmbedParams):
            embedded = await self.runtime.embed(entry.params)
            return embedding_body(name, entry.params, embedded), embedded.prompt_tokens, 0, 0
        result = await self.runtime.generate(GenerateRequest(rid, tuple(entry.tokens), entry.params))
        body = response_body(entry.row.endpoint, name, result)
        return body, result.prompt_tokens, result.cached_tokens, result.completion_tokens

    async def _run(self, entry: Entry) -> None:
        row = entry.row
        attempt = row.attempts + 1
        rid = f"{row.id}-{attempt}"
        try:
            body, prompt, cached, completion = await asyncio.wait_for(
                self._execute(entry, rid), timeout=self.settings.request_timeout_s
            )
            landed = await self._db(
                ds.record_result,
                self.db,
                row.id,
                row.batch_id,
                ok=True,
                response_json=orjson.dumps(body).decode(),
                status_code=200,
                error_json=None,
                request_id=ids.request_id(),
                prompt_tokens=prompt,
                cached_tokens=cached,
                completion_tokens=completion,
            )
            if landed:
                self.stats["succeeded"] += 1
                if completion:
                    self._learn(entry, completion // max(1, entry.params.n))
            self._drop(row.id)
        except asyncio.CancelledError:
            self._drop(row.id)
            raise
        except UnsupportedParameter as exc:
            await self._db(self._reject, row, exc)
            self._drop(row.id)
        except Exception as exc:  # runtime errors and timeouts: retry with backoff, then a per-line error
            await self._retry_or_fail(entry, attempt, exc)
        finally:
            self.scanner.done(entry.treq)
            self.inflight[entry.side] -= entry.treq.footprint
            self.running.pop(row.id, None)
            self.wake(new_work=False)

    async def _retry_or_fail(self, entry: Entry, attempt: int, exc: Exception) -> None:
        row = entry.row
        retryable = getattr(exc, "retryable", True)
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if retryable and attempt < self.settings.max_attempts:
            self.stats["retried"] += 1
            log.warning("request %s attempt %d failed (%s); retrying", row.id, attempt, message)
            await asyncio.sleep(self.settings.retry_backoff_s * 2 ** (attempt - 1))
            await self._db(ds.return_to_pending, self.db, row.id)
            entry.row = dataclasses.replace(row, attempts=attempt)
            if row.id in self.entries and entry.treq.node is None:
                self.tree.insert(entry.treq)
            return
        body = error_body(
            f"The request failed after {attempt} attempt(s): {message}",
            None,
            code="runtime_error",
            type_="server_error",
        )
        await self._db(self._fail_line, row, body, 500)
        self._drop(row.id)


def make_dispatcher(ctx, settings: Settings) -> Dispatcher:
    from blendserve.core.runtime.factory import build_runtime

    return Dispatcher(ctx.db, ctx.blobs, settings, build_runtime(settings))
