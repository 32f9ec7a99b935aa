"""Operations: Prometheus metrics, request ids, JSON logs, the batch plan extension, the dashboard's state."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blendserve.core.dispatch.config import DispatchConfig
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.runtime.simulated import SimulatedRuntime
from blendserve.logs import JsonFormatter, RequestIdFilter
from tests.conftest import make_settings, running_client
from tests.helpers import chat_line, upload_batch

pytestmark = pytest.mark.anyio
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def _app(db_url, tmp_path, runtime, **overrides):
    from blendserve.api.app import create_app

    settings = make_settings(db_url, tmp_path / "d", dispatcher=True, **overrides)
    config = DispatchConfig.from_settings(settings)
    return create_app(settings, lambda db, blobs: Dispatcher(db, blobs, config, runtime))


async def _wait(client, batch_id, headers=None, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = (await client.get(f"/v1/batches/{batch_id}", headers=headers)).json()
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch stuck: {batch}")


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_what_ran(db_url, tmp_path):
    async with running_client(_app(db_url, tmp_path, SimulatedRuntime(model_name="sim"))) as c:
        shared = "You are a terse assistant. " * 10
        batch = (await upload_batch(c, [chat_line(i, model="sim", prompt=shared + f"q{i}") for i in range(12)])).json()
        done = await _wait(c, batch["id"])
        resp = await c.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    got = _samples(resp.text)
    assert got[("blendserve_batches", (("status", "completed"),))] == 1
    assert got[("blendserve_lines", (("status", "succeeded"),))] == 12
    assert got[("blendserve_lines_processed_total", (("outcome", "succeeded"),))] == 12
    usage = done["usage"]
    assert got[("blendserve_prompt_tokens_total", ())] == usage["input_tokens"]
    assert got[("blendserve_cached_tokens_total", ())] == usage["input_tokens_details"]["cached_tokens"] > 0
    assert got[("blendserve_completion_tokens_total", ())] == usage["output_tokens"]
    assert got[("blendserve_line_duration_seconds_count", (("outcome", "succeeded"), ("worker", "0")))] == 12
    assert got[("blendserve_dispatch_wave_duration_seconds_count", ())] >= 1
    assert got[("blendserve_tree_requests", ())] == 0
    assert got[("blendserve_pacing_cap_lines", ())] == float("inf")  # nothing pending: nothing to pace against
    assert got[("blendserve_inflight_lines", (("side", "L"), ("worker", "0")))] == 0
    assert got[("blendserve_database_up", ())] == 1
    assert got[("blendserve_runtime_up", ())] == 1
    assert got[("blendserve_runtime_breaker_state", (("state", "closed"),))] == 1
    assert got[("blendserve_runtime_breaker_state", (("state", "open"),))] == 0
    route = (("method", "GET"), ("route", "/v1/batches/{batch_id}"), ("status", "200"))
    assert got[("blendserve_http_request_duration_seconds_count", route)] >= 1


async def test_webhook_deliveries_are_counted(db_url, tmp_path):
    app = _app(db_url, tmp_path, SimulatedRuntime(model_name="sim"))
    async with running_client(app) as c:
        stats = app.state.ctx.metrics.state.webhook_stats
        assert stats is not None  # the app's webhook sender's own counts
        stats["delivered"] += 1
        stats["failed_attempts"] += 2
        got = _samples((await c.get("/metrics")).text)
    assert got[("blendserve_webhook_deliveries_total", (("outcome", "failed"),))] == 2
    assert got[("blendserve_webhook_deliveries_total", (("outcome", "delivered"),))] == 1
    assert got[("blendserve_webhook_deliveries_total", (("outcome", "gave_up"),))] == 0


async def test_request_id_header_and_json_log_line(client):
    first, second = await client.get("/v1/models"), await client.get("/v1/models")
    assert first.headers["x-request-id"].startswith("req_")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    echoed = await client.get("/v1/models", headers={"x-request-id": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    unsafe = await client.get("/v1/models", headers={"x-request-id": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"].startswith("req_")

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("blendserve.api")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        missing = await client.get("/v1/batches/batch_nope", headers={"x-request-id": "trace-43"})
        logging.getLogger("blendserve.api").info("outside any request")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert missing.status_code == 404
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[-1]["request_id"] == "-" and lines[-1]["message"] == "outside any request"
    assert {"ts", "level", "logger", "message", "request_id"} <= set(lines[-1])


async def test_request_id_on_log_lines_inside_a_request(db_url, tmp_path):
    from blendserve.api.app import create_app

    app = create_app(make_settings(db_url, tmp_path / "d"))

    @app.get("/_test/log")
    def log_something() -> dict:
        logging.getLogger("blendserve.api").warning("inside a request")
        return {}

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logging.getLogger("blendserve.api").addHandler(handler)
    try:
        async with running_client(app) as c:
            resp = await c.get("/_test/log", headers={"x-request-id": "trace-7"})
    finally:
        logging.getLogger("blendserve.api").removeHandler(handler)
    line = json.loads(buf.getvalue().splitlines()[-1])
    assert resp.headers["x-request-id"] == "trace-7"
    assert line["request_id"] == "trace-7" and line["message"] == "inside a request"


async def test_plan_predicts_and_then_reports(db_url, tmp_path):
    runtime = SimulatedRuntime(model_name="sim", time_scale=20.0)
    async with running_client(_app(db_url, tmp_path, runtime, max_inflight=2, api_keys="key-a,key-b")) as c:
        first = (
            await upload_batch(c, [chat_line(i, model="sim", prompt="a" * 300 + str(i)) for i in range(20)], headers=A)
        ).json()
        second = (
            await upload_batch(c, [chat_line(i, model="sim", prompt="b" * 50 + str(i)) for i in range(8)], headers=A)
        ).json()
        plan = None
        for _ in range(200):  # until the dispatcher has loaded both batches into the tree
            plan = (await c.get(f"/v1/batches/{second['id']}/plan", headers=A)).json()
            if plan.get("schedule", {}).get("batches_queued") == 2:
                break
            await asyncio.sleep(0.05)
        assert plan is not None and plan["object"] == "batch.plan" and plan["schedule"]["batches_queued"] == 2
        assert plan["predicted_finish_at"] > plan["computed_at"]
        assert plan["schedule"]["position"] in (1, 2)
        assert plan["lines"]["total"] == 8
        assert 0.0 <= plan["predicted_cached_tokens_share"] <= 1.0
        assert (await c.get(f"/v1/batches/{second['id']}/plan", headers=B)).status_code == 404
        done = await _wait(c, second["id"], headers=A)
        await _wait(c, first["id"], headers=A)
        after = (await c.get(f"/v1/batches/{second['id']}/plan", headers=A)).json()
    assert after["status"] == "completed" and after["finished_at"] == done["completed_at"]
    assert after.get("predicted_finish_at") is None


async def test_plan_cached_share_sees_shared_prefixes(db_url, tmp_path):
    runtime = SimulatedRuntime(model_name="sim", time_scale=50.0)
    async with running_client(_app(db_url, tmp_path, runtime, max_inflight=1)) as c:
        shared = (
            await upload_batch(c, [chat_line(i, model="sim", prompt="S" * 400 + str(i)) for i in range(10)])
        ).json()
        unique = (await upload_batch(c, [chat_line(i, model="sim", prompt=f"{i}" * 400) for i in range(10)])).json()
        plans = {}
        for _ in range(200):
            plans = {b["id"]: (await c.get(f"/v1/batches/{b['id']}/plan")).json() for b in (shared, unique)}
            if all(p.get("lines", {}).get("pending", 0) >= 8 for p in plans.values()):
                break
            await asyncio.sleep(0.05)
        assert plans[shared["id"]]["predicted_cached_tokens_share"] > 0.5
        assert (
            plans[unique["id"]]["predicted_cached_tokens_share"] < plans[shared["id"]]["predicted_cached_tokens_share"]
        )
        await c.post(f"/v1/batches/{shared['id']}/cancel")
        await c.post(f"/v1/batches/{unique['id']}/cancel")


async def test_dashboard_state_shows_only_the_callers_batches(db_url, tmp_path):
    async with running_client(_app(db_url, tmp_path, SimulatedRuntime(model_name="sim"), api_keys="key-a,key-b")) as c:
        mine = (await upload_batch(c, [chat_line(0, model="sim")], headers=A)).json()
        theirs = (await upload_batch(c, [chat_line(0, model="sim")], headers=B)).json()
        await _wait(c, mine["id"], headers=A)
        state = (await c.get("/dashboard/state", headers=A)).json()
        page = await c.get("/dashboard")
        root = await c.get("/", follow_redirects=False)
    ids = [b["id"] for b in state["batches"]]
    assert mine["id"] in ids and theirs["id"] not in ids
    assert state["server"]["workers"][0]["window"] > 0
    assert page.status_code == 200 and 'data-keys-required="true"' in page.text
    assert root.status_code in (302, 307) and root.headers["location"] == "/dashboard"
