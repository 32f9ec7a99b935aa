"""Alembic environment: the URL comes from the Config the caller built (store.migrate), never from a file."""

from __future__ import annotations

from alembic import context

from blendserve.store.db import is_sqlite, make_engine, normalize_url
from blendserve.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url, "alembic needs sqlalchemy.url (store/migrate.py sets it)"
    url = normalize_url(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(str(connection.engine.url)),  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `blendserve migrate`")
run_migrations_online()
