from __future__ import annotations

import pytest

from tests.helpers import chat_line, to_jsonl, upload, upload_batch
from tests.spec import assert_matches

pytestmark = pytest.mark.anyio


async def test_create_retrieve_list_cancel(client):
    resp = await upload_batch(client, [chat_line(i) for i in range(4)], metadata={"job": "nightly"})
    assert resp.status_code == 200, resp.text
    batch = resp.json()
    assert_matches("Batch", batch)
    assert batch["id"].startswith("batch_") and batch["object"] == "batch"
    assert batch["status"] == "in_progress" and batch["model"] == "simulated"
    assert batch["request_counts"] == {"total": 4, "completed": 0, "failed": 0}
    assert batch["usage"]["input_tokens_details"] == {"cached_tokens": 0}
    assert batch["metadata"] == {"job": "nightly"}
    assert batch["expires_at"] - batch["created_at"] == 24 * 3600 and batch["in_progress_at"] >= batch["created_at"]

    got = (await client.get(f"/v1/batches/{batch['id']}")).json()
    assert got == batch
    listing = (await client.get("/v1/batches")).json()
    assert_matches("ListBatchesResponse", listing)
    assert [b["id"] for b in listing["data"]] == [batch["id"]] and listing["has_more"] is False

    cancelled = (await client.post(f"/v1/batches/{batch['id']}/cancel")).json()
    assert_matches("Batch", cancelled)
    # No dispatcher runs here, so nothing is in flight: the cancel completes at once.
    assert cancelled["status"] == "cancelled" and cancelled["cancelling_at"] and cancelled["cancelled_at"]
    assert cancelled["output_file_id"] is None and cancelled["errors"] is None and cancelled["failed_at"] is None
    errors = (await client.get(f"/v1/files/{cancelled['error_file_id']}/content")).text.splitlines()
    assert len(errors) == 4
    import json

    first = json.loads(errors[0])
    assert first["custom_id"] == "req-0" and first["response"] is None
    assert first["error"]["code"] == "batch_cancelled"

    again = await client.post(f"/v1/batches/{batch['id']}/cancel")  # as on OpenAI: not an error
    assert again.status_code == 200 and again.json() == cancelled


async def test_list_batches_pagination(client):
    ids = [(await upload_batch(client, [chat_line(0)])).json()["id"] for _ in range(5)]
    page = (await client.get("/v1/batches", params={"limit": 2})).json()
    assert [b["id"] for b in page["data"]] == ids[::-1][:2] and page["has_more"]
    seen = [b["id"] for b in page["data"]]
    while page["has_more"]:
        page = (await client.get("/v1/batches", params={"limit": 2, "after": page["last_id"]})).json()
        seen += [b["id"] for b in page["data"]]
    assert seen == ids[::-1]
    assert (await client.get("/v1/batches", params={"limit": 101})).status_code == 400


@pytest.mark.parametrize(
    "body, param",
    [
        ({"endpoint": "/v1/moderations"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"output_expires_after": {"anchor": "created_at", "seconds": 10}}, "output_expires_after.seconds"),
        ({"output_expires_after": {"anchor": "last_active_at", "seconds": 3600}}, "output_expires_after.anchor"),
    ],
)
async def test_create_rejects_bad_parameters(client, body, param):
    file = (await upload(client, to_jsonl([chat_line(0)]))).json()
    payload = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h", **body}
    resp = await client.post("/v1/batches", json=payload)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param
    assert_matches("ErrorResponse", resp.json())


async def test_create_needs_existing_batch_file(client):
    resp = await client.post(
        "/v1/batches",
        json={"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert resp.status_code == 404 and resp.json()["error"]["param"] == "input_file_id"
    other = (await upload(client, b"x", filename="a.txt", purpose="user_data")).json()
    resp = await client.post(
        "/v1/batches",
        json={"input_file_id": other["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_file_purpose"
    missing = await client.post("/v1/batches", json={"endpoint": "/v1/chat/completions"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_required_parameter"
    broken = await client.post("/v1/batches", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"


async def test_rows_persisted_one_per_line(client, settings):
    from sqlalchemy import select

    from blendserve.store.db import Database
    from blendserve.store.models import BatchRequest

    objs = [chat_line(i) for i in range(7)]
    raw = to_jsonl(objs[:3]) + b"\n   \n" + to_jsonl(objs[3:])  # blank lines are skipped, numbering kept
    file = (await upload(client, raw)).json()
    batch = (
        await client.post(
            "/v1/batches",
            json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        )
    ).json()
    assert batch["request_counts"]["total"] == 7
    db = Database(settings.resolved_database_url())
    with db.transaction() as s:
        rows = list(
            s.scalars(select(BatchRequest).where(BatchRequest.batch_id == batch["id"]).order_by(BatchRequest.line))
        )
    db.dispose()
    assert [r.custom_id for r in rows] == [f"req-{i}" for i in range(7)]
    assert [r.line for r in rows] == [1, 2, 3, 6, 7, 8, 9]
    assert all(r.status == "pending" for r in rows)


async def test_retrieve_and_list_match_the_pydantic_model(client, settings):
    """Retrieve and list build the wire dict directly (schemas.batch_dict, from a Core row); the pydantic
    BatchObject built from the ORM row is the reference: same keys, same order, same values."""
    from blendserve.api.schemas import BatchList, BatchObject, batch_object
    from blendserve.store.db import Database
    from blendserve.store.models import Batch

    ok = (await upload_batch(client, [chat_line(i) for i in range(3)], metadata={"job": "x", "ünï": "cödé"})).json()
    file = (await upload(client, to_jsonl([chat_line(0)]) + b"not json\n")).json()
    body = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    failed = (await client.post("/v1/batches", json=body)).json()
    assert failed["status"] == "failed" and failed["errors"]["data"]
    to_cancel = (await upload_batch(client, [chat_line(0)])).json()["id"]
    cancelled = (await client.post(f"/v1/batches/{to_cancel}/cancel")).json()
    db = Database(settings.resolved_database_url())
    try:
        with db.transaction() as s:
            reference = {b.id: batch_object(b).model_dump(mode="json") for b in s.query(Batch)}
    finally:
        db.dispose()
    assert set(reference) == {ok["id"], failed["id"], cancelled["id"]}
    for batch_id, expected in reference.items():
        got = await client.get(f"/v1/batches/{batch_id}")
        assert got.content.decode() == BatchObject(**expected).model_dump_json()  # byte for byte
    listing = (await client.get("/v1/batches", params={"limit": 2})).json()
    assert BatchList.model_validate(listing).model_dump(mode="json") == listing and listing["has_more"] is True
    assert listing["data"] == [reference[cancelled["id"]], reference[failed["id"]]]
    rest = (await client.get("/v1/batches", params={"after": listing["last_id"]})).json()
    assert [b["id"] for b in listing["data"] + rest["data"]] == [cancelled["id"], failed["id"], ok["id"]]
    assert rest["has_more"] is False and rest["first_id"] == rest["data"][0]["id"]
