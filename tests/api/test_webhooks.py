"""Signed batch webhooks: every terminal status sends OpenAI's event, verified with the openai SDK's helper;
retries keep the webhook-id; delivery state is visible; endpoints are per API key. SQLite and Postgres."""

from __future__ import annotations

import asyncio

import openai
import pytest
from sqlalchemy import update

from blendserve.core.runtime.simulated import SimulatedRuntime
from blendserve.store.db import Database
from blendserve.store.models import Batch
from tests.api.test_dispatch import Slow, _app, _wait
from tests.helpers import chat_line, upload_batch
from tests.support import running_client
from tests.webhook_receiver import Receiver, new_secret

pytestmark = pytest.mark.anyio
FAST = {"webhook_poll_s": 0.05, "webhook_first_retry_s": 0.1}


def _unwrap(delivery, secret: str):
    """Verify and parse exactly as a user's receiver would, with the openai SDK."""
    client = openai.OpenAI(api_key="unused", webhook_secret=secret)
    return client.webhooks.unwrap(delivery.body, delivery.headers)


async def _deliveries(client, batch_id, want_status="delivered", timeout=20.0):
    for _ in range(int(timeout / 0.05)):
        data = (await client.get(f"/v1/batches/{batch_id}/webhook_deliveries")).json()["data"]
        if data and all(d["status"] == want_status for d in data):
            return data
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries never reached {want_status}: {data}")


async def test_completed_failed_cancelled_expired_events(db_url, tmp_path):
    secret = new_secret()
    with Receiver() as rx:
        hooks = {"*": [{"url": rx.url, "secret": secret}]}
        app = _app(db_url, tmp_path, Slow(), webhooks=hooks, **FAST)  # slow: cancel and expiry come first
        async with running_client(app) as c:
            done = await _wait(c, (await upload_batch(c, [chat_line(i) for i in range(3)])).json()["id"])
            failed = (await upload_batch(c, [chat_line(0, model="not-served")])).json()
            assert failed["status"] == "failed" and failed["errors"]["data"][0]["code"] == "model_not_found"
            to_cancel = (await upload_batch(c, [chat_line(i) for i in range(2)])).json()
            await c.post(f"/v1/batches/{to_cancel['id']}/cancel")
            to_expire = (await upload_batch(c, [chat_line(i) for i in range(2)])).json()
            db = Database(db_url)
            with db.transaction() as s:
                s.execute(update(Batch).where(Batch.id == to_expire["id"]).values(expires_at=1))
            db.dispose()
            finals = {b: (await _wait(c, b))["status"] for b in (to_cancel["id"], to_expire["id"])}
            await rx.arrivals(4)
            seen = {}
            for delivery in rx.deliveries:
                event = _unwrap(delivery, secret)
                assert event.object == "event" and event.id.startswith("evt_") and event.created_at > 0
                seen[event.data.id] = event.type
                assert delivery.headers["webhook-signature"].startswith("v1,")
            assert seen[done["id"]] == "batch.completed" and seen[failed["id"]] == "batch.failed"
            assert seen[to_cancel["id"]] == f"batch.{finals[to_cancel['id']]}"
            assert seen[to_expire["id"]] == "batch.expired"
            state = await _deliveries(c, done["id"])
            assert (
                state[0]["attempts"] == 1
                and state[0]["last_status_code"] == 200
                and state[0]["type"] == ("batch.completed")
            )
            assert state[0]["id"] in {d.headers["webhook-id"] for d in rx.deliveries}
    with pytest.raises(openai.InvalidWebhookSignatureError):
        _unwrap(rx.deliveries[0], new_secret())  # a receiver with another secret rejects it


async def test_retries_keep_the_webhook_id_then_deliver(db_url, tmp_path):
    secret = new_secret()
    with Receiver(statuses=[500, 503]) as rx:
        hooks = {"*": [{"url": rx.url, "secret": secret}]}
        async with running_client(_app(db_url, tmp_path, SimulatedRuntime(), webhooks=hooks, **FAST)) as c:
            batch = await _wait(c, (await upload_batch(c, [chat_line(0)])).json()["id"])
            state = await _deliveries(c, batch["id"])
            await rx.arrivals(3)
    assert len({d.headers["webhook-id"] for d in rx.deliveries}) == 1  # the same id on every try
    assert rx.deliveries[1].arrived - rx.deliveries[0].arrived >= 0.09  # backed off
    assert rx.deliveries[2].arrived - rx.deliveries[1].arrived >= 0.19  # exponentially
    assert state[0]["attempts"] == 3 and state[0]["status"] == "delivered"
    assert _unwrap(rx.deliveries[2], secret).data.id == batch["id"]


