"""Batch plans: when a batch will start and finish, how much of it will hit the prefix cache, and where it sits
in the global schedule. Computed from the dispatcher's live tree: core/sched/eta.py replays the dispatch (window,
KV budget, the dual scanner's rate rule) over it with the perf model's work estimates. Read the tree on the event
loop that owns it (async routes call in directly).

Calibration, online (core/dispatch/throughput.py): `latency_ratio`, the wall seconds a line spends on the runtime
per model-second of its own modelled work, averaged over recent results, turns modelled work into wall time and
folds in both the runtime's real speed and the slowdown of running `window` lines at once. Before any result is
seen the perf model's own time is used (ratio 1) and the plan says `calibrated: false`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from blendserve.core import ids
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.dispatch.pending import Entry
from blendserve.core.sched.eta import Running, ScheduleForecast, forecast
from blendserve.core.sched.prefix_tree import TreeRequest
from blendserve.store.models import Batch
from blendserve.store.statuses import BatchStatus

# A replay costs ~5-20 us per pending line on the event loop the dispatcher runs on; up to eta.EXACT_LINES (20k)
# lines are replayed one by one, a longer queue as a sample of about eta.SAMPLE_UNITS lines (each standing for
# its stretch of the order; eta.py's docstring says what that gives up), so one forecast costs at most ~0.1-0.2 s
# of CPU whatever the queue (bench/plan_scale_bench.py: 1M lines). The order comes from pending_order(), which
# at scale lists the current order then the lines that arrived since its layout began (no layout at once).
# A forecast is reused for REUSE_FACTOR times what it cost (at least MIN_REUSE_S), or a quarter of that once new
# lines arrived, so plans, the dashboard and /metrics never spend more than ~10%.
MIN_REUSE_S = 1.0
MAX_REUSE_S = 30.0
REUSE_FACTOR = 10.0
TERMINAL = {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}


@dataclass(frozen=True)
class Rates:
    work_rate: float | None  # observed model-seconds of work finished per wall second (None: not yet)
    latency_ratio: float
    calibrated: bool
    lines_observed: int


class Planner:
    """One per dispatcher: computes the schedule forecast of the current tree and reuses it for a while; a
    forecast's times count from `forecast_at` (unix seconds), so a reused one still predicts the same instants."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._cached: ScheduleForecast | None = None
        self._cached_at = 0.0
        self.forecast_at = 0.0
        self._cached_inserts = -1
        self._reuse_s = MIN_REUSE_S

    def schedule(self) -> ScheduleForecast:
        """The forecast of the current queue, recomputed when the last one is stale (see REUSE_FACTOR)."""
        d = self.dispatcher
        pending = d.pending
        now = time.monotonic()
        age = now - self._cached_at
        fresh = age < (self._reuse_s if pending.tree.inserts == self._cached_inserts else self._reuse_s / 4)
        if self._cached is not None and fresh:
            return self._cached
        rates = self.rates()
        result = forecast(
            pending.tree,
            pending.pending_order(),
            _batch_of,
            window=max(1, d.workers()[0].window),
            kv_capacity=float(d.runtime.info.kv_capacity_tokens),
            latency_ratio=rates.latency_ratio,
            running=[self._running(e, rates.latency_ratio) for e in self._in_flight()],
        )
        cost = time.monotonic() - now
        self._cached, self._cached_at, self._cached_inserts = result, now, pending.tree.inserts
        self.forecast_at = ids.now_precise() - cost
        self._reuse_s = min(MAX_REUSE_S, max(MIN_REUSE_S, REUSE_FACTOR * cost))
        return result

    def rates(self) -> Rates:
        cal = self.dispatcher.meter.calibration()
        return Rates(cal.work_rate, cal.latency_ratio or 1.0, cal.latency_ratio is not None, cal.lines)

    def _in_flight(self) -> list[Entry]:
        d = self.dispatcher
        return [d.pending.entries[i] for i in list(d.runner.running) if i in d.pending.entries]

    def _waiting(self, batch_id: str, in_flight: int) -> bool:
        """Whether the batch has lines in the tree (pending or in flight here, less those in flight)."""
        return len(self.dispatcher.pending.by_batch.get(batch_id, ())) > in_flight

    def _entry_work(self, entry: Entry) -> float:
        perf = self.dispatcher.runtime.info.perf
        return perf.comp(len(entry.tokens), entry.treq.d_est) + entry.treq.mem

    def _running(self, entry: Entry, latency_ratio: float) -> Running:
        comp_rate, mem_rate = self.dispatcher.pending.scanner.taken_rates.get(entry.treq.key, (0.0, 0.0))
        remaining = latency_ratio * self._entry_work(entry) / 2  # on average half done
        return Running(remaining, comp_rate, mem_rate, entry.treq.footprint)

    def plan(self, batch: Batch) -> dict:
        """The batch's plan as the /v1/batches/{id}/plan body (times are unix seconds)."""
        now = ids.now_precise()
        body: dict = {"object": "batch.plan", "batch_id": batch.id, "status": str(batch.status), "computed_at": now}
        if batch.status in TERMINAL:
            return body | {"predicted_start_at": None, "predicted_finish_at": None, "finished_at": _ended(batch)}
        schedule, rates = self.schedule(), self.rates()
        base = self.forecast_at
        mine = [e for e in self._in_flight() if e.row.batch_id == batch.id]
        group = schedule.groups.get(batch.id)
        started = batch.completed + batch.failed > 0 or bool(mine)
        in_flight_done = max((rates.latency_ratio * self._entry_work(e) / 2 for e in mine), default=0.0)
        if group is not None:
            start = max(now, base + group.first_start_s)
            finish = max(now, base + group.last_finish_s, now + in_flight_done)
            position = 1 + [k for k, _ in schedule.groups_in_order()].index(batch.id)
        elif schedule.stride > 1 and self._waiting(batch.id, len(mine)):
            # too small for the sample of a long queue to meet it: not placed, done by the drain at the latest
            start, finish = now, max(now, base + schedule.drain_s, now + in_flight_done)
            position = len(schedule.groups) + 1
        else:
            start, finish, position = now, now + in_flight_done, 0
        prompt = batch.input_tokens + (group.prompt_tokens if group else 0)
        cached = batch.cached_tokens + (group.cached_tokens if group else 0.0)
        return body | {
            "predicted_start_at": None if started else start,
            "started": started,
            "predicted_finish_at": finish,
            "predicted_seconds_remaining": max(0.0, finish - now),
            "predicted_cached_tokens_share": cached / prompt if prompt else 0.0,
            "lines": {
                "total": batch.total,
                "finished": batch.completed + batch.failed,
                "in_flight": len(mine),
                "pending": group.lines if group else 0,
            },
            "schedule": {
                "position": position,  # 1 = the next batch to start; 0 = nothing of it left to dispatch
                "batches_queued": len(schedule.groups),
                "lines_ahead": group.first_position if group else 0,
                "queue_lines": schedule.lines,
                "queue_drain_seconds": max(0.0, base + schedule.drain_s - now),
                "compute_heavy_lines": group.sides["L"] if group else 0,
                "memory_heavy_lines": group.sides["R"] if group else 0,
            },
            "calibration": {
                "calibrated": rates.calibrated,
                "latency_ratio": rates.latency_ratio,
                "work_rate": rates.work_rate,
                "lines_observed": rates.lines_observed,
            },
        }


def _batch_of(req: TreeRequest) -> str:
    entry = req.payload
    assert isinstance(entry, Entry)
    return entry.row.batch_id


def _ended(batch: Batch) -> int | None:
    return batch.completed_at or batch.failed_at or batch.expired_at or batch.cancelled_at


def plan_batch(planner: Planner | None, batch: Batch) -> dict:
    """A plan, or a plan without predictions where this process runs no dispatcher (an API-only server)."""
    if planner is not None:
        return planner.plan(batch)
    return {
        "object": "batch.plan",
        "batch_id": batch.id,
        "status": str(batch.status),
        "computed_at": ids.now_precise(),
        "predicted_start_at": None,
        "predicted_finish_at": None,
        "finished_at": _ended(batch) if batch.status in TERMINAL else None,
    }
