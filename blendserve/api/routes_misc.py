"""/v1/models, the liveness probe, detailed health and /metrics.

`/healthz` is open and says only that the process answers (for load balancers and the container HEALTHCHECK).
With API keys configured, `/health` (database, dispatcher, runtime) and `/metrics` (every tenant's counts) need a
key, like the rest of the API."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from blendserve.api.deps import Ctx, Owner
from blendserve.core import overview
from blendserve.core.errors import NotFound
from blendserve.core.metrics import CONTENT_TYPE

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


@router.get("/healthz")
def liveness() -> dict:
    """The process is up and serving HTTP. Nothing about tenants, the host or the database."""
    return {"status": "ok"}


@router.get("/health")
async def health(ctx: Ctx, _owner: Owner) -> JSONResponse:
    """Database and dispatcher state; 503 when the database does not answer."""
    db_ok = await ctx.run(overview.database_ok, ctx.db)
    dispatcher = ctx.dispatcher
    body = {
        "status": "ok" if db_ok else "degraded",
        "database": "ok" if db_ok else "unavailable",
        "dispatcher": None if dispatcher is None else dispatcher.describe(),
    }
    return JSONResponse(body, status_code=200 if db_ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(ctx: Ctx, _owner: Owner) -> Response:
    """Prometheus text format (names and meanings in the README). The database counts are read off the event
    loop; the dispatcher's state is read on it, where the dispatcher owns it."""
    try:
        counts = await ctx.run(overview.status_counts, ctx.db)
    except Exception:
        counts = None  # blendserve_database_up 0; the dispatcher's metrics still answer
    return Response(ctx.metrics.render(counts), media_type=CONTENT_TYPE)
