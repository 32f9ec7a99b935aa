"""An unhandled error answers with the 500 envelope on a keep-alive connection that stays open (real uvicorn,
real httpx connection pool): the next request on the same client goes over the same TCP connection."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn
from fastapi import Request

from tests.e2e.server import free_port
from tests.support import make_settings


def _app(settings):
    from blendserve.api.app import create_app

    app = create_app(settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    @app.get("/boom-async")
    async def boom_async():
        raise ValueError("secret internals")

    @app.get("/peer")
    def peer(request: Request) -> dict:
        return {"port": request.client.port}

    return app


def test_500_envelope_keeps_the_connection(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(settings), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 30
            while not server.started:
                assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
                time.sleep(0.05)
            first = client.get("/peer").json()["port"]
            for path in ("/boom", "/boom-async"):
                resp = client.get(path)
                assert resp.status_code == 500
                assert resp.json()["error"] == {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
                assert "secret" not in resp.text and resp.headers.get("connection") != "close"
                assert client.get("/peer").json()["port"] == first  # the same connection, not a new one
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()
