"""Domain errors. api/errors.py is the one place that turns them into HTTP + the OpenAI envelope."""

from __future__ import annotations


class BlendServeError(Exception):
    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(BlendServeError):
    pass


class NotFound(BlendServeError):
    status_code = 404


class Unauthorized(BlendServeError):
    status_code = 401


class InvalidState(BlendServeError):
    """An operation the object's current status does not allow (e.g. cancel a completed batch)."""

    status_code = 400


class Conflict(BlendServeError):
    """The object's state forbids the operation (cancel a finished batch): 409, the SDK's ConflictError."""

    status_code = 409
