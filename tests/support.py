"""Test support shared by the suite: settings, an app's client with its lifespan running, throwaway Postgres
databases. Fixtures live in conftest.py; plain helpers live here so tests import them as a module."""

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

PG_ADMIN_URL = os.environ.get("BLENDSERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_database() -> Iterator[str]:
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


def clean_tables(url: str) -> None:
    """Delete every row of every table of the models (children first), leaving the migrated schema."""
    from blendserve.store.models import Base

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
