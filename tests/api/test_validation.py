"""Input-file validation like OpenAI's: a bad file fails the batch with errors.data {code, message, line}."""

from __future__ import annotations

import json

import pytest

from tests.helpers import chat_line, to_jsonl, upload
from tests.spec import assert_matches

pytestmark = pytest.mark.anyio


def _line(obj) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def _without(key):
    obj = chat_line(1)
    del obj[key]
    return obj


CASES = [
    ("invalid_json_line", b'{"custom_id": "a", bad json\n', 2),
    ("missing_required_parameter", _line(_without("custom_id")), 2),
    ("missing_required_parameter", _line(_without("method")), 2),
    ("missing_required_parameter", _line(_without("url")), 2),
    ("missing_required_parameter", _line(_without("body")), 2),
    ("duplicate_custom_id", _line(chat_line(0)), 2),
    ("invalid_url", _line({**chat_line(1), "url": "/v1/completions"}), 2),
    ("invalid_method", _line({**chat_line(1), "method": "GET"}), 2),
    ("invalid_request", _line({**chat_line(1), "body": {"messages": []}}), 2),
    ("mismatched_model", _line(chat_line(1, model="other-model")), 2),
    ("invalid_json_line", b'{"custom_id": "\xff\xfe"}\n', 2),
    ("invalid_request", b"[1, 2]\n", 2),
]


async def _create(client, content: bytes):
    file = (await upload(client, content)).json()
    resp = await client.post(
        "/v1/batches",
        json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("code, bad_line, line_no", CASES)
async def test_bad_line_fails_batch(client, code, bad_line, line_no):
    batch = await _create(client, _line(chat_line(0)) + bad_line + _line(chat_line(2)))
    assert_matches("Batch", batch)
    assert batch["status"] == "failed" and batch["failed_at"]
    assert batch["request_counts"]["total"] == 0
    errors = batch["errors"]["data"]
    assert errors[0]["code"] == code and errors[0]["line"] == line_no and errors[0]["message"]
    again = (await client.get(f"/v1/batches/{batch['id']}")).json()
    assert again["status"] == "failed" and again["errors"] == batch["errors"]


async def test_empty_file(client):
    batch = await _create(client, b"\n\n")
    assert batch["status"] == "failed" and batch["errors"]["data"][0]["code"] == "empty_file"


async def test_every_error_is_reported_and_no_rows_kept(client, settings):
    from sqlalchemy import func, select

    from blendserve.store.db import Database
    from blendserve.store.models import BatchRequest

    content = to_jsonl([chat_line(0), chat_line(0), chat_line(1)]) + b"nope\n" + to_jsonl([chat_line(5)])
    batch = await _create(client, content)
    assert [(e["code"], e["line"]) for e in batch["errors"]["data"]] == [
        ("duplicate_custom_id", 2),
        ("invalid_json_line", 4),
    ]
    db = Database(settings.resolved_database_url())
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(BatchRequest)) == 0
    db.dispose()


def test_line_limit_in_validator():
    from blendserve.core.input_validation import FileVerdict, validate_lines

    verdict = FileVerdict("/v1/chat/completions", max_lines=2, max_errors=10)
    rows = list(validate_lines(to_jsonl([chat_line(i) for i in range(3)]).splitlines(True), verdict))
    assert len(rows) == 2 and verdict.errors[0].code == "too_many_tasks" and verdict.errors[0].line == 3


def test_errors_are_capped_but_counted():
    from blendserve.core.input_validation import FileVerdict, validate_lines

    verdict = FileVerdict("/v1/chat/completions", max_lines=100, max_errors=3)
    list(validate_lines([b"bad\n"] * 10, verdict))
    assert verdict.error_count == 10 and len(verdict.errors) == 3


async def test_startup_recovery_never_aborts_the_server(settings, monkeypatch):
    """A batch left in `validating` whose intake fails again at restart is failed with a reason; the server
    starts and serves (before: recovery re-raised and the server exited on every start)."""
    from blendserve.api.app import create_app
    from blendserve.store import repositories
    from tests.conftest import running_client

    async with running_client(create_app(settings)) as c:
        file = (await upload(c, to_jsonl([chat_line(0)]))).json()
    db_url = settings.resolved_database_url()
    from blendserve.core import ids
    from blendserve.store.db import Database
    from blendserve.store.models import Batch

    db = Database(db_url)
    with db.transaction() as s:
        s.add(
            Batch(
                id="batch_stuck",
                owner="public",
                endpoint="/v1/chat/completions",
                input_file_id=file["id"],
                completion_window="24h",
                status="validating",
                created_at=ids.now(),
                created_ns=ids.now_ns(),
                expires_at=ids.now() + 86400,
                total=0,
                completed=0,
                failed=0,
                input_tokens=0,
                cached_tokens=0,
                output_tokens=0,
                reasoning_tokens=0,
            )
        )
    db.dispose()

    def broken_insert(*_args, **_kwargs):
        raise RuntimeError("the store refused the rows")

    monkeypatch.setattr(repositories, "insert_requests", broken_insert)
    async with running_client(create_app(settings)) as c:
        assert (await c.get("/health")).status_code == 200
        batch = (await c.get("/v1/batches/batch_stuck")).json()
    assert batch["status"] == "failed" and batch["errors"]["data"][0]["code"] == "internal_error"
