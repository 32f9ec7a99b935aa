"""Object ids shaped like OpenAI's and the wall clock (one place, so tests can reason about time)."""

from __future__ import annotations

import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def file_id() -> str:
    return "file-" + _token(24)


def batch_id() -> str:
    return "batch_" + secrets.token_hex(16)


def request_id() -> str:
    return "batch_req_" + secrets.token_hex(16)


def now() -> int:
    return int(time.time())


def now_ns() -> int:
    return time.time_ns()


def now_precise() -> float:
    """Wall-clock seconds with a fraction (leases, per-line finish times)."""
    return time.time()
