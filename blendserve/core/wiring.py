"""Chooses the runtime and builds the dispatcher for `blendserve serve` from Settings (the composition root of
core: the one place that turns Settings into the narrow config objects the pieces take)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from blendserve.config import Settings

if TYPE_CHECKING:
    from blendserve.core.dispatch.loop import Dispatcher
    from blendserve.store.blobs import BlobStore
    from blendserve.store.db import Database


def dispatcher_factory(settings: Settings) -> Callable[[Database, BlobStore], Dispatcher] | None:
    """None when no runtime is configured (an API-only server)."""
    if not settings.dispatcher or settings.runtime == "none":
        return None

    def build(db: Database, blobs: BlobStore) -> Dispatcher:
        from blendserve.core.dispatch.config import DispatchConfig
        from blendserve.core.dispatch.loop import Dispatcher
        from blendserve.core.runtime.factory import build_runtime

        return Dispatcher(db, blobs, DispatchConfig.from_settings(settings), build_runtime(settings))

    return build
