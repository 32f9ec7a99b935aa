"""The dashboard's live state: a tenant's batches with progress and plans, and the server-wide picture
(throughput over time, prefix-cache hit ratio, the compute/memory blend in flight, per-worker load).

Tenant data (batches) is filtered by owner; server-wide figures are aggregates with no tenant in them. Call on
the event loop that owns the dispatcher (the batch rows come in already read)."""

from __future__ import annotations

from blendserve.core import ids
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.plan import Planner, plan_batch
from blendserve.core.sched.scanner import LEFT, RIGHT
from blendserve.store.models import Batch


def live_state(dispatcher: Dispatcher | None, planner: Planner | None, rows: list[Batch]) -> dict:
    return {
        "now": ids.now_precise(),  # the page counts "in N s" from the server's clock, not the browser's
        "batches": [_batch(planner, row) for row in rows],
        "server": None if dispatcher is None else _server(dispatcher, planner),
    }


def _batch(planner: Planner | None, row: Batch) -> dict:
    plan = plan_batch(planner, row)
    cached_share = plan.get("predicted_cached_tokens_share")
    if cached_share is None and row.input_tokens:  # a finished batch: what it really got
        cached_share = row.cached_tokens / row.input_tokens
    return {
        "id": row.id,
        "status": str(row.status),
        "endpoint": row.endpoint,
        "created_at": row.created_at,
        "total": row.total,
        "completed": row.completed,
        "failed": row.failed,
        "input_tokens": row.input_tokens,
        "cached_tokens": row.cached_tokens,
        "output_tokens": row.output_tokens,
        "predicted_finish_at": plan.get("predicted_finish_at"),
        "cached_tokens_share": cached_share,
        "schedule_position": (plan.get("schedule") or {}).get("position"),
        "finished_at": plan.get("finished_at"),
    }


def _server(d: Dispatcher, planner: Planner | None) -> dict:
    s, scanner, tree = d.stats, d.pending.scanner, d.pending.tree
    kv_l, kv_r = d.pending.inflight[LEFT], d.pending.inflight[RIGHT]
    rates = scanner.rate_comp + scanner.rate_mem
    rho = tree.rho(tree.root) if tree.root.mem > 0 else None
    return {
        "model": d.runtime.info.name,
        "dispatcher_active": d.holding,
        "queue_lines": len(d.pending),
        "in_flight_lines": len(d.runner),
        "succeeded": s.succeeded,
        "failed": s.failed,
        "cache_hit_ratio": s.cached_tokens / s.prompt_tokens if s.prompt_tokens else None,
        "throughput": d.meter.series(),
        "blend": {
            # KV held per scanner side (left = compute-heavy) and per-step compute vs memory time in flight
            "compute_side_kv_share": kv_l / (kv_l + kv_r) if kv_l + kv_r > 0 else None,
            "compute_time_share": scanner.rate_comp / rates if rates > 0 else None,
            "target_compute_time_share": rho / (1 + rho) if rho is not None and rho != float("inf") else None,
        },
        "workers": [
            {
                "worker": w.worker,
                "name": w.name,
                "in_flight": sum(w.inflight_lines.values()),
                "window": w.window,
                "load": sum(w.inflight_lines.values()) / w.window if w.window else 0.0,
                "inflight_lines": w.inflight_lines,
            }
            for w in d.workers()
        ],
        "calibrated": planner.rates().calibrated if planner is not None else False,
    }
