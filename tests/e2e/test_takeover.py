"""Two `blendserve serve` processes on one Postgres database, on different ports: both serve the API, one
dispatches (the lease). kill -9 the active one mid-batch: the other takes over within the lease time, and every
line of the batch appears exactly once in the output."""

from __future__ import annotations

import json
import time

import httpx

from tests.e2e.server import ServerProcess, poll
from tests.helpers import chat_line, to_jsonl

LEASE_S = 3.0
N = 400


def _batch(url: str, batch_id: str) -> dict:
    return httpx.get(f"{url}/v1/batches/{batch_id}", timeout=10).json()


def _active(server: ServerProcess) -> bool:
    return bool(server.health()["dispatcher"]["active"])


def test_second_server_takes_over_within_the_lease(tmp_path, fresh_pg_url):
    env = {
        "BLENDSERVE_DATABASE_URL": fresh_pg_url,
        "BLENDSERVE_LEASE_SECONDS": str(LEASE_S),
        "BLENDSERVE_SIMULATED_TIME_SCALE": "20",
        "BLENDSERVE_MAX_INFLIGHT": "8",
    }
    # one data dir: blobs are files, shared as a volume would be; the database is shared by URL
    servers = [ServerProcess(tmp_path / "data", runtime="simulated", env=env)]
    try:
        servers[0].start()  # the first migrates the fresh database; the second finds it at head
        servers.append(ServerProcess(tmp_path / "data", runtime="simulated", env=env).start())
        a, b = servers
        active = poll(lambda: [s for s in servers if _active(s)], timeout=30, what="an active dispatcher")
        assert len(active) == 1, [s.health() for s in servers]
        victim, survivor = (a, b) if active[0] is a else (b, a)

        lines = to_jsonl([chat_line(i) for i in range(N)])
        file = httpx.post(f"{survivor.url}/v1/files", files={"file": ("in.jsonl", lines)}, data={"purpose": "batch"})
        body = {"input_file_id": file.json()["id"], "completion_window": "24h", "endpoint": "/v1/chat/completions"}
        batch_id = httpx.post(f"{survivor.url}/v1/batches", json=body).json()["id"]
        assert _batch(victim.url, batch_id)["request_counts"]["total"] == N  # both serve the API

        poll(lambda: _batch(survivor.url, batch_id)["request_counts"]["completed"] >= N // 4, timeout=60)
        victim.kill9()
        killed = time.monotonic()
        at_kill = _batch(survivor.url, batch_id)["request_counts"]["completed"]
        assert at_kill < N, "the batch finished before the kill"
        poll(lambda: _active(survivor), timeout=LEASE_S + 30, every=0.05, what="takeover")
        takeover_s = time.monotonic() - killed
        poll(lambda: _batch(survivor.url, batch_id)["request_counts"]["completed"] > at_kill, timeout=30, every=0.05)
        resumed_s = time.monotonic() - killed
        final = poll(lambda: (x := _batch(survivor.url, batch_id))["status"] == "completed" and x, timeout=120)
        print(f"takeover {takeover_s:.2f} s, first new result {resumed_s:.2f} s after kill -9 (lease {LEASE_S} s)")
        assert takeover_s <= LEASE_S + 2.0, takeover_s  # the lease, plus a tick and a slow machine's slack

        text = httpx.get(f"{survivor.url}/v1/files/{final['output_file_id']}/content", timeout=60).text
        seen = [json.loads(x)["custom_id"] for x in text.splitlines()]
        assert sorted(seen) == sorted(f"req-{i}" for i in range(N)) and len(seen) == len(set(seen))
        assert final["request_counts"] == {"total": N, "completed": N, "failed": 0}
        assert not final.get("error_file_id")
    finally:
        for server in servers:
            server.stop()
