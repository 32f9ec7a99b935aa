"""Queries over WebhookEndpoint and WebhookDelivery (the outbox). Functions take the caller's Session."""

from __future__ import annotations

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from blendserve.store.models import WebhookDelivery, WebhookEndpoint
from blendserve.store.statuses import WebhookStatus


def replace_endpoints(session: Session, endpoints: list[tuple[str, str, str]]) -> None:
    """Make the table hold these (owner, url, secret) rows, touching only what differs (servers sharing one
    database all sync the same configuration at start)."""
    wanted, have, stale = set(endpoints), set(), []
    for e in session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)):
        key = (e.owner, e.url, e.secret)
        if key in wanted and key not in have:
            have.add(key)
        else:
            stale.append(e.id)  # no longer configured, or a duplicate of a row kept
    if stale:
        session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id.in_(stale)))
    for owner, url, secret in sorted(wanted - have):
        session.add(WebhookEndpoint(owner=owner, url=url, secret=secret))


def endpoints_of(session: Session, owner: str) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.owner == owner)))


def secret_for(session: Session, owner: str, url: str) -> str | None:
    stmt = select(WebhookEndpoint.secret).where(WebhookEndpoint.owner == owner, WebhookEndpoint.url == url)
    return session.scalars(stmt.limit(1)).first()


def due_deliveries(session: Session, now: float, limit: int) -> list[WebhookDelivery]:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == WebhookStatus.PENDING, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def claim(session: Session, delivery_id: str, seen_next_attempt: float, hold_until: float) -> bool:
    """Take a due delivery for one attempt (compare-and-set on next_attempt_at): with several servers on one
    database exactly one of them sends it; if the claimer dies, the row comes due again at hold_until."""
    stmt = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == WebhookStatus.PENDING,
            WebhookDelivery.next_attempt_at == seen_next_attempt,
        )
        .values(next_attempt_at=hold_until)
    )
    result: CursorResult = session.execute(stmt)  # type: ignore[assignment]  # an UPDATE gives a cursor result
    return (result.rowcount or 0) == 1


def for_batch(session: Session, owner: str, batch_id: str) -> list[WebhookDelivery]:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.owner == owner, WebhookDelivery.batch_id == batch_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    return list(session.scalars(stmt))
