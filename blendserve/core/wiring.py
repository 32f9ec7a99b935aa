"""Chooses the runtime and dispatcher for `blendserve serve` from Settings (the composition root of core)."""

from __future__ import annotations

from blendserve.config import Settings


def dispatcher_factory(settings: Settings):
    """None until a runtime is configured; see core/dispatcher.py."""
    if not settings.dispatcher or settings.runtime == "none":
        return None
    from blendserve.core.dispatch.loop import make_dispatcher

    return lambda ctx: make_dispatcher(ctx, settings)
