"""Alembic migrations (script location). Applied by blendserve.store.migrate.upgrade()."""
