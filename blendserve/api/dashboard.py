"""The dashboard: `/` redirects to `/dashboard`, a server-rendered page whose small script polls
`/dashboard/state` (JSON) every 2 s. With API keys configured the state needs a key, and each key sees only its
own batches; the page keeps the key in sessionStorage and sends it as a Bearer token."""

from __future__ import annotations

import html
from importlib import resources
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from blendserve import __version__
from blendserve.api.deps import Ctx, Owner
from blendserve.core import overview
from blendserve.core.live_view import live_state

router = APIRouter(include_in_schema=False)
_PAGE = Template(resources.files("blendserve.api").joinpath("static/dashboard.html").read_text())
BATCHES_SHOWN = 50


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard", response_class=HTMLResponse)
def page(ctx: Ctx) -> HTMLResponse:
    """The page itself holds no tenant data: it is open; its data calls need a key when keys are on."""
    values = {
        "version": __version__,
        "model": ", ".join(ctx.model_ids) or "none",
        "keys_required": "true" if ctx.settings.api_keys else "false",
    }
    return HTMLResponse(_PAGE.substitute({k: html.escape(v) for k, v in values.items()}))


@router.get("/dashboard/state")
async def state(ctx: Ctx, owner: Owner) -> dict:
    rows = await ctx.run(overview.recent_batches, ctx.db, owner, BATCHES_SHOWN)
    return live_state(ctx.dispatcher, ctx.planner, rows)
