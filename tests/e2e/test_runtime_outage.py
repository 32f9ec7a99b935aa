"""A real SGLang outage mid-batch: `blendserve serve --runtime sglang-http` (a real process) against the SGLang
stand-in, which is stopped for a few seconds and started again on the same port (refused connections while
down). Dispatch pauses, no line fails and no attempt is spent; the batch finishes after the runtime is back."""

from __future__ import annotations

import sqlite3
import time

import httpx

from tests.e2e.server import ServerProcess, free_port, poll
from tests.fakes.sglang.server import StandinServer
from tests.helpers import chat_line, to_jsonl

N = 60
OUTAGE_S = 4.0


def _batch(url: str, batch_id: str) -> dict:
    return httpx.get(f"{url}/v1/batches/{batch_id}", timeout=10).json()


def _breaker(server: ServerProcess) -> str:
    return server.health()["dispatcher"]["runtime"]["state"]


def test_sglang_restart_mid_batch_fails_no_line(tmp_path):
    standin = StandinServer(free_port(), decode_s=0.005)
    env = {
        "BLENDSERVE_SGLANG_URL": standin.url,
        "BLENDSERVE_MAX_INFLIGHT": "4",
        "BLENDSERVE_PROBE_INTERVAL_S": "0.2",
        "BLENDSERVE_MAX_PROBE_INTERVAL_S": "0.5",
        "BLENDSERVE_RETRY_BACKOFF_S": "0.05",
    }
    server = ServerProcess(tmp_path / "data", runtime="sglang-http", env=env)
    try:
        standin.up()
        server.start()
        poll(lambda: _breaker(server) == "closed", timeout=60, what="runtime ready")
        lines = to_jsonl([chat_line(i, model="standin-model", max_tokens=16) for i in range(N)])
        file = httpx.post(f"{server.url}/v1/files", files={"file": ("in.jsonl", lines)}, data={"purpose": "batch"})
        body = {"input_file_id": file.json()["id"], "completion_window": "24h", "endpoint": "/v1/chat/completions"}
        batch_id = httpx.post(f"{server.url}/v1/batches", json=body).json()["id"]
        poll(lambda: _batch(server.url, batch_id)["request_counts"]["completed"] >= N // 4, timeout=60, every=0.05)

        standin.down()
        poll(lambda: _breaker(server) == "open", timeout=30, every=0.05, what="breaker open")
        stalled = _batch(server.url, batch_id)["request_counts"]
        time.sleep(OUTAGE_S)  # the outage itself: a fixed length of time is what is being tested
        assert _batch(server.url, batch_id)["request_counts"] == stalled  # paused: nothing failed meanwhile
        standin.up()
        back = time.monotonic()
        final = poll(lambda: (b := _batch(server.url, batch_id))["status"] == "completed" and b, timeout=120)
        print(f"finished {time.monotonic() - back:.2f} s after SGLang came back ({N - stalled['completed']} left)")
        assert final["request_counts"] == {"total": N, "completed": N, "failed": 0}
        assert server.health()["dispatcher"]["runtime"]["outages"] == 1
        with sqlite3.connect(tmp_path / "data" / "blendserve.db") as db:
            spent = db.execute("SELECT count(*) FROM batch_requests WHERE attempts > 1").fetchone()[0]
        assert spent <= 2, spent  # only failures before the breaker opened, if any, cost an attempt
    finally:
        server.stop()
        standin.down()
