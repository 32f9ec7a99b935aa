"""The dispatcher: store -> global prefix tree -> dual scanner -> runtime -> store (docs/ARCHITECTURE.md).

One dispatcher is active per database (a lease row); other replicas serve the API and take over when the lease
lapses. Each tick: hold the lease, load new lines and sweep batches when there is news, then dispatch a wave.
While the runtime is down (RuntimeHealth's breaker is open) the tick probes it instead of loading and sends no
wave; the sweep still runs, so cancel and expiry work during an outage. The pieces own their state: PendingSet
(tree, per-batch index), Loader (load cursor), LineRunner (tasks in flight), Housekeeper (cancel/expire/
finalize), RuntimeHealth (breaker); this loop only sequences them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from blendserve.core import ids
from blendserve.core.dispatch.config import DispatchConfig
from blendserve.core.dispatch.db_worker import DbWorker
from blendserve.core.dispatch.health import RuntimeHealth, health_check_of
from blendserve.core.dispatch.housekeeping import Housekeeper
from blendserve.core.dispatch.line_runner import LineRunner
from blendserve.core.dispatch.loader import Loader
from blendserve.core.dispatch.pending import Entry, PendingSet
from blendserve.core.dispatch.stats import DispatchStats
from blendserve.core.dispatch.throughput import ThroughputMeter
from blendserve.core.dispatch.workers import Fleet
from blendserve.core.runtime.base import Runtime
from blendserve.core.runtime.gateway import GatewayRuntime
from blendserve.core.sched.scanner import Side
from blendserve.store import dispatch_queries as ds
from blendserve.store.blobs import BlobStore
from blendserve.store.db import Database

log = logging.getLogger("blendserve.dispatch")
LEASE = "dispatcher"
SWEEP_EVERY_S = 0.5
IDLE_WAIT_S = 0.5
WAVE_FRACTION = 8  # wait for 1/8 of the window to free up: one mark_in_flight transaction per wave


@dataclass(frozen=True)
class WorkerLoad:
    worker: str
    name: str
    inflight_lines: dict[str, int]  # by scanner side ("L" compute-heavy, "R" memory-heavy)
    inflight_kv_tokens: dict[str, float]  # the scanner's KV footprint charged per side
    window: int  # the most lines it may hold


class Dispatcher:
    def __init__(self, db: Database, blobs: BlobStore, config: DispatchConfig, runtime: Runtime) -> None:
        self.config, self.runtime = config, runtime
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.dbw = DbWorker(db)
        self.stats = DispatchStats()
        self.meter = ThroughputMeter()
        self.stats.line_observers.append(self.meter.record)
        self.pending = PendingSet(runtime.info.perf, pace=config.pace_decode)
        self.health = RuntimeHealth(health_check_of(runtime), config.health)
        self.runner = LineRunner(
            self.dbw, runtime, config, self.pending, self.stats, lambda: self.wake(False), self.health
        )
        self.loader = Loader(self.dbw, runtime, self.pending, self.runner)
        # many workers behind a gateway: one lane per worker, each with its own window (workers.py)
        self.fleet = Fleet(runtime, self.pending, self._window()) if isinstance(runtime, GatewayRuntime) else None
        self.housekeeper = Housekeeper(self.dbw, blobs, self.pending, self.runner, self.stats)
        self.holding = False
        self._lease_renewed = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._new_work = True
        self._last_sweep = 0.0

    @property
    def model_ids(self) -> list[str]:
        """The served model's name; empty while a remote runtime has not named it yet."""
        return [self.runtime.info.name] if self.runtime.info.name else []

    def wake(self, new_work: bool = True) -> None:
        """new_work: batches were created or cancelled (load and sweep now); False: a result landed."""
        self._new_work = self._new_work or new_work
        self._wake.set()

    def describe(self) -> dict[str, object]:
        return {
            "holder": self.holder,
            "active": self.holding,
            "pending": len(self.pending),
            "in_flight": len(self.runner),
            "model": self.runtime.info.name,
            "runtime": self.health.describe(),
            **({"fleet": self.fleet.describe()} if self.fleet is not None else {}),
        }

    def runtime_health(self) -> dict[str, object]:
        """The runtime's breaker state, for /health: {"state": closed|open|half_open, "down_for_s", ...}."""
        return self.health.describe()

    def counters(self) -> dict[str, int]:
        return self.stats.as_dict()

    def workers(self) -> list[WorkerLoad]:
        """What each runtime worker holds now. One worker today (the runtime); a gateway runtime adds more."""
        inflight = {str(side): kv for side, kv in self.pending.inflight.items()}
        lines = {side: 0 for side in inflight}
        for row_id in self.runner.running:
            entry = self.pending.entries.get(row_id)
            if entry is not None:
                lines[str(entry.side)] += 1
        return [WorkerLoad("0", self.runtime.info.name, lines, inflight, self._window())]

    async def start(self) -> None:
        await self.runtime.start()
        self._task = asyncio.create_task(self._loop(), name="blendserve-dispatcher")

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.runner.stop()
        if self.holding:  # rows left in_flight go back to pending when the next holder takes over
            await self.dbw.run(ds.release_lease, self.dbw.db, LEASE, self.holder)
        await self.runtime.close()
        self.dbw.close()

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
                await asyncio.wait_for(self._wake.wait(), timeout=IDLE_WAIT_S)

    async def tick(self) -> None:
        if not await self._hold_lease():
            return
        await self.health.probe_if_due()
        now = time.monotonic()
        if self._new_work or now - self._last_sweep >= SWEEP_EVERY_S:  # results alone only need a dispatch
            self._new_work, self._last_sweep = False, now
            if not self.health.is_open:  # loading tokenizes, and the tokenizer may be the runtime that is down
                await self.loader.load()
                if self.loader.stalled_on is not None:
                    self.health.record_failure(self.loader.stalled_on)
            await self.housekeeper.sweep()
        await self._dispatch_wave()

    async def _hold_lease(self) -> bool:
        now = time.monotonic()
        if self.holding and now - self._lease_renewed < self.config.lease_seconds / 3:
            return True
        held = await self.dbw.run(
            ds.acquire_lease, self.dbw.db, LEASE, self.holder, self.config.lease_seconds, ids.now_precise()
        )
        if held and not self.holding:
            requeued = await self.dbw.run(ds.requeue_in_flight, self.dbw.db)
            log.info("dispatcher %s active; %d line(s) left in flight before requeued", self.holder, requeued)
            self.loader.reset()
        self.holding, self._lease_renewed = held, now
        return held

    def _window(self) -> int:
        cap = self.runtime.info.max_concurrency
        return min(cap, self.config.max_inflight) if self.config.max_inflight else cap

    async def _dispatch_wave(self) -> None:
        if self.fleet is not None:
            lost = set(await self.fleet.refresh())
            if lost:  # a hung worker would hold these until their deadlines: they run again elsewhere now
                self.runner.requeue([row_id for row_id, e in self.pending.entries.items() if e.lane in lost])
            if self.health.dispatch_room(1) > 0:  # nothing goes out while the runtime is down
                await self._start_wave(self.fleet.next_wave(), time.monotonic())
            return
        cap = self._window()
        room = self.health.dispatch_room(cap - len(self.runner))  # 0 while the runtime is down
        if room <= 0 or not len(self.pending):
            return
        if not self.health.is_trial and len(self.runner) and room < max(1, cap // WAVE_FRACTION):
            return
        started = time.monotonic()
        await self._start_wave(self.pending.next_wave(room, float(self.runtime.info.kv_capacity_tokens)), started)

    async def _start_wave(self, wave: list[tuple[Entry, Side]], started: float) -> None:
        """Mark the wave in flight (one transaction) and start its lines; `started`: when picking it began."""
        if not wave:
            return
        self.health.dispatched(len(wave))
        moved = await self.dbw.run(ds.mark_in_flight, self.dbw.db, [entry.row.id for entry, _ in wave])
        for entry, side in wave:
            if entry.row.id not in moved:  # cancelled or finished meanwhile
                self.pending.drop(entry.row.id)
                continue
            self.pending.started(entry, side)
            self.runner.start(entry)
        self.stats.wave_done(len(moved), time.monotonic() - started)
