"""BLENDSERVE_LOG_FORMAT=json on a real `blendserve serve`: every line on stderr is one JSON object, and the
lines written while serving a request (uvicorn's access line included) carry that request's id."""

from __future__ import annotations

import json

import httpx

from tests.e2e.server import ServerProcess


def test_json_logs_carry_the_request_id(tmp_path):
    server = ServerProcess(tmp_path / "data", env={"BLENDSERVE_LOG_FORMAT": "json"}, log_level="info")
    try:
        server.start()
        resp = httpx.get(server.url + "/v1/models", headers={"x-request-id": "trace-json-1"}, timeout=10)
        assert resp.headers["x-request-id"] == "trace-json-1"
        missing = httpx.get(server.url + "/v1/batches/batch_nope", timeout=10)
    finally:
        server.stop()
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses: nothing else is written
    assert all({"ts", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    mine = [r for r in records if r["request_id"] == "trace-json-1"]
    assert mine and any("/v1/models" in r["message"] for r in mine), records[-5:]
    other = [r for r in records if r["request_id"] == missing.headers["x-request-id"]]
    assert other and any("404" in r["message"] for r in other)
    assert any(r["request_id"] == "-" for r in records)  # startup lines belong to no request
