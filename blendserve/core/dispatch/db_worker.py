"""Runs the dispatcher's blocking database calls off the event loop, on a pool sized for the backend."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from blendserve.store.db import Database, is_sqlite

T = TypeVar("T")


class DbWorker:
    """SQLite takes one writer at a time, and threads contending for its lock back off in sleeps of up to 100 ms
    each: one thread does all of the dispatcher's database work there. Postgres takes concurrent writers, and
    each result's transaction is mostly round trips: four threads overlap them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        workers = 1 if is_sqlite(db.url) else 4
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dispatcher-db")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(*args, **kwargs) on the pool; its exceptions propagate to the caller."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
