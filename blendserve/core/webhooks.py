"""Batch webhooks like OpenAI's: an outbox row per (event, endpoint), written in the same transaction as the
terminal status change it reports, and a sender that delivers it.

Payload: {"id": "evt_...", "object": "event", "created_at", "type": "batch.completed", "data": {"id": batch}}.
Signature: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`
over "id.timestamp.body" with the endpoint's `whsec_` secret), so the openai SDK's `client.webhooks.unwrap`
and the `standardwebhooks` package verify it. Retries back off exponentially for up to 72 h; every retry
carries the same `webhook-id` (receivers dedupe on it) and a fresh timestamp and signature."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import orjson
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from blendserve.core import ids
from blendserve.store import webhook_queries as wq
from blendserve.store.db import Database
from blendserve.store.models import WebhookDelivery
from blendserve.store.statuses import BatchStatus, WebhookStatus

log = logging.getLogger("blendserve.webhooks")

EVENT_FOR_STATUS = {
    BatchStatus.COMPLETED: "batch.completed",
    BatchStatus.FAILED: "batch.failed",
    BatchStatus.CANCELLED: "batch.cancelled",
    BatchStatus.EXPIRED: "batch.expired",
}


def sync_endpoints(db: Database, endpoints: list[tuple[str, str, str]]) -> None:
    """Make the stored endpoints exactly the configured (owner, url, secret) triples."""
    with db.transaction() as s:
        wq.replace_endpoints(s, endpoints)


def enqueue(session: Session, owner: str, batch_id: str, status: str, at: int) -> int:
    """Inside the caller's transaction (the one that moves the batch to `status`): one outbox row per endpoint
    of the owner. Returns how many; non-terminal statuses and owners without endpoints enqueue nothing."""
    event_type = EVENT_FOR_STATUS.get(BatchStatus(status))
    # One delivery per URL, even if two servers starting together each stored the same endpoint.
    endpoints = list({e.url: e for e in wq.endpoints_of(session, owner)}.values()) if event_type else []
    if not endpoints:
        return 0
    event_id = "evt_" + secrets.token_hex(16)
    payload = orjson.dumps(
        {"id": event_id, "object": "event", "created_at": at, "type": event_type, "data": {"id": batch_id}}
    ).decode()
    now = ids.now_precise()
    for endpoint in endpoints:
        session.add(
            WebhookDelivery(
                id="wh_" + secrets.token_hex(16),
                event_id=event_id,
                event_type=event_type,
                batch_id=batch_id,
                owner=owner,
                url=endpoint.url,
                payload=payload,
                status=WebhookStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(endpoints)


def signed_headers(secret: str, webhook_id: str, payload: str, at: datetime) -> dict[str, str]:
    signature = Webhook(secret).sign(webhook_id, at, payload)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "BlendServe-Webhooks/1",
    }


@dataclass(frozen=True)
class RetryPolicy:
    first_delay_s: float = 5.0
    max_delay_s: float = 6 * 3600.0
    window_s: float = 72 * 3600.0  # give up once the next try would fall past this age
    timeout_s: float = 10.0
    poll_s: float = 0.2

    def delay(self, attempts: int) -> float:
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class _Claimed:
    id: str
    url: str
    payload: str
    secret: str | None


class WebhookSender:
    """Background delivery of due outbox rows. Started from the app lifespan; safe with several servers on
    one database (each attempt is claimed first); a kill -9 mid-attempt only delays that row by a claim."""

    def __init__(self, db: Database, policy: RetryPolicy, client: httpx.AsyncClient | None = None) -> None:
        self.db, self.policy = db, policy
        self._client = client or httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.stats = {"delivered": 0, "failed_attempts": 0, "gave_up": 0}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="blendserve-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end deliveries; the next poll retries
                log.exception("webhook delivery pass failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.policy.poll_s)

    async def run_once(self) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        claimed = await asyncio.to_thread(self._claim_due)
        await asyncio.gather(*(self._attempt(c) for c in claimed))
        return len(claimed)

    def _claim_due(self, limit: int = 64) -> list[_Claimed]:
        now = ids.now_precise()
        hold = now + self.policy.timeout_s + 5.0
        out = []
        with self.db.transaction() as s:
            for row in wq.due_deliveries(s, now, limit):
                if wq.claim(s, row.id, row.next_attempt_at, hold):
                    out.append(_Claimed(row.id, row.url, row.payload, wq.secret_for(s, row.owner, row.url)))
        return out

    async def _attempt(self, item: _Claimed) -> None:
        if item.secret is None:
            await asyncio.to_thread(self._record, item.id, None, "the endpoint is no longer configured", final=True)
            return
        headers = signed_headers(item.secret, item.id, item.payload, datetime.fromtimestamp(ids.now_precise(), UTC))
        try:
            resp = await self._client.post(item.url, content=item.payload.encode(), headers=headers)
            code, error = resp.status_code, None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            code, error = None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await asyncio.to_thread(self._record, item.id, code, error)

    def _record(self, delivery_id: str, status_code: int | None, error: str | None, final: bool = False) -> None:
        now = ids.now_precise()
        with self.db.transaction() as s:
            row = s.get(WebhookDelivery, delivery_id)
            if row is None or row.status != WebhookStatus.PENDING:
                return
            row.attempts += 1
            row.last_status_code, row.last_error = status_code, error
            if error is None:
                row.status, row.delivered_at = WebhookStatus.DELIVERED, now
                self.stats["delivered"] += 1
                return
            self.stats["failed_attempts"] += 1
            delay = self.policy.delay(row.attempts)
            if final or now + delay - row.created_at > self.policy.window_s:
                row.status = WebhookStatus.FAILED
                self.stats["gave_up"] += 1
                log.warning("webhook %s to %s given up after %d attempt(s): %s", row.id, row.url, row.attempts, error)
            else:
                row.next_attempt_at = now + delay


def deliveries(db: Database, owner: str, batch_id: str) -> list[WebhookDelivery]:
    with db.transaction() as s:
        return wq.for_batch(s, owner, batch_id)
