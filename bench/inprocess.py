"""The in-process server the bench scripts drive: the real app and dispatcher over a given runtime, a temporary
data dir, and an ASGI client (no sockets, so the figures are the server's work, not loopback's)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.api.app import create_app  # noqa: E402
from blendserve.config import Settings  # noqa: E402
from blendserve.core.dispatch.config import DispatchConfig  # noqa: E402
from blendserve.core.dispatch.loop import Dispatcher  # noqa: E402


@asynccontextmanager
async def in_process_server(
    runtime, timeout_s: float = 600.0, **settings: object
) -> AsyncIterator[tuple[httpx.AsyncClient, Dispatcher]]:
    """(client, dispatcher) of a server running on `runtime`; `settings` are Settings fields (runtime="simulated"
    unless given). Everything is stopped and the data dir removed on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Settings(**{"runtime": "simulated", **settings, "data_dir": Path(tmp)})  # type: ignore[arg-type]
        app = create_app(config, lambda db, blobs: Dispatcher(db, blobs, DispatchConfig.from_settings(config), runtime))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=timeout_s) as client:
                yield client, app.state.ctx.dispatcher


async def submit_batch(client: httpx.AsyncClient, name: str, jsonl: bytes) -> str:
    """Upload `jsonl` and create a chat-completions batch of it; its id."""
    file = (await client.post("/v1/files", files={"file": (name, jsonl)}, data={"purpose": "batch"})).json()
    body = {"input_file_id": file["id"], "completion_window": "24h", "endpoint": "/v1/chat/completions"}
    resp = await client.post("/v1/batches", json=body)
    resp.raise_for_status()
    return resp.json()["id"]
