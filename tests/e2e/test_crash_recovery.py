"""kill -9 the server mid-batch, several times; after restarts every input line appears exactly once across
the output and error files."""

from __future__ import annotations

import json
import random
import time

import httpx

from tests.e2e.server import ServerProcess
from tests.helpers import chat_line, to_jsonl

N = 240


def _status(url, batch_id):
    return httpx.get(f"{url}/v1/batches/{batch_id}", timeout=10).json()


def test_kill9_mid_batch_loses_and_duplicates_nothing(tmp_path):
    env = {"BLENDSERVE_LEASE_SECONDS": "1", "BLENDSERVE_SIMULATED_TIME_SCALE": "20", "BLENDSERVE_MAX_INFLIGHT": "8"}
    data = tmp_path / "data"
    server = ServerProcess(data, runtime="simulated", env=env).start()
    file = httpx.post(
        f"{server.url}/v1/files",
        files={"file": ("in.jsonl", to_jsonl([chat_line(i) for i in range(N)]))},
        data={"purpose": "batch"},
    ).json()
    batch = httpx.post(
        f"{server.url}/v1/batches",
        json={"input_file_id": file["id"], "completion_window": "24h", "endpoint": "/v1/chat/completions"},
    ).json()
    rng = random.Random(7)
    progress = []
    for _ in range(3):
        time.sleep(rng.uniform(0.8, 1.6))
        progress.append(_status(server.url, batch["id"])["request_counts"]["completed"])
        server.kill9()
        server = ServerProcess(data, runtime="simulated", env=env, port=server.port).start()
    deadline = time.time() + 120
    while (b := _status(server.url, batch["id"]))["status"] != "completed":
        assert time.time() < deadline, b
        time.sleep(0.2)
    server.stop()
    assert 0 < progress[0] < N, progress  # the kills really hit a batch in the middle of its run
    server = ServerProcess(data, runtime="none", env=env).start()
    lines = []
    for file_id in (b.get("output_file_id"), b.get("error_file_id")):
        if file_id:
            lines += [json.loads(x) for x in httpx.get(f"{server.url}/v1/files/{file_id}/content").text.splitlines()]
    server.stop()
    ids = [x["custom_id"] for x in lines]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(N)) and len(ids) == len(set(ids))
    assert b["request_counts"] == {"total": N, "completed": N, "failed": 0}
