"""`blendserve serve`, in one process or in N uvicorn worker processes on one port (`--workers N`,
BLENDSERVE_WORKERS). One Python process tops out at about one core of API work (the GIL); workers spread
requests over the machine's cores.

With N > 1:
- the parent runs the once-per-server start-up (app.prepare_database: migrations, webhook endpoints,
  re-validating batches left in `validating`) before any worker starts; the workers skip it;
- exactly one worker dispatches: the one that takes an exclusive flock on a lock file the parent made for this
  server (Settings.worker_lock_file). Only it builds the runtime (the embedded model is loaded once, not N
  times), runs the webhook sender and publishes the served model's names for the others (api.deps.SharedNames:
  every worker validates `model` the same way). The others serve the API only (no dispatcher: /health shows
  `"dispatcher": null`, /v1/batches/{id}/plan has no predictions, /metrics counts that process's requests);
- the dispatching worker still takes the database lease, so two servers on one Postgres keep exactly one
  dispatcher between them. If it dies, uvicorn starts a replacement, which finds the lock free, dispatches, and
  takes the lease over once the dead worker's lease lapses (the takeover of two servers).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from blendserve import logs
from blendserve.api.app import create_app, prepare_database
from blendserve.config import Settings
from blendserve.core.wiring import dispatcher_factory

log = logging.getLogger("blendserve")
_held: list[int] = []  # the lock's descriptor, open for the life of the dispatching worker


def hold_dispatch_lock(path: Path) -> bool:
    """True when this process now holds the exclusive flock on `path` (kept until it exits; the kernel drops it
    when the process dies, however it dies); False when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _held.append(fd)
    return True


def worker_app() -> FastAPI:
    """uvicorn's app factory in each worker process: Settings from the environment the parent prepared."""
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level.upper())
    lock = settings.worker_lock_file
    dispatching = lock is None or hold_dispatch_lock(lock)
    factory = dispatcher_factory(settings) if dispatching else None
    role = f"dispatches (runtime {settings.runtime})" if factory is not None else "serves the API only"
    log.info("worker pid %d %s", os.getpid(), role)
    return create_app(settings, factory, prepare=False, send_webhooks=dispatching)


def serve(settings: Settings, overrides: dict[str, object], host: str, port: int) -> None:
    """Run the server until it is stopped. overrides: the Settings fields given on the command line (the worker
    processes read Settings from the environment, so they are put there)."""
    if settings.workers <= 1:
        app = create_app(settings, dispatcher_factory(settings))
        # log_config=None: uvicorn's loggers go through the root handler, in our format, with the request id
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level, log_config=None)
        return
    prepare_database(settings)
    lock = (settings.data_dir / f".dispatch-{os.getpid()}.lock").resolve()
    env = {**{k: str(v) for k, v in overrides.items()}, "worker_lock_file": str(lock), "workers": "1"}
    os.environ.update({f"BLENDSERVE_{k.upper()}": v for k, v in env.items()})
    log.info("starting %d API workers on %s:%d; one of them dispatches", settings.workers, host, port)
    try:
        uvicorn.run(
            "blendserve.api.workers:worker_app",
            factory=True,
            workers=settings.workers,
            host=host,
            port=port,
            log_level=settings.log_level,
            log_config=None,
        )
    finally:
        for path in (lock, lock.with_name(lock.name + ".models")):
            path.unlink(missing_ok=True)
