"""/v1/batches: create, retrieve, list, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from blendserve.api.deps import Ctx, Owner
from blendserve.api.schemas import (
    BatchList,
    BatchObject,
    BatchPlan,
    CreateBatchBody,
    ErrorEnvelope,
    batch_dict,
    batch_page,
    json_response,
)
from blendserve.core import batches, plan

router = APIRouter(
    prefix="/v1/batches",
    tags=["batches"],
    responses={
        400: {"model": ErrorEnvelope},
        401: {"model": ErrorEnvelope},
        404: {"model": ErrorEnvelope},
        409: {"model": ErrorEnvelope},
    },
)


def _limits(ctx: Ctx) -> batches.IntakeLimits:
    return batches.IntakeLimits(ctx.settings.max_file_lines, ctx.settings.max_batch_errors, frozenset(ctx.model_ids))


@router.post("", response_model=BatchObject)
async def create_batch(ctx: Ctx, owner: Owner, body: CreateBatchBody):
    expiry = body.output_expires_after.model_dump() if body.output_expires_after is not None else None
    row = await ctx.run(
        batches.create_batch,
        ctx.db,
        ctx.blobs,
        _limits(ctx),
        owner,
        body.input_file_id,
        body.endpoint,
        body.completion_window,
        body.metadata,
        expiry,
    )
    if ctx.dispatcher is not None:
        ctx.dispatcher.wake()
    return json_response(batch_dict(row))


def _batch_page(ctx: Ctx, owner: str, limit: int, after: str | None) -> dict:
    return batch_page(*batches.list_batches(ctx.db, owner, limit, after))


@router.get("", response_model=BatchList)
async def list_batches(
    ctx: Ctx, owner: Owner, limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None
):
    return json_response(await ctx.run(_batch_page, ctx, owner, limit, after))


@router.get("/{batch_id}", response_model=BatchObject)
async def retrieve_batch(ctx: Ctx, owner: Owner, batch_id: str):
    return json_response(batch_dict(await ctx.run(batches.read_batch, ctx.db, owner, batch_id)))


@router.post("/{batch_id}/cancel", response_model=BatchObject)
async def cancel_batch(ctx: Ctx, owner: Owner, batch_id: str):
    row = await ctx.run(batches.cancel_batch, ctx.db, ctx.blobs, owner, batch_id)
    if ctx.dispatcher is not None:
        ctx.dispatcher.wake()
    return json_response(batch_dict(row))


@router.get("/{batch_id}/plan", response_model=BatchPlan, response_model_exclude_none=True)
async def batch_plan(ctx: Ctx, owner: Owner, batch_id: str):
    """Extension (not in OpenAI's API): the batch's predicted start and finish, predicted cached-token share and
    place in the global schedule, from the live prefix tree and the perf model calibrated on observed
    throughput. Async: it reads the dispatcher's tree on the event loop that owns it."""
    row = await ctx.run(batches.get_batch, ctx.db, owner, batch_id)
    return plan.plan_batch(ctx.planner, row)
