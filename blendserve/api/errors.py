"""The ONE place that turns errors into HTTP responses with OpenAI's envelope:
{"error": {"message", "type", "param", "code"}}. Nothing else builds an error response.

An unexpected exception becomes a 500 envelope inside api/middleware.py, an ASGI middleware, and is NOT
re-raised: Starlette's own last-resort handler sends the response and then re-raises, and uvicorn answers a
re-raised exception by closing the connection, resetting the client's keep-alive connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from blendserve.core.errors import BlendServeError

log = logging.getLogger("blendserve.api")
E = TypeVar("E", bound=Exception)

_TYPE_BY_STATUS = {
    401: "invalid_request_error",
    409: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
}


def envelope(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _domain(_: Request, exc: BlendServeError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return envelope(exc.status_code, exc.message, exc.error_type, exc.param, exc.code, headers)


def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    param = ".".join(loc) or None
    if first.get("type") == "missing":
        message, code = f"Missing required parameter: '{param}'.", "missing_required_parameter"
    elif first.get("type") == "json_invalid":
        message, code = "We could not parse the JSON body of your request.", "invalid_json"
    else:
        message, code = f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", "invalid_value"
    return envelope(400, message, "invalid_request_error", param, code)


def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404 and message == "Not Found":
        message = "Unknown request URL. Please check the URL and method."
    return envelope(
        exc.status_code,
        message,
        _TYPE_BY_STATUS.get(exc.status_code, "invalid_request_error"),
        None,
        "unknown_url" if exc.status_code in (404, 405) else None,
    )


# Any other exception: api/middleware.py logs it and sends this body with a 500 (never a stack trace). It is
# not an exception handler here because Starlette re-raises after those, dropping the client's connection.
SERVER_ERROR_BODY = {
    "error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


def _handler(
    kind: type[E], handle: Callable[[Request, E], JSONResponse]
) -> Callable[[Request, Exception], JSONResponse]:
    """Starlette types every handler as taking any Exception; it calls each with its own kind only."""

    def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, kind)
        return handle(request, exc)

    return handler


def install(app: FastAPI) -> None:
    app.add_exception_handler(BlendServeError, _handler(BlendServeError, _domain))
    app.add_exception_handler(RequestValidationError, _handler(RequestValidationError, _validation))
    app.add_exception_handler(StarletteHTTPException, _handler(StarletteHTTPException, _http))
