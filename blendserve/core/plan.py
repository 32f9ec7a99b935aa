"""Batch plans: when a batch will start and finish, how much of it will hit the prefix cache, and where it sits
in the global schedule. Computed from the dispatcher's live tree (core/sched/eta.py replays the dual scanner
over it) with the perf model's work estimates, turned into wall time by the throughput measured online
(core/dispatch/throughput.py). Read the tree on the event loop that owns it (async routes call in directly).

Calibration: `work_rate` (model-seconds of work finished per wall second while busy) scales queue work into
time; `latency_ratio` (wall seconds a line spends on the runtime per model-second of its own work) adds the
last line's own run time. Before any result is seen, the perf model's own time is used (rate = the window's
concurrency, ratio 1) and the plan says `calibrated: false`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.dispatch.pending import Entry
from blendserve.core.sched.eta import ScheduleForecast, forecast
from blendserve.store.models import Batch
from blendserve.store.statuses import BatchStatus

CACHE_S = 1.0  # a plan of a 50k-line queue costs ~0.1-0.3 s: polled plans share one per second
TERMINAL = {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}


@dataclass(frozen=True)
class Rates:
    work_rate: float
    latency_ratio: float
    calibrated: bool
    lines_observed: int


class Planner:
    """One per dispatcher: caches the schedule forecast of the current tree for CACHE_S seconds."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._cached: tuple[float, tuple[int, int], ScheduleForecast] | None = None

    def schedule(self) -> ScheduleForecast:
        pending = self.dispatcher.pending
        key = (pending.tree.inserts, len(pending.tree))
        now = time.monotonic()
        if self._cached is not None and self._cached[1] == key and now - self._cached[0] < CACHE_S:
            return self._cached[2]
        order = pending.scanner.pending_order()
        result = forecast(pending.tree, order, lambda req: req.payload.row.batch_id)
        self._cached = (now, key, result)
        return result

    def rates(self) -> Rates:
        cal = self.dispatcher.meter.calibration()
        window = max(1, self.dispatcher.workers()[0].window)
        if cal.work_rate is None:
            return Rates(float(window), cal.latency_ratio or 1.0, False, cal.lines)
        return Rates(cal.work_rate, cal.latency_ratio or 1.0, True, cal.lines)

    def _in_flight(self) -> list[Entry]:
        d = self.dispatcher
        return [d.pending.entries[i] for i in list(d.runner.running) if i in d.pending.entries]

    def _entry_work(self, entry: Entry) -> float:
        perf = self.dispatcher.runtime.info.perf
        return perf.comp(len(entry.tokens), entry.treq.d_est) + entry.treq.mem

    def plan(self, batch: Batch) -> dict:
        """The batch's plan as the /v1/batches/{id}/plan body (times are unix seconds)."""
        now = time.time()
        body: dict = {"object": "batch.plan", "batch_id": batch.id, "status": str(batch.status), "computed_at": now}
        if batch.status in TERMINAL:
            return body | {"predicted_start_at": None, "predicted_finish_at": None, "finished_at": _ended(batch)}
        schedule, rates = self.schedule(), self.rates()
        in_flight = self._in_flight()
        mine = [e for e in in_flight if e.row.batch_id == batch.id]
        head = sum(self._entry_work(e) for e in in_flight) / 2  # on average half done
        group = schedule.groups.get(batch.id)
        started = batch.completed + batch.failed > 0 or bool(mine)
        if group is not None:
            start = now + (head + group.work_before_first) / rates.work_rate
            tail = rates.latency_ratio * group.work / group.lines
            finish = now + (head + group.work_through_last) / rates.work_rate + tail
            position = 1 + [k for k, _ in schedule.groups_in_order()].index(batch.id)
        else:
            start = now
            longest = max((self._entry_work(e) for e in mine), default=0.0)
            finish = now + rates.latency_ratio * longest / 2
            position = 0
        pending_prompt = group.prompt_tokens if group else 0
        pending_cached = group.cached_tokens if group else 0.0
        prompt = batch.input_tokens + pending_prompt
        return body | {
            "predicted_start_at": None if started else start,
            "started": started,
            "predicted_finish_at": finish,
            "predicted_seconds_remaining": max(0.0, finish - now),
            "predicted_cached_tokens_share": (batch.cached_tokens + pending_cached) / prompt if prompt else 0.0,
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
                "queue_work_seconds": schedule.work / rates.work_rate,
                "compute_heavy_lines": group.sides["L"] if group else 0,
                "memory_heavy_lines": group.sides["R"] if group else 0,
            },
            "calibration": {
                "calibrated": rates.calibrated,
                "work_rate": rates.work_rate,
                "latency_ratio": rates.latency_ratio,
                "lines_observed": rates.lines_observed,
            },
        }


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
        "computed_at": time.time(),
        "predicted_start_at": None,
        "predicted_finish_at": None,
        "finished_at": _ended(batch) if batch.status in TERMINAL else None,
    }
