"""Shared fixtures: a migrated database per backend (SQLite file, real local Postgres), an app on it, and an
httpx client over the ASGI transport with the app's lifespan running."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from blendserve.config import Settings
from blendserve.store.migrate import upgrade
from tests.support import clean_tables, make_settings, pg_database, running_client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def migrated_url(request, tmp_path_factory) -> Iterator[str]:
    """One migrated database per backend per session; tests clean rows, never re-create the schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        upgrade(url)
        yield url
    else:
        if os.environ.get("BLENDSERVE_SKIP_POSTGRES") == "1":
            pytest.skip("BLENDSERVE_SKIP_POSTGRES=1")
        for url in pg_database():
            upgrade(url)
            yield url


@pytest.fixture
def db_url(migrated_url: str) -> Iterator[str]:
    yield migrated_url
    clean_tables(migrated_url)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "data")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from blendserve.api.app import create_app

    async with running_client(create_app(settings)) as c:
        yield c
