"""App factory. Constructors live here (database, blobs, dispatcher); routes only read app.state.ctx."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from blendserve import __version__
from blendserve.api import dashboard, errors, routes_batches, routes_files, routes_misc
from blendserve.api.deps import AppContext
from blendserve.api.middleware import RequestContextMiddleware
from blendserve.config import Settings
from blendserve.core.batches import IntakeLimits, recover_validating
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.metrics import ServerMetrics
from blendserve.core.plan import Planner
from blendserve.store.blobs import BlobStore
from blendserve.store.db import Database
from blendserve.store.migrate import upgrade

log = logging.getLogger("blendserve")

# Builds the background dispatcher over the app's database and blobs. None = no dispatcher (API only).
DispatcherFactory = Callable[[Database, BlobStore], Dispatcher]


def create_app(
    settings: Settings, dispatcher_factory: DispatcherFactory | None = None, migrate: bool = True
) -> FastAPI:
    metrics = ServerMetrics()  # per app: tests build many apps in one process

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = _build_context(settings, migrate, metrics)
        app.state.ctx = ctx
        if dispatcher_factory is not None:
            ctx.dispatcher = dispatcher_factory(ctx.db, ctx.blobs)
            ctx.planner = Planner(ctx.dispatcher)
            metrics.attach(ctx.dispatcher, ctx.planner)
            await ctx.dispatcher.start()
            ctx.model_ids = tuple(ctx.dispatcher.model_ids)
        try:
            yield
        finally:
            if ctx.dispatcher is not None:
                await ctx.dispatcher.stop()
            ctx.db.dispose()

    app = FastAPI(title="BlendServe Batch API", version=__version__, lifespan=lifespan)
    errors.install(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    for router in (routes_files.router, routes_batches.router, routes_misc.router, dashboard.router):
        app.include_router(router)
    return app


def _build_context(settings: Settings, migrate: bool, metrics: ServerMetrics) -> AppContext:
    url = settings.resolved_database_url()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        upgrade(url)
    db = Database(url)
    blobs = BlobStore(settings.blob_dir)
    if not settings.api_keys:
        log.warning("No API keys configured (BLENDSERVE_API_KEYS): the server is OPEN to anyone who can reach it.")
    recovered = recover_validating(db, blobs, IntakeLimits(settings.max_file_lines, settings.max_batch_errors))
    if recovered:
        log.info("re-validated %d batch(es) left in 'validating' by a previous process", recovered)
    model_ids = tuple(filter(None, [settings.model_name]))
    return AppContext(settings=settings, db=db, blobs=blobs, metrics=metrics, model_ids=model_ids)
