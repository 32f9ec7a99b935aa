"""`blendserve serve --workers 2` (BLENDSERVE_WORKERS): two uvicorn worker processes on one port, on SQLite and
Postgres. Migrations run once (in the parent), exactly one worker dispatches (and builds the runtime), both serve
the API, both validate `model` against the served model's names, and every line of a batch lands exactly once."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.server import ServerProcess, poll
from tests.helpers import chat_line, to_jsonl

N = 300


@pytest.fixture(params=["sqlite", "postgres"])
def db_env(request) -> dict:
    if request.param == "sqlite":
        return {}
    return {"BLENDSERVE_DATABASE_URL": request.getfixturevalue("fresh_pg_url")}


def _create(client: httpx.Client, lines: list[dict]) -> dict:
    file = client.post("/v1/files", files={"file": ("in.jsonl", to_jsonl(lines))}, data={"purpose": "batch"})
    body = {"input_file_id": file.json()["id"], "completion_window": "24h", "endpoint": "/v1/chat/completions"}
    resp = client.post("/v1/batches", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_two_workers_one_dispatcher(tmp_path, db_env):
    env = {**db_env, "BLENDSERVE_WORKERS": "2", "BLENDSERVE_SIMULATED_TIME_SCALE": "50"}
    env["BLENDSERVE_MAX_INFLIGHT"] = "16"
    server = ServerProcess(tmp_path / "data", runtime="simulated", env=env, log_level="info")
    try:
        server.start()
        seen: dict[str, int] = {}  # /health answers, each on a new connection: "api" or the dispatcher's holder

        def both_workers_answered() -> bool:
            dispatcher = httpx.get(server.url + "/health", timeout=10).json()["dispatcher"]
            key = "api" if dispatcher is None else dispatcher["holder"]
            seen[key] = seen.get(key, 0) + 1
            return "api" in seen and len(seen) >= 2 and (dispatcher is None or dispatcher["active"])

        poll(both_workers_answered, timeout=60, every=0.02, what="answers from both workers")
        assert len(seen) == 2, seen  # one API-only worker and one dispatcher, never two dispatchers

        log = server.log.read_text()
        assert log.count("Running upgrade  -> 0001") == 1, "migrations ran more than once"
        assert log.count("dispatches (runtime simulated)") == 1 and log.count("serves the API only") == 1

        with httpx.Client(base_url=server.url, timeout=30) as client:  # one connection: always the same worker
            poll(lambda: client.get("/v1/models").json()["data"], timeout=30, what="the served model's names")
        for _ in range(6):  # new connections, both workers: a model this server does not serve fails alike
            with httpx.Client(base_url=server.url, timeout=30) as client:
                wrong = _create(client, [chat_line(0, model="gpt-unknown")])
                assert wrong["status"] == "failed" and wrong["errors"]["data"][0]["code"] == "model_not_found"

        with httpx.Client(base_url=server.url, timeout=30) as client:
            batch = _create(client, [chat_line(i) for i in range(N)])
        done = poll(
            lambda: (
                (b := httpx.get(f"{server.url}/v1/batches/{batch['id']}", timeout=10).json())["status"] == "completed"
                and b
            ),
            timeout=120,
            what="the batch completed",
        )
        assert done["request_counts"] == {"total": N, "completed": N, "failed": 0}
        text = httpx.get(f"{server.url}/v1/files/{done['output_file_id']}/content", timeout=60).text
        seen_ids = [json.loads(x)["custom_id"] for x in text.splitlines()]
        assert sorted(seen_ids) == sorted(f"req-{i}" for i in range(N)) and len(seen_ids) == len(set(seen_ids))
    finally:
        server.stop()
    assert not list((tmp_path / "data").glob(".dispatch-*")), "the parent leaves no lock file behind"
