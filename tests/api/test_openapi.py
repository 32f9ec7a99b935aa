"""openapi/openapi.json is generated from the app (`blendserve openapi`); drift fails here."""

from __future__ import annotations

import json
from pathlib import Path

from blendserve.api.app import create_app
from blendserve.config import Settings

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_schema_matches_app():
    live = create_app(Settings(dispatcher=False), None, prepare=False).openapi()
    committed = json.loads(COMMITTED.read_text())
    assert committed == json.loads(json.dumps(live)), "run `blendserve openapi` and commit openapi/openapi.json"


def test_schema_has_the_batch_api():
    paths = json.loads(COMMITTED.read_text())["paths"]
    for path in (
        "/v1/files",
        "/v1/files/{file_id}",
        "/v1/files/{file_id}/content",
        "/v1/batches",
        "/v1/batches/{batch_id}",
        "/v1/batches/{batch_id}/cancel",
    ):
        assert path in paths
