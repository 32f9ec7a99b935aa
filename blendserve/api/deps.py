"""FastAPI dependencies: the app context and the caller's identity (API key -> owner)."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi import Depends, Request

from blendserve.config import Settings
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.errors import Unauthorized
from blendserve.core.metrics import ServerMetrics
from blendserve.core.plan import Planner
from blendserve.store.blobs import BlobStore
from blendserve.store.db import Database

OPEN_OWNER = "public"
T = TypeVar("T")


@dataclass
class AppContext:
    settings: Settings
    db: Database
    blobs: BlobStore
    metrics: ServerMetrics
    dispatcher: Dispatcher | None = None  # None: an API-only server
    planner: Planner | None = None  # with the dispatcher: plans and the dashboard's live view

    @property
    def model_ids(self) -> tuple[str, ...]:
        """The model names this server answers to now (the runtime's and its aliases); empty: not known yet,
        any name is accepted. Read on every call: a remote runtime names its model only once it is up."""
        if self.dispatcher is not None:
            served = self.dispatcher.model_ids
        else:
            served = [self.settings.model_name] if self.settings.model_name else []
        return tuple(name for model in served for name in self.settings.served_names(model))

    # Threads for the handlers' blocking database work: no more than the connections they can get at once.
    limiter: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(8))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) on a worker thread (the one hop a request makes off the event loop); its
        exceptions propagate. Handlers are async and call this, instead of being sync: a sync FastAPI handler
        costs a hop for itself, one per sync dependency and one for response validation, and under load each
        hop waits for the GIL."""
        return await to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter)


def owner_for_key(key: str) -> str:
    # Store a digest, not the key: the owner column then leaks nothing usable.
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:32]


async def get_context(request: Request) -> AppContext:
    return request.app.state.ctx


async def current_owner(request: Request, ctx: Annotated[AppContext, Depends(get_context)]) -> str:
    keys = ctx.settings.api_keys
    if not keys:
        return OPEN_OWNER
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "You didn't provide an API key. Provide it in an Authorization header (Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    if not any(hmac.compare_digest(token, k) for k in keys):
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    return owner_for_key(token)


Ctx = Annotated[AppContext, Depends(get_context)]
Owner = Annotated[str, Depends(current_owner)]
