"""Shared fixtures: a migrated database per backend (SQLite file, real local Postgres), an app on it, and an
httpx client over the ASGI transport with the app's lifespan running."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from blendserve.config import Settings
from blendserve.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get("BLENDSERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLES = ("batch_requests", "batches", "files", "leases", "webhook_deliveries", "webhook_endpoints")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pg_database() -> Iterator[str]:
    name = f"bs_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment problem, said loudly
        pytest.fail(f"Postgres at {PG_ADMIN_URL} is required for the Postgres half of the suite: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
        for url in _pg_database():
            upgrade(url)
            yield url


@pytest.fixture
def db_url(migrated_url: str) -> Iterator[str]:
    yield migrated_url
    engine = create_engine(migrated_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


def make_settings(db_url: str, data_dir: Path, **overrides) -> Settings:
    base = dict(database_url=db_url, data_dir=data_dir, runtime="none", dispatcher=False)
    base.update(overrides)
    return Settings(**base)


@asynccontextmanager
async def running_client(app, raise_app_exceptions: bool = True, **client_kwargs) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", **client_kwargs) as client:
            yield client


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "data")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from blendserve.api.app import create_app

    async with running_client(create_app(settings)) as c:
        yield c
