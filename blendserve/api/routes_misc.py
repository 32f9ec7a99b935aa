"""/v1/models, /health, /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select

from blendserve.api.deps import Ctx, Owner
from blendserve.core.errors import NotFound
from blendserve.store.models import Batch, BatchRequest

router = APIRouter(tags=["misc"])


def _model(model_id: str, created: int = 0) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "blendserve"}


@router.get("/v1/models")
def list_models(ctx: Ctx, _owner: Owner) -> dict:
    return {"object": "list", "data": [_model(m) for m in ctx.model_ids]}


@router.get("/v1/models/{model_id:path}")
def retrieve_model(ctx: Ctx, _owner: Owner, model_id: str) -> dict:
    if model_id not in ctx.model_ids:
        raise NotFound(f"The model '{model_id}' does not exist", param="model", code="model_not_found")
    return _model(model_id)


@router.get("/health")
def health(ctx: Ctx) -> dict:
    with ctx.db.transaction() as s:
        s.execute(select(1))
    dispatcher = ctx.dispatcher
    return {"status": "ok", "dispatcher": None if dispatcher is None else dispatcher.describe()}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(ctx: Ctx) -> str:
    """Prometheus text format: batch and request counts by status, plus dispatcher counters."""
    with ctx.db.transaction() as s:
        batches = s.execute(select(Batch.status, func.count()).group_by(Batch.status)).all()
        requests = s.execute(select(BatchRequest.status, func.count()).group_by(BatchRequest.status)).all()
    lines = ["# TYPE blendserve_batches gauge"]
    lines += [f'blendserve_batches{{status="{st}"}} {n}' for st, n in batches]
    lines.append("# TYPE blendserve_requests gauge")
    lines += [f'blendserve_requests{{status="{st}"}} {n}' for st, n in requests]
    if ctx.dispatcher is not None:
        for name, value in ctx.dispatcher.counters().items():
            lines += [f"# TYPE blendserve_dispatcher_{name} counter", f"blendserve_dispatcher_{name} {value}"]
    return "\n".join(lines) + "\n"
