"""Webhook delivery state for a batch: status, attempts, last error (the outbox rows, read-only)."""

from __future__ import annotations

from fastapi import APIRouter

from blendserve.api.deps import Ctx, Owner
from blendserve.api.schemas import ErrorEnvelope, WebhookDeliveryList, WebhookDeliveryObject
from blendserve.core import batches, webhooks
from blendserve.store.statuses import WebhookStatus

router = APIRouter(tags=["webhooks"], responses={401: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}})


@router.get("/v1/batches/{batch_id}/webhook_deliveries", response_model=WebhookDeliveryList)
def list_deliveries(ctx: Ctx, owner: Owner, batch_id: str):
    batches.get_batch(ctx.db, owner, batch_id)  # 404 for another key's batch
    data = [
        WebhookDeliveryObject(
            id=d.id,
            event_id=d.event_id,
            type=d.event_type,
            url=d.url,
            status=d.status,  # type: ignore[arg-type]
            attempts=d.attempts,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            next_attempt_at=d.next_attempt_at if d.status == WebhookStatus.PENDING else None,
        )
        for d in webhooks.deliveries(ctx.db, owner, batch_id)
    ]
    return WebhookDeliveryList(data=data)
