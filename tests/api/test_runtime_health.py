"""Runtime outages and hangs through the real dispatcher (in-process app, SQLite and Postgres): an outage mid-batch
pauses dispatch without spending attempts and fails no line; a line that never gets an answer ends with
`request_timeout` after its retries; /health says the breaker's state."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select

from blendserve.core.dispatch.config import DispatchConfig
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.store.db import Database
from blendserve.store.models import BatchRequest
from tests.fakes.outage_runtime import OutageRuntime
from tests.helpers import chat_line, upload_batch
from tests.support import make_settings, running_client

pytestmark = pytest.mark.anyio
N = 120


def _app(db_url, tmp_path, runtime, **overrides):
    from blendserve.api.app import create_app

    base = dict(dispatcher=True, retry_backoff_s=0.01, probe_interval_s=0.1, max_probe_interval_s=0.4)
    settings = make_settings(db_url, tmp_path / "d", **{**base, **overrides})
    config = DispatchConfig.from_settings(settings)
    return create_app(settings, lambda db, blobs: Dispatcher(db, blobs, config, runtime))


async def _batch(client, batch_id):
    return (await client.get(f"/v1/batches/{batch_id}")).json()


async def _until(predicate, timeout=30.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await predicate():
            return value
        await asyncio.sleep(every)
    raise AssertionError("condition not reached in time")


def _attempt_histogram(db_url) -> dict[int, int]:
    db = Database(db_url)
    try:
        with db.transaction() as s:
            rows = s.execute(select(BatchRequest.attempts, func.count()).group_by(BatchRequest.attempts)).all()
        return {attempts: n for attempts, n in rows}
    finally:
        db.dispose()


@pytest.mark.parametrize("with_health_check", [True, False], ids=["probe", "trial-lines"])
async def test_outage_mid_batch_fails_no_line_and_spends_no_attempts(db_url, tmp_path, with_health_check):
    runtime = OutageRuntime(per_request_s=0.02, with_health_check=with_health_check, max_concurrency=8)
    async with running_client(_app(db_url, tmp_path, runtime)) as c:
        batch = (await upload_batch(c, [chat_line(i) for i in range(N)])).json()
        await _until(lambda: _progress(c, batch["id"], at_least=N // 4))
        runtime.go_down()
        health = await _until(lambda: _breaker(c, "open"))
        assert health["down_for_s"] is not None and "outage" in health["last_error"]
        await asyncio.sleep(3.0)  # the outage: with the breaker open, dispatch must pause (checked below)
        calls_while_down = runtime.generate_calls_while_down
        # a wave before the breaker opened, then trial lines only (one per probe, without a health check)
        trials = 0 if with_health_check else int(3.0 / 0.1)
        assert calls_while_down <= 8 + 3 + trials, calls_while_down
        runtime.come_up()
        recovered = time.monotonic()
        done = await _until(lambda: _finished(c, batch["id"]))
        print(f"finished {time.monotonic() - recovered:.2f} s after recovery")
        assert done["request_counts"] == {"total": N, "completed": N, "failed": 0}
        assert (await _breaker(c, "closed"))["outages"] == 1
    spent = _attempt_histogram(db_url)
    # only failures before the breaker opened (threshold - 1 = 2) cost an attempt
    assert sum(n for attempts, n in spent.items() if attempts > 1) <= 2, spent


async def test_runtime_down_at_start_then_down_before_a_batch_fails_nothing(db_url, tmp_path):
    runtime = OutageRuntime(max_concurrency=8)
    runtime.go_down()
    async with running_client(_app(db_url, tmp_path, runtime)) as c:
        first = (await upload_batch(c, [chat_line(i) for i in range(10)])).json()
        # the server serves; dispatch waits for ready, and the failed start-up probe says why
        health = await _until(lambda: _breaker(c, "starting", with_error=True))
        assert "outage" in health["last_error"]
        runtime.come_up()
        assert (await _until(lambda: _finished(c, first["id"])))["request_counts"]["failed"] == 0
        runtime.go_down()  # the tokenizer refuses now: the loader stalls, which opens the breaker
        second = (await upload_batch(c, [chat_line(i) for i in range(10)])).json()
        health = await _until(lambda: _breaker(c, "open"))
        assert "tokenizer" in health["last_error"]
        runtime.come_up()
        done = await _until(lambda: _finished(c, second["id"]))
        assert done["request_counts"] == {"total": 10, "completed": 10, "failed": 0}
    assert set(_attempt_histogram(db_url)) == {1}


async def test_line_that_never_answers_fails_with_request_timeout(db_url, tmp_path):
    runtime = OutageRuntime(
        per_request_s=0.01, hang_marker=b"forever", max_concurrency=8, deadline_floor_s=0.3, timeout_s=5.0
    )
    app = _app(db_url, tmp_path, runtime, max_attempts=2)
    async with running_client(app) as c:
        warmup = (await upload_batch(c, [chat_line(i) for i in range(20)])).json()
        await _until(lambda: _finished(c, warmup["id"]))  # the rates are measured now
        objs = [chat_line(i) for i in range(10)] + [chat_line(99, prompt="wait forever")]
        started = time.monotonic()
        batch = (await upload_batch(c, objs)).json()
        done = await _until(lambda: _finished(c, batch["id"]), timeout=20)
        elapsed = time.monotonic() - started
        assert done["request_counts"] == {"total": 11, "completed": 10, "failed": 1}
        err = (await c.get(f"/v1/files/{done['error_file_id']}/content")).text.splitlines()
        assert len(err) == 1 and '"code":"request_timeout"' in err[0].replace(" ", "")
        assert "2 attempt" in err[0]
        assert elapsed < 2 * 5.0, elapsed  # the measured deadline, well under the 5 s ceiling, ended each try
        assert (await _breaker(c, "closed"))["state"] == "closed"  # one slow line is not an outage


async def _progress(client, batch_id, at_least):
    return (await _batch(client, batch_id))["request_counts"]["completed"] >= at_least


async def _finished(client, batch_id):
    batch = await _batch(client, batch_id)
    return batch if batch["status"] in ("completed", "failed", "cancelled", "expired") else None


async def _breaker(client, state, with_error=False):
    runtime = (await client.get("/health")).json()["dispatcher"]["runtime"]
    wanted = runtime["state"] == state and (runtime["last_error"] is not None or not with_error)
    return runtime if wanted else None
