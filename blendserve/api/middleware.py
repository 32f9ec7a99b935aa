"""Request context for every HTTP request (pure ASGI, so streamed bodies pass through untouched): a request id
(the client's `x-request-id` when it is a sane token, else a new one) set in logs.request_id_var and returned
in the `x-request-id` response header; and the request's latency in the metrics histogram by route template."""

from __future__ import annotations

import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blendserve.core.metrics import ServerMetrics
from blendserve.logs import request_id_var

HEADER = b"x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
        rid = sent if _SANE.match(sent) else new_request_id()
        token = request_id_var.set(rid)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if not any(k.lower() == HEADER for k, _ in headers):  # a route that set its own id keeps it
                    message = {**message, "headers": [*headers, (HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.http_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )
            request_id_var.reset(token)
