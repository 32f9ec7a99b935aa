"""FastAPI dependencies: the app context and the caller's identity (API key -> owner)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from blendserve.config import Settings
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.errors import Unauthorized
from blendserve.store.blobs import BlobStore
from blendserve.store.db import Database

OPEN_OWNER = "public"


@dataclass
class AppContext:
    settings: Settings
    db: Database
    blobs: BlobStore
    dispatcher: Dispatcher | None = None  # None: an API-only server

    @property
    def model_ids(self) -> tuple[str, ...]:
        """The model names this server answers to now (the runtime's and its aliases); empty: not known yet,
        any name is accepted. Read on every call: a remote runtime names its model only once it is up."""
        if self.dispatcher is not None:
            served = self.dispatcher.model_ids
        else:
            served = [self.settings.model_name] if self.settings.model_name else []
        return tuple(name for model in served for name in self.settings.served_names(model))


def owner_for_key(key: str) -> str:
    # Store a digest, not the key: the owner column then leaks nothing usable.
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def get_context(request: Request) -> AppContext:
    return request.app.state.ctx


def current_owner(request: Request, ctx: Annotated[AppContext, Depends(get_context)]) -> str:
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
