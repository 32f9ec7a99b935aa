"""The real `openai` SDK against a real uvicorn process: the user's unmodified script works."""

from __future__ import annotations

import json

import openai
import pytest

from tests.e2e.server import ServerProcess
from tests.helpers import chat_line, to_jsonl


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
    assert bad.value.status_code in (400, 404)
