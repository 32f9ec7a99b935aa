"""Pure ASGI middleware for every HTTP request (pure ASGI, so streamed bodies pass through untouched):

- a request id (the client's `x-request-id` when it is a sane token, else a new `req_...`), returned in the
  `x-request-id` response header (the SDK exposes it as `_request_id`) and set in logs.request_id_var so every
  log line written while serving the request carries it;
- the request's latency in the metrics histogram, by route template;
- an unhandled error becomes the 500 envelope here, so it is not re-raised to the server (which would drop the
  client's keep-alive connection)."""

from __future__ import annotations

import logging
import re
import secrets
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blendserve.api.errors import SERVER_ERROR_BODY
from blendserve.core.metrics import ServerMetrics
from blendserve.logs import request_id_var

log = logging.getLogger("blendserve.api")

HEADER = b"x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SERVER_ERROR = orjson.dumps(SERVER_ERROR_BODY)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or ()).get(HEADER, b"").decode("latin-1")
        request_id = sent if _SANE.match(sent) else new_request_id()
        header = (HEADER, request_id.encode())
        token = request_id_var.set(request_id)
        clock, status, started = time.perf_counter(), 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
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
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_seconds.labels(scope["method"], route, str(status)).observe(time.perf_counter() - clock)
            request_id_var.reset(token)
