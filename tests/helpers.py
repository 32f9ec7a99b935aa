"""Builders for batch input files."""

from __future__ import annotations

import json


def chat_line(i: int, model: str = "simulated", prompt: str | None = None, **body) -> dict:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": prompt or f"Say {i}."}],
            "max_tokens": 8,
            **body,
        },
    }


def to_jsonl(objs: list[dict]) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objs).encode()


async def upload(client, content: bytes, filename: str = "input.jsonl", purpose: str = "batch", headers=None):
    return await client.post(
        "/v1/files",
        files={"file": (filename, content, "application/jsonl")},
        data={"purpose": purpose},
        headers=headers,
    )


async def upload_batch(client, objs: list[dict], endpoint: str = "/v1/chat/completions", headers=None, metadata=None):
    file = (await upload(client, to_jsonl(objs), headers=headers)).json()
    body = {"input_file_id": file["id"], "endpoint": endpoint, "completion_window": "24h"}
    if metadata is not None:
        body["metadata"] = metadata
    return await client.post("/v1/batches", json=body, headers=headers)
