"""Pure ASGI middleware: every response carries an `x-request-id` (the SDK exposes it as `_request_id`), and an
unhandled error becomes the 500 envelope here, so it is not re-raised to the server (which would drop the
client's keep-alive connection)."""

from __future__ import annotations

import logging
import secrets

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blendserve.api.errors import SERVER_ERROR_BODY

log = logging.getLogger("blendserve.api")

_SERVER_ERROR = orjson.dumps(SERVER_ERROR_BODY)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error (request %s)", request_id)
            if started:
                raise  # the status line is out; nothing honest can be sent now
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), header],
                }
            )
            await send({"type": "http.response.body", "body": _SERVER_ERROR})