async def test_gives_up_after_the_retry_window(db_url, tmp_path):
    with Receiver(statuses=[500] * 100) as rx:
        hooks = {"*": [{"url": rx.url, "secret": new_secret()}]}
        app = _app(db_url, tmp_path, SimulatedRuntime(), webhooks=hooks, webhook_retry_window_s=0.5, **FAST)
        async with running_client(app) as c:
            batch = await _wait(c, (await upload_batch(c, [chat_line(0)])).json()["id"])
            state = await _deliveries(c, batch["id"], want_status="failed")
    assert state[0]["attempts"] >= 2 and state[0]["last_error"] == "HTTP 500" and state[0]["next_attempt_at"] is None


async def test_endpoints_are_per_api_key(db_url, tmp_path):
    secret = new_secret()
    a, b = {"Authorization": "Bearer sk-a"}, {"Authorization": "Bearer sk-b"}
    with Receiver() as rx:
        hooks = {"sk-a": [{"url": rx.url, "secret": secret}]}
        app = _app(db_url, tmp_path, SimulatedRuntime(), webhooks=hooks, api_keys="sk-a,sk-b", **FAST)
        async with running_client(app) as c:
            mine = (await upload_batch(c, [chat_line(0)], headers=a)).json()
            theirs = (await upload_batch(c, [chat_line(0)], headers=b)).json()
            for batch_id, headers in ((mine["id"], a), (theirs["id"], b)):
                for _ in range(400):
                    got = (await c.get(f"/v1/batches/{batch_id}", headers=headers)).json()
                    if got["status"] == "completed":
                        break
                    await asyncio.sleep(0.05)
            await rx.arrivals(1)
            await asyncio.sleep(0.5)  # a second (wrong) delivery would have arrived by now
            assert [_unwrap(d, secret).data.id for d in rx.deliveries] == [mine["id"]]
            none = (await c.get(f"/v1/batches/{theirs['id']}/webhook_deliveries", headers=b)).json()
            assert none["data"] == []
            other = await c.get(f"/v1/batches/{mine['id']}/webhook_deliveries", headers=b)
            assert other.status_code == 404


def test_bad_secret_is_refused_at_startup():
    from pydantic import ValidationError

    from blendserve.config import Settings

    for secret in ("plain-text", "whsec_not*base64", "whsec_c2hvcnQ="):
        with pytest.raises(ValidationError):
            Settings(webhooks={"*": [{"url": "http://127.0.0.1:9/x", "secret": secret}]})


def test_endpoint_sync_is_idempotent_and_events_go_once_per_url(db_url):
    from sqlalchemy import func, select

    from blendserve.core import webhooks
    from blendserve.store.models import WebhookDelivery, WebhookEndpoint

    db = Database(db_url)
    try:
        a, b = ("o", "http://127.0.0.1:9/a", new_secret()), ("o", "http://127.0.0.1:9/b", new_secret())
        webhooks.sync_endpoints(db, [a, b])
        webhooks.sync_endpoints(db, [a, b])  # a second server starting with the same config
        with db.transaction() as s:
            assert s.scalar(select(func.count()).select_from(WebhookEndpoint)) == 2
            s.add(WebhookEndpoint(owner="o", url=a[1], secret=a[2]))  # a duplicate from a race
        with db.transaction() as s:
            assert webhooks.enqueue(s, "o", "batch_x", "completed", 1) == 2
            assert webhooks.enqueue(s, "o", "batch_x", "in_progress", 1) == 0
            assert webhooks.enqueue(s, "nobody", "batch_x", "completed", 1) == 0
        webhooks.sync_endpoints(db, [b])
        with db.transaction() as s:
            assert [e.url for e in s.scalars(select(WebhookEndpoint))] == [b[1]]
            assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 2
    finally:
        db.dispose()
