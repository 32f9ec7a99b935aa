"""End-to-end fixtures: a fresh, empty Postgres database per test (the server under test migrates it)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import pg_database


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    if os.environ.get("BLENDSERVE_SKIP_POSTGRES") == "1":
        pytest.skip("BLENDSERVE_SKIP_POSTGRES=1")
    yield from pg_database()
