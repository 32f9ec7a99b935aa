"""Batches run to completion through the dispatcher (simulated and scripted runtimes), on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import update

from blendserve.core.dispatch.config import DispatchConfig
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.runtime.base import GenerateRequest, GenerateResult, RuntimeFailure
from blendserve.core.runtime.simulated import SimulatedRuntime
from blendserve.store.db import Database
from blendserve.store.models import Batch
from tests.helpers import chat_line, upload_batch
from tests.support import make_settings, running_client

pytestmark = pytest.mark.anyio


def _app(db_url, tmp_path, runtime, **overrides):
    from blendserve.api.app import create_app

    # The lines here name "simulated" (chat) and "m" (completions, embeddings): aliases of the served model.
    aliases = {name: runtime.info.name for name in ("simulated", "m") if name != runtime.info.name}
    overrides.setdefault("model_aliases", aliases)
    settings = make_settings(db_url, tmp_path / "d", dispatcher=True, retry_backoff_s=0.01, **overrides)
    config = DispatchConfig.from_settings(settings)
    return create_app(settings, lambda db, blobs: Dispatcher(db, blobs, config, runtime))


async def _wait(client, batch_id, statuses=("completed", "failed", "cancelled", "expired"), timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        batch = (await client.get(f"/v1/batches/{batch_id}")).json()
        if batch["status"] in statuses:
            return batch
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch stuck in {batch['status']}: {batch}")


async def _until_some_done(client, batch_id, timeout=10.0):
    """Poll until at least one line of the batch has finished (the batch is mid-flight)."""
    for _ in range(int(timeout / 0.02)):
        batch = (await client.get(f"/v1/batches/{batch_id}")).json()
        if batch["request_counts"]["completed"] > 0:
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"no line finished: {batch}")


async def _lines(client, file_id):
    if not file_id:
        return []
    return [json.loads(x) for x in (await client.get(f"/v1/files/{file_id}/content")).text.splitlines()]


async def test_batches_complete_with_outputs(db_url, tmp_path):
    runtime = SimulatedRuntime(model_name="sim-model")
    async with running_client(_app(db_url, tmp_path, runtime)) as c:
        shared = "You are a terse assistant. " * 20
        objs = [chat_line(i, prompt=shared + f"q{i}") for i in range(30)]
        objs.append(
            {
                "custom_id": "bad",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "simulated", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
            }
        )
        b1 = (await upload_batch(c, objs)).json()
        b2 = (
            await upload_batch(
                c,
                [
                    {
                        "custom_id": f"c{i}",
                        "method": "POST",
                        "url": "/v1/completions",
                        "body": {"model": "m", "prompt": f"Say {i}", "max_tokens": 5},
                    }
                    for i in range(10)
                ],
                endpoint="/v1/completions",
            )
        ).json()
        done1, done2 = await _wait(c, b1["id"]), await _wait(c, b2["id"])
        assert done1["status"] == "completed" and done2["status"] == "completed"
        assert done1["request_counts"] == {"total": 31, "completed": 30, "failed": 1}
        out, err = await _lines(c, done1["output_file_id"]), await _lines(c, done1["error_file_id"])
        assert sorted(x["custom_id"] for x in out) == sorted(f"req-{i}" for i in range(30))
        assert [x["custom_id"] for x in err] == ["bad"]
        assert err[0]["response"]["status_code"] == 400 and err[0]["response"]["body"]["error"]["param"] == "tools"
        body = out[0]["response"]["body"]
        assert out[0]["response"]["status_code"] == 200 and out[0]["id"].startswith("batch_req_")
        assert body["object"] == "chat.completion" and body["model"] == "sim-model"
        assert body["system_fingerprint"] == "blendserve-simulated"  # simulated outputs say so
        assert body["choices"][0]["message"]["role"] == "assistant"
        usage = done1["usage"]
        assert usage["input_tokens"] == sum(x["response"]["body"]["usage"]["prompt_tokens"] for x in out)
        assert usage["input_tokens_details"]["cached_tokens"] > 0  # the shared system prompt was reused
        completions = await _lines(c, done2["output_file_id"])
        assert {x["response"]["body"]["object"] for x in completions} == {"text_completion"}
        assert all(x["response"]["body"]["usage"]["completion_tokens"] <= 5 for x in completions)


class Flaky(SimulatedRuntime):
    """Fails the first attempt of every request; 'doomed' prompts always fail."""

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if request.rid.endswith("-1") or b"doomed" in bytes(list(request.input_ids)):
            raise RuntimeFailure("engine hiccup")
        return await super().generate(request)


async def test_runtime_errors_are_retried_then_reported(db_url, tmp_path):
    async with running_client(_app(db_url, tmp_path, Flaky(), max_attempts=3)) as c:
        objs = [chat_line(i) for i in range(5)] + [chat_line(99, prompt="doomed")]
        done = await _wait(c, (await upload_batch(c, objs)).json()["id"])
        assert done["status"] == "completed"
        assert done["request_counts"] == {"total": 6, "completed": 5, "failed": 1}
        err = await _lines(c, done["error_file_id"])
        assert err[0]["custom_id"] == "req-99" and err[0]["response"]["status_code"] == 500
        assert "3 attempt" in err[0]["response"]["body"]["error"]["message"]


class Slow(SimulatedRuntime):
    async def generate(self, request: GenerateRequest) -> GenerateResult:
        await asyncio.sleep(0.3)
        return await super().generate(request)


async def test_cancel_keeps_finished_results_and_reports_the_rest(db_url, tmp_path):
    runtime = Slow()
    runtime.info.max_concurrency = 4
    async with running_client(_app(db_url, tmp_path, runtime)) as c:
        batch = (await upload_batch(c, [chat_line(i) for i in range(40)])).json()
        await _until_some_done(c, batch["id"])
        cancelling = (await c.post(f"/v1/batches/{batch['id']}/cancel")).json()
        assert cancelling["status"] in ("cancelling", "cancelled")
        done = await _wait(c, batch["id"], timeout=10)
        assert done["status"] == "cancelled"
        out, err = await _lines(c, done.get("output_file_id")), await _lines(c, done.get("error_file_id"))
        assert 0 < len(out) < 40
        assert sorted([x["custom_id"] for x in out + err]) == sorted(f"req-{i}" for i in range(40))
        assert {x["error"]["code"] for x in err} == {"batch_cancelled"}


async def test_expired_batch(db_url, tmp_path):
    runtime = Slow()
    runtime.info.max_concurrency = 2
    async with running_client(_app(db_url, tmp_path, runtime)) as c:
        batch = (await upload_batch(c, [chat_line(i) for i in range(20)])).json()
        await _until_some_done(c, batch["id"])
        db = Database(db_url)
        with db.transaction() as s:
            s.execute(update(Batch).where(Batch.id == batch["id"]).values(expires_at=1))
        db.dispose()
        done = await _wait(c, batch["id"], timeout=10)
        assert done["status"] == "expired" and done["expired_at"]
        out, err = await _lines(c, done.get("output_file_id")), await _lines(c, done.get("error_file_id"))
        assert sorted([x["custom_id"] for x in out + err]) == sorted(f"req-{i}" for i in range(20))
        assert err and {x["error"]["code"] for x in err} == {"batch_expired"}


async def test_one_dispatcher_per_database(db_url, tmp_path):
    from blendserve.store import dispatch_queries as ds

    db = Database(db_url)
    assert ds.acquire_lease(db, "t", "a", 30, now=1000.0)
    assert not ds.acquire_lease(db, "t", "b", 30, now=1010.0)
    assert ds.acquire_lease(db, "t", "a", 30, now=1020.0)  # renew: now held until 1050
    assert not ds.acquire_lease(db, "t", "b", 30, now=1049.0)
    assert ds.acquire_lease(db, "t", "b", 30, now=1051.0)  # lapsed: taken over
    assert not ds.acquire_lease(db, "t", "a", 30, now=1052.0)
    ds.release_lease(db, "t", "b")
    assert ds.acquire_lease(db, "t", "a", 30, now=1053.0)
    db.dispose()


async def test_embeddings_batch(db_url, tmp_path):
    import base64
    import struct

    async with running_client(_app(db_url, tmp_path, SimulatedRuntime(model_name="emb"))) as c:
        objs = [
            {"custom_id": "e0", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "hi"}},
            {
                "custom_id": "e1",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "m", "input": ["a", [5, 6, 7]], "encoding_format": "base64"},
            },
            {
                "custom_id": "e2",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "m", "input": "x", "dimensions": 8},
            },
        ]
        done = await _wait(c, (await upload_batch(c, objs, endpoint="/v1/embeddings")).json()["id"])
        assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
        out = {x["custom_id"]: x["response"]["body"] for x in await _lines(c, done["output_file_id"])}
        assert out["e0"]["object"] == "list" and out["e0"]["data"][0]["object"] == "embedding"
        vec = out["e0"]["data"][0]["embedding"]
        assert len(vec) == 64 and abs(sum(v * v for v in vec) - 1) < 1e-6
        packed = out["e1"]["data"][1]["embedding"]
        assert len(struct.unpack("<64f", base64.b64decode(packed))) == 64
        assert out["e1"]["usage"]["prompt_tokens"] == 1 + 3
        err = await _lines(c, done["error_file_id"])
        assert err[0]["response"]["body"]["error"]["param"] == "dimensions"


class Hanging(SimulatedRuntime):
    """Never finishes a request on its own; records what it was asked to abort."""

    def __init__(self) -> None:
        super().__init__()
        self.started: set[str] = set()
        self.aborted: set[str] = set()

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        self.started.add(request.rid)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def abort(self, rids) -> None:
        self.aborted.update(rids)


async def test_cancel_aborts_lines_in_flight_on_the_runtime(db_url, tmp_path):
    runtime = Hanging()
    runtime.info.max_concurrency = 3
    async with running_client(_app(db_url, tmp_path, runtime)) as c:
        batch = (await upload_batch(c, [chat_line(i) for i in range(10)])).json()
        for _ in range(500):
            if len(runtime.started) == 3:
                break
            await asyncio.sleep(0.01)
        assert len(runtime.started) == 3
        assert (await c.post(f"/v1/batches/{batch['id']}/cancel")).json()["status"] in ("cancelling", "cancelled")
        done = await _wait(c, batch["id"], timeout=10)
        assert done["status"] == "cancelled" and done["request_counts"]["completed"] == 0
        err = await _lines(c, done["error_file_id"])
        assert len(err) == 10 and {x["error"]["code"] for x in err} == {"batch_cancelled"}
        for _ in range(500):
            if runtime.aborted == runtime.started:
                break
            await asyncio.sleep(0.01)
        assert runtime.aborted == runtime.started  # every line that was running was aborted, by its attempt's rid


class Hangs(SimulatedRuntime):
    """'stuck' prompts never answer; every line's deadline is 0.3 s."""

    def deadline_s(self, request: GenerateRequest) -> float:
        return 0.3

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if b"stuck" in bytes(list(request.input_ids)):
            await asyncio.sleep(3600)
        return await super().generate(request)


async def test_a_line_that_times_out_ends_with_request_timeout(db_url, tmp_path):
    app = _app(db_url, tmp_path, Hangs(), max_attempts=2)
    async with running_client(app) as c:
        objs = [chat_line(i) for i in range(3)] + [chat_line(9, prompt="stuck")]
        done = await _wait(c, (await upload_batch(c, objs)).json()["id"])
        assert done["status"] == "completed" and done["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
        err = await _lines(c, done["error_file_id"])
    assert err[0]["custom_id"] == "req-9" and err[0]["response"] is None
    assert err[0]["error"]["code"] == "request_timeout" and err[0]["error"]["message"]
