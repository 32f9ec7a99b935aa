"""The README's path: `blendserve serve` on the embedded CPU model, driven by the real openai SDK, runs a batch
to `completed`; the output file holds real model answers."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.e2e.server import ServerProcess
from tests.helpers import to_jsonl

pytestmark = pytest.mark.model


def test_sdk_batch_completes_on_the_cpu_model(tmp_path):
    server = ServerProcess(tmp_path / "data", runtime="local").start(timeout=300)  # first start converts the GGUF
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct"]
        lines = [
            {
                "custom_id": f"q{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "SmolLM2-135M-Instruct",
                    "temperature": 0,
                    "max_tokens": 12,
                    "messages": [{"role": "user", "content": q}],
                },
            }
            for i, q in enumerate(["What is the capital of France?", "What is 2 + 2?", "Name a color."])
        ]
        lines.append(
            {
                "custom_id": "c0",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "SmolLM2-135M-Instruct",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 4,
                    "logprobs": True,
                    "top_logprobs": 2,
                    "stop": ["\n"],
                },
            }
        )
        path = tmp_path / "in.jsonl"
        path.write_bytes(to_jsonl(lines))
        file = client.files.create(file=path.open("rb"), purpose="batch")
        batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
        deadline = time.time() + 240
        while (batch := client.batches.retrieve(batch.id)).status not in ("completed", "failed", "expired"):
            assert time.time() < deadline, batch
            time.sleep(0.5)
        assert batch.status == "completed", batch
        assert batch.request_counts.completed == 4 and batch.request_counts.failed == 0
        assert batch.usage.input_tokens > 0 and batch.usage.output_tokens > 0
        out = {x["custom_id"]: x for x in map(json.loads, client.files.content(batch.output_file_id).text.splitlines())}
        answer = out["q0"]["response"]["body"]
        assert answer["object"] == "chat.completion" and answer["model"] == "SmolLM2-135M-Instruct"
        assert "Paris" in answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] <= 12
        lp = out["c0"]["response"]["body"]["choices"][0]["logprobs"]["content"]
        assert lp and len(lp[0]["top_logprobs"]) == 2

        emb_path = tmp_path / "emb.jsonl"
        emb_path.write_bytes(
            to_jsonl(
                [
                    {
                        "custom_id": f"e{i}",
                        "method": "POST",
                        "url": "/v1/embeddings",
                        "body": {"model": "SmolLM2-135M-Instruct", "input": text},
                    }
                    for i, text in enumerate(["The cat sat.", "A cat was sitting.", "Tax law"])
                ]
            )
        )
        emb_file = client.files.create(file=emb_path.open("rb"), purpose="batch")
        emb = client.batches.create(input_file_id=emb_file.id, endpoint="/v1/embeddings", completion_window="24h")
        while (emb := client.batches.retrieve(emb.id)).status not in ("completed", "failed", "expired"):
            assert time.time() < deadline + 120, emb
            time.sleep(0.5)
        assert emb.status == "completed" and emb.request_counts.completed == 3
        rows = {
            x["custom_id"]: x["response"]["body"]["data"][0]["embedding"]
            for x in map(json.loads, client.files.content(emb.output_file_id).text.splitlines())
        }
        dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
        assert len(rows["e0"]) == 576 and dot(rows["e0"], rows["e1"]) > dot(rows["e0"], rows["e2"])
    finally:
        server.stop()
