from __future__ import annotations

import pytest

from tests.spec import assert_matches

pytestmark = pytest.mark.anyio


async def test_unknown_route_and_method(client):
    resp = await client.get("/v1/nope")
    assert resp.status_code == 404
    assert_matches("ErrorResponse", resp.json())
    resp = await client.put("/v1/files")
    assert resp.status_code == 405 and resp.json()["error"]["type"] == "invalid_request_error"


async def test_unexpected_exception_is_an_envelope_not_a_trace(settings):
    from blendserve.api.app import create_app
    from tests.support import running_client

    app = create_app(settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    async with running_client(app, raise_app_exceptions=False) as c:  # as uvicorn does
        resp = await c.get("/boom")
    assert resp.status_code == 500
    assert resp.json() == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


async def test_models_and_metrics(client):
    assert (await client.get("/v1/models")).json()["object"] == "list"
    missing = await client.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    text = (await client.get("/metrics")).text
    assert "# TYPE blendserve_batches gauge" in text
