"""FastAPI dependencies: the app context and the caller's identity (API key -> owner)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import hmac
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
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

    # With worker processes: where the dispatching worker publishes the served model's names for the others
    models_file: SharedNames | None = None

    @property
    def model_ids(self) -> tuple[str, ...]:
        """The model names this server answers to now (the runtime's and its aliases); empty: not known yet,
        any name is accepted. Read on every call: a remote runtime names its model only once it is up. A worker
        that does not dispatch reads what the dispatching worker published."""
        if self.dispatcher is not None:
            served = self.dispatcher.model_ids
        elif self.models_file is not None and (published := self.models_file.read()):
            served = list(published)
        else:
            served = [self.settings.model_name] if self.settings.model_name else []
        return tuple(name for model in served for name in self.settings.served_names(model))

    # Threads for the handlers' blocking database work: no more than the connections they can get at once.
    # Shut down by the app's lifespan.
    threads: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="api"))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) on a worker thread (the one hop a request makes off the event loop), with the
        caller's context variables (the request id in log lines); its exceptions propagate. Handlers are async
        and call this, instead of being sync: a sync FastAPI handler costs a hop for itself, one per sync
        dependency and one for response validation, and under load each hop waits for the GIL. A plain
        executor, not anyio's to_thread: its hand-off is a C SimpleQueue instead of a Python Condition (about
        a tenth of the event loop's CPU under bench/load.py). A cancelled caller does not stop fn."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.threads, call)


class SharedNames:
    """A short list of names in a file, written atomically by one process and read by others (re-read only when
    the file changed). The dispatching worker publishes the served model's names here for the API workers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[tuple[int, int, int], tuple[str, ...]] = ((-1, -1, -1), ())

    def read(self) -> tuple[str, ...]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return ()
        version = (st.st_ino, st.st_mtime_ns, st.st_size)  # each write replaces the file: a new inode
        if version != self._seen[0]:
            self._seen = (version, tuple(orjson.loads(self.path.read_bytes())))
        return self._seen[1]

    def write(self, names: list[str]) -> None:
        if self.read() == tuple(names):
            return
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}")
        tmp.write_bytes(orjson.dumps(names))
        tmp.replace(self.path)


def owner_for_key(key: str) -> str:
    # Store a digest, not the key: the owner column then leaks nothing usable.
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:32]


async def get_context(request: Request) -> AppContext:
    return request.app.state.ctx


async def current_owner(request: Request) -> str:
    # reads the context itself rather than through Depends(get_context): one dependency less to solve per request
    keys = request.app.state.ctx.settings.api_keys
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
