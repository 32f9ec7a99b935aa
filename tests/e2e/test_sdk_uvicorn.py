"""The real `openai` SDK against a real uvicorn process: the user's unmodified script works."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from tests.e2e.server import ServerProcess, free_port
from tests.helpers import chat_line, to_jsonl
from tests.webhook_receiver import Receiver, new_secret


@pytest.fixture
def server(tmp_path):
    proc = ServerProcess(tmp_path / "data", runtime="none", env={"BLENDSERVE_API_KEYS": "sk-test"}).start()
    yield proc
    proc.stop()


def test_sdk_files_and_batches_lifecycle(server, tmp_path):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(to_jsonl([chat_line(i) for i in range(5)]))

    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.bytes == path.stat().st_size
    assert client.files.retrieve(uploaded.id).filename == "requests.jsonl"
    assert uploaded.id in [f.id for f in client.files.list(purpose="batch")]

    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"run": "e2e"}
    )
    assert batch.status == "in_progress"  # no runtime here: it must not pretend to finish
    assert batch.request_counts.total == 5 and batch.metadata == {"run": "e2e"}
    assert client.batches.retrieve(batch.id).status == "in_progress"
    assert [b.id for b in client.batches.list(limit=10)] == [batch.id]

    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled")
    final = client.batches.retrieve(batch.id)
    assert final.status == "cancelled" and final.error_file_id
    lines = [json.loads(x) for x in client.files.content(final.error_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in lines) == [f"req-{i}" for i in range(5)]
    assert {x["error"]["code"] for x in lines} == {"batch_cancelled"}

    assert client.files.content(uploaded.id).content == path.read_bytes()
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).files.list()
    with pytest.raises(openai.BadRequestError) as bad:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/nope", completion_window="24h")  # type: ignore
    assert bad.value.status_code == 400 and bad.value.body["param"] == "endpoint"


# ---- OpenAI contract fidelity, with the real SDK against a real server (docs/OPENAI-COMPAT.md) -------------
ALIAS = "gpt-4o-mini"


def _contract_server(tmp_path, receiver_url: str, secret: str, **env) -> ServerProcess:
    hooks = {"sk-test": [{"url": receiver_url, "secret": secret}]}
    base = {
        "BLENDSERVE_API_KEYS": "sk-test",
        "BLENDSERVE_MODEL_ALIASES": f"{ALIAS}=simulated",
        "BLENDSERVE_WEBHOOKS": json.dumps(hooks),
        "BLENDSERVE_WEBHOOK_POLL_S": "0.05",
    }
    return ServerProcess(tmp_path / "data", runtime="simulated", env={**base, **env})


def _jsonl(tmp_path, name: str, objs: list[dict]):
    path = tmp_path / name
    path.write_bytes(to_jsonl(objs))
    return path


def _wait_sync(client, batch_id: str, timeout: float = 60.0):
    deadline = time.time() + timeout
    while (batch := client.batches.retrieve(batch_id)).status not in ("completed", "failed", "cancelled", "expired"):
        assert time.time() < deadline, batch
        time.sleep(0.1)
    return batch


def test_sdk_contract_sync(tmp_path):
    secret = new_secret()
    with Receiver() as rx:
        server = _contract_server(tmp_path, rx.url, secret)
        try:
            server.start()
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", webhook_secret=secret, max_retries=0)
            assert {m.id for m in client.models.list()} == {"simulated", ALIAS}

            lines = [chat_line(i, model=ALIAS) for i in range(3)]
            lines += [chat_line(3, model=ALIAS, temperature="hot"), chat_line(4, model=ALIAS, temperature=None)]
            file = client.files.create(file=_jsonl(tmp_path, "in.jsonl", lines).open("rb"), purpose="batch")
            raw = client.batches.with_raw_response.create(
                input_file_id=file.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                extra_body={"output_expires_after": {"anchor": "created_at", "seconds": 3600}},
            )
            assert raw.headers["x-request-id"].startswith("req_")
            created = raw.parse()
            assert created._request_id == raw.headers["x-request-id"]
            wire = json.loads(raw.text)  # unset fields are null on the wire, as the hosted API sends them
            for name in ("errors", "output_file_id", "error_file_id", "completed_at", "failed_at", "cancelled_at"):
                assert name in wire and wire[name] is None, name

            done = _wait_sync(client, created.id)
            assert done.status == "completed" and done.model == ALIAS
            assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 4, 1)
            output = client.files.retrieve(done.output_file_id)
            assert output.expires_at == output.created_at + 3600
            out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
            assert all(x["response"]["request_id"] != x["id"] for x in out)
            err = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
            assert err[0]["custom_id"] == "req-3"
            assert err[0]["response"]["body"]["error"]["code"] == "invalid_type"

            with pytest.raises(openai.ConflictError) as conflict:
                client.batches.cancel(done.id)
            assert conflict.value.status_code == 409 and "completed" in conflict.value.message

            unknown = _jsonl(tmp_path, "unknown.jsonl", [chat_line(0, model="gpt-nope")])
            streaming = _jsonl(tmp_path, "stream.jsonl", [chat_line(0, model=ALIAS, stream=True)])
            failed = []
            for path, code, param in (
                (unknown, "model_not_found", "body.model"),
                (streaming, "streaming_unsupported", "body.stream"),
            ):
                fid = client.files.create(file=path.open("rb"), purpose="batch").id
                bad = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
                assert bad.status == "failed" and bad.errors.data[0].code == code and bad.errors.data[0].param == param
                failed.append(bad.id)
            with pytest.raises(openai.BadRequestError):
                client.batches.create(
                    input_file_id=file.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                    extra_body={"output_expires_after": {"anchor": "created_at", "seconds": 10}},
                )
            empty = json.loads(client.files.with_raw_response.list(purpose="fine-tune").text)
            assert empty["data"] == [] and empty["first_id"] is None and empty["last_id"] is None

            rx.wait_for(3)
            events = {e.data.id: e.type for e in (client.webhooks.unwrap(d.body, d.headers) for d in rx.deliveries)}
            assert events == {done.id: "batch.completed", failed[0]: "batch.failed", failed[1]: "batch.failed"}
        finally:
            server.stop()


def test_sdk_contract_async(tmp_path):
    secret = new_secret()

    async def scenario(url: str) -> None:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-test", webhook_secret=secret, max_retries=0)
        path = _jsonl(tmp_path, "in.jsonl", [chat_line(i, model=ALIAS, top_p=None) for i in range(4)])
        file = await client.files.create(file=path.open("rb"), purpose="batch")
        ids = []
        for _ in range(3):
            batch = await client.batches.create(
                input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            assert batch._request_id and batch._request_id.startswith("req_")
            ids.append(batch.id)
        seen = [b.id async for b in client.batches.list(limit=1)]  # three pages of one
        assert seen == ids[::-1]
        for batch_id in ids:
            while (batch := await client.batches.retrieve(batch_id)).status != "completed":
                await asyncio.sleep(0.1)
            assert batch.request_counts.completed == 4
        with pytest.raises(openai.ConflictError):
            await client.batches.cancel(ids[0])
        with pytest.raises(openai.NotFoundError):
            await client.batches.retrieve("batch_nope")
        with pytest.raises(openai.BadRequestError) as too_short:
            await client.batches.create(
                input_file_id=file.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                extra_body={"output_expires_after": {"anchor": "created_at", "seconds": 10}},
            )
        assert too_short.value.body["param"] == "output_expires_after.seconds"
        bad = [chat_line(0, model="gpt-nope"), chat_line(1, model=ALIAS, stream=True)]
        for line, code in zip(bad, ("model_not_found", "streaming_unsupported"), strict=True):
            fid = (await client.files.create(file=_jsonl(tmp_path, "bad.jsonl", [line]).open("rb"), purpose="batch")).id
            failed = await client.batches.create(
                input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h"
            )
            assert failed.status == "failed" and failed.errors.data[0].code == code
        raw = await client.batches.with_raw_response.retrieve(ids[0])
        assert json.loads(raw.text)["failed_at"] is None and raw.headers["x-request-id"].startswith("req_")
        await client.close()

    with Receiver() as rx:
        server = _contract_server(tmp_path, rx.url, secret)
        try:
            server.start()
            asyncio.run(scenario(server.url))
            rx.wait_for(5)
            verifier = openai.OpenAI(api_key="unused", webhook_secret=secret)
            types = sorted(verifier.webhooks.unwrap(d.body, d.headers).type for d in rx.deliveries)
            assert types == ["batch.completed"] * 3 + ["batch.failed"] * 2
        finally:
            server.stop()


def test_webhook_outlives_kill9_between_finalize_and_delivery(tmp_path):
    """The receiver is down when the batch completes: the event waits in the outbox. kill -9 the server, bring
    the receiver up, restart: the event arrives with the webhook-id it had before the kill."""
    secret, port = new_secret(), free_port()
    url = f"http://127.0.0.1:{port}/hook"
    env = {"BLENDSERVE_WEBHOOK_FIRST_RETRY_S": "0.3", "BLENDSERVE_WEBHOOK_MAX_RETRY_DELAY_S": "0.5"}
    server = _contract_server(tmp_path, url, secret, **env)
    try:
        server.start()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0)
        path = _jsonl(tmp_path, "in.jsonl", [chat_line(i, model=ALIAS) for i in range(5)])
        file = client.files.create(file=path.open("rb"), purpose="batch")
        batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert _wait_sync(client, batch.id).status == "completed"
        deadline = time.time() + 30
        while not (state := _deliveries(server, batch.id)) or state[0]["attempts"] < 1:
            assert time.time() < deadline, state
            time.sleep(0.1)
        assert state[0]["status"] == "pending" and state[0]["last_error"]  # refused: nobody listens yet
        webhook_id = state[0]["id"]
        server.kill9()
        with Receiver(port=port) as rx:
            server = _contract_server(tmp_path, url, secret, **env)
            server.start()
            delivery = rx.wait_for(1)[0]
            assert delivery.headers["webhook-id"] == webhook_id
            event = openai.OpenAI(api_key="unused", webhook_secret=secret).webhooks.unwrap(
                delivery.body, delivery.headers
            )
            assert event.type == "batch.completed" and event.data.id == batch.id
            deadline = time.time() + 10
            while _deliveries(server, batch.id)[0]["status"] != "delivered":
                assert time.time() < deadline
                time.sleep(0.1)
            assert len(rx.deliveries) == 1
    finally:
        server.stop()


def _deliveries(server: ServerProcess, batch_id: str) -> list[dict]:
    resp = httpx.get(
        f"{server.url}/v1/batches/{batch_id}/webhook_deliveries", headers={"Authorization": "Bearer sk-test"}
    )
    return resp.json()["data"]
