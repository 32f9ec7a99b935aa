"""The CLI edge: `blendserve migrate` creates the schema through Alembic; `blendserve openapi` writes the spec."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import create_engine, inspect


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blendserve.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_migrate_creates_schema_at_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    done = _cli("migrate", "--database-url", url)
    assert done.returncode == 0, done.stderr
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"files", "batches", "batch_requests", "leases", "alembic_version"} <= tables


def test_openapi_command_writes_the_committed_schema(tmp_path):
    out = tmp_path / "openapi.json"
    done = _cli("openapi", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "/v1/batches" in json.loads(out.read_text())["paths"]


def test_bad_arguments_exit_nonzero():
    assert _cli("serve", "--runtime", "nope").returncode != 0
