"""App factory. Constructors live here (database, blobs, dispatcher); routes only read app.state.ctx."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from blendserve import __version__, native
from blendserve.api import dashboard, errors, routes_batches, routes_files, routes_misc, routes_webhooks
from blendserve.api.deps import OPEN_OWNER, AppContext, SharedNames, owner_for_key
from blendserve.api.middleware import RequestContextMiddleware
from blendserve.config import Settings
from blendserve.core import webhooks
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
    settings: Settings,
    dispatcher_factory: DispatcherFactory | None = None,
    prepare: bool = True,
    send_webhooks: bool = True,
) -> FastAPI:
    """The app. prepare: run the once-per-server start-up (prepare_database) in the lifespan; `serve --workers`
    runs it once in the parent instead. send_webhooks: run the webhook sender here (with worker processes only
    the dispatching one does; claims are safe across processes, the idle polling is not free)."""
    metrics = ServerMetrics()  # per app: tests build many apps in one process

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if prepare:
            prepare_database(settings)
        ctx = _build_context(settings, metrics)
        app.state.ctx = ctx
        publisher = None
        if dispatcher_factory is not None:
            ctx.dispatcher = dispatcher_factory(ctx.db, ctx.blobs)
            ctx.planner = Planner(ctx.dispatcher)
            metrics.attach(ctx.dispatcher, ctx.planner)
            await ctx.dispatcher.start()
            if ctx.models_file is not None:
                publisher = asyncio.create_task(_publish_models(ctx.dispatcher, ctx.models_file))
        sender = webhooks.WebhookSender(ctx.db, _retry_policy(settings)) if send_webhooks else None
        if sender is not None:
            metrics.attach_webhooks(sender.stats)
            await sender.start()
        try:
            yield
        finally:
            if publisher is not None:
                publisher.cancel()
            if sender is not None:
                await sender.stop()
            if ctx.dispatcher is not None:
                await ctx.dispatcher.stop()
            ctx.threads.shutdown(wait=True)
            ctx.db.dispose()

    # No OpenTelemetry hooks: its per-request provider lookups cost ~2% of a request's CPU, and /metrics is ours.
    telemetry_off: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="BlendServe Batch API", version=__version__, lifespan=lifespan, telemetry=telemetry_off)
    errors.install(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    routers = (routes_files.router, routes_batches.router, routes_misc.router, routes_webhooks.router, dashboard.router)
    for router in routers:
        app.include_router(router)
    return app


def prepare_database(settings: Settings) -> None:
    """Once per server, before it serves: migrations, the configured webhook endpoints, and re-validating batches
    a previous process left in `validating`."""
    url = settings.resolved_database_url()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    db = Database(url)
    try:
        webhooks.sync_endpoints(db, _webhook_endpoints(settings))
        model_ids = settings.served_names(settings.model_name) if settings.model_name else ()
        limits = IntakeLimits(settings.max_file_lines, settings.max_batch_errors, frozenset(model_ids))
        recovered = recover_validating(db, BlobStore(settings.blob_dir), limits)
        if recovered:
            log.info("re-validated %d batch(es) left in 'validating' by a previous process", recovered)
    finally:
        db.dispose()


def _build_context(settings: Settings, metrics: ServerMetrics) -> AppContext:
    log.info("scheduler: %s", native.describe(native.COMPILED))
    if not settings.api_keys:
        log.warning("No API keys configured (BLENDSERVE_API_KEYS): the server is OPEN to anyone who can reach it.")
    lock = settings.worker_lock_file
    return AppContext(
        settings=settings,
        db=Database(settings.resolved_database_url()),
        blobs=BlobStore(settings.blob_dir),
        threads=ThreadPoolExecutor(settings.api_threads, thread_name_prefix="api"),
        metrics=metrics,
        models_file=SharedNames(lock.with_name(lock.name + ".models")) if lock is not None else None,
    )


async def _publish_models(dispatcher: Dispatcher, names: SharedNames, every_s: float = 1.0) -> None:
    """For the API workers: the served model's names, as the dispatcher knows them now (a remote runtime names
    its model once it is up)."""
    while True:
        try:
            names.write(dispatcher.model_ids)
        except OSError:
            log.exception("could not publish the served model's names to %s", names.path)
        await asyncio.sleep(every_s)


def _webhook_endpoints(settings: Settings) -> list[tuple[str, str, str]]:
    """(owner, url, secret) per configured endpoint: API keys become the owners they authenticate as."""
    out = []
    for key, endpoints in settings.webhooks.items():
        if key == "*" and settings.api_keys:
            log.warning("BLENDSERVE_WEBHOOKS key '*' is for an open server; with API keys, name the key.")
        owner = OPEN_OWNER if key == "*" else owner_for_key(key)
        out += [(owner, e.url, e.secret) for e in endpoints]
    return out


def _retry_policy(settings: Settings) -> webhooks.RetryPolicy:
    return webhooks.RetryPolicy(
        first_delay_s=settings.webhook_first_retry_s,
        max_delay_s=settings.webhook_max_retry_delay_s,
        window_s=settings.webhook_retry_window_s,
        timeout_s=settings.webhook_timeout_s,
        poll_s=settings.webhook_poll_s,
    )
