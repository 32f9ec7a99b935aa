from __future__ import annotations

import pytest

from tests.helpers import chat_line, to_jsonl, upload
from tests.spec import assert_matches

pytestmark = pytest.mark.anyio


async def test_upload_retrieve_content_delete(client):
    content = to_jsonl([chat_line(i) for i in range(3)])
    resp = await upload(client, content)
    assert resp.status_code == 200, resp.text
    file = resp.json()
    assert_matches("OpenAIFile", file)
    assert file["id"].startswith("file-") and file["bytes"] == len(content)
    assert file["purpose"] == "batch" and file["filename"] == "input.jsonl" and file["status"] == "processed"
    assert file["expires_at"] - file["created_at"] == 30 * 24 * 3600

    got = (await client.get(f"/v1/files/{file['id']}")).json()
    assert got == file
    body = await client.get(f"/v1/files/{file['id']}/content")
    assert body.status_code == 200 and body.content == content

    deleted = (await client.delete(f"/v1/files/{file['id']}")).json()
    assert_matches("DeleteFileResponse", deleted)
    assert deleted == {"id": file["id"], "object": "file", "deleted": True}
    missing = await client.get(f"/v1/files/{file['id']}")
    assert missing.status_code == 404
    assert_matches("ErrorResponse", missing.json())
    assert (await client.get(f"/v1/files/{file['id']}/content")).status_code == 404
    assert (await client.delete(f"/v1/files/{file['id']}")).status_code == 404


async def test_other_purposes_are_stored(client):
    resp = await upload(client, b"hello", filename="notes.txt", purpose="user_data")
    assert resp.status_code == 200
    assert resp.json()["purpose"] == "user_data" and resp.json()["expires_at"] is None


async def test_bad_purpose_and_format(client):
    bad = await upload(client, b"{}", purpose="nonsense")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "purpose"
    not_jsonl = await upload(client, b"{}", filename="x.csv")
    assert not_jsonl.status_code == 400 and not_jsonl.json()["error"]["code"] == "invalid_file_format"
    no_file = await client.post("/v1/files", data={"purpose": "batch"})
    assert no_file.status_code == 400
    assert no_file.json()["error"]["code"] == "missing_required_parameter"
    assert no_file.json()["error"]["param"] == "file"


async def test_list_pagination_order_and_purpose(client):
    ids = []
    for i in range(5):
        ids.append((await upload(client, to_jsonl([chat_line(i)]), filename=f"f{i}.jsonl")).json()["id"])
    await upload(client, b"x", filename="a.txt", purpose="assistants")

    page = (await client.get("/v1/files", params={"purpose": "batch", "limit": 2, "order": "asc"})).json()
    assert_matches("ListFilesResponse", page)
    assert [f["id"] for f in page["data"]] == ids[:2] and page["has_more"] is True
    assert page["first_id"] == ids[0] and page["last_id"] == ids[1]
    seen = [f["id"] for f in page["data"]]
    while page["has_more"]:
        page = (
            await client.get(
                "/v1/files", params={"purpose": "batch", "limit": 2, "order": "asc", "after": page["last_id"]}
            )
        ).json()
        seen += [f["id"] for f in page["data"]]
    assert seen == ids
    desc = (await client.get("/v1/files", params={"purpose": "batch"})).json()
    assert [f["id"] for f in desc["data"]] == ids[::-1]
    everything = (await client.get("/v1/files")).json()
    assert len(everything["data"]) == 6
    bad = await client.get("/v1/files", params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


async def test_size_and_request_limits(db_url, tmp_path):
    from blendserve.api.app import create_app
    from tests.support import make_settings, running_client

    settings = make_settings(db_url, tmp_path / "d", max_file_bytes=3 * 1024 * 1024, max_file_lines=3)
    async with running_client(create_app(settings)) as c:
        too_big = await upload(c, b"x" * (3 * 1024 * 1024 + 1), filename="big.txt", purpose="user_data")
        assert too_big.status_code == 400 and too_big.json()["error"]["code"] == "file_too_large"
        # The request limit counts requests, not lines, and is checked when a batch is made of the file.
        too_many = await upload(c, to_jsonl([chat_line(i) for i in range(4)]))
        blank_lines = await upload(c, b"\n\n".join(to_jsonl([chat_line(i)]) for i in range(3)) + b"\n\n")
        assert too_many.status_code == 200 and blank_lines.status_code == 200
        spec = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
        failed = (await c.post("/v1/batches", json={"input_file_id": too_many.json()["id"], **spec})).json()
        assert failed["status"] == "failed" and failed["errors"]["data"][0]["code"] == "too_many_tasks"
        ok = (await c.post("/v1/batches", json={"input_file_id": blank_lines.json()["id"], **spec})).json()
        assert ok["status"] == "in_progress" and ok["request_counts"]["total"] == 3
        listed = (await c.get("/v1/files")).json()["data"]
        assert sorted(f["id"] for f in listed) == sorted([too_many.json()["id"], blank_lines.json()["id"]])
    leftovers = sorted(p.name for p in (tmp_path / "d" / "blobs").iterdir())
    assert leftovers == sorted(f["id"] for f in listed)  # rejected uploads leave no bytes behind


async def test_expires_after(client):
    resp = await client.post(
        "/v1/files",
        files={"file": ("a.jsonl", b"{}\n")},
        data={"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"},
    )
    assert resp.status_code == 200
    assert resp.json()["expires_at"] - resp.json()["created_at"] == 3600
    bad = await client.post(
        "/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch", "expires_after[seconds]": "10"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "expires_after"


async def test_expired_files_are_gone_and_swept(client, settings):
    from sqlalchemy import update

    from blendserve.core.files import delete_expired
    from blendserve.store.blobs import BlobStore
    from blendserve.store.db import Database
    from blendserve.store.models import File

    keep = (await upload(client, b"{}\n", filename="keep.jsonl")).json()
    old = (await upload(client, b"{}\n", filename="old.jsonl")).json()
    db = Database(settings.resolved_database_url())
    with db.transaction() as s:
        s.execute(update(File).where(File.id == old["id"]).values(expires_at=1))
    assert (await client.get(f"/v1/files/{old['id']}")).status_code == 404
    assert [f["id"] for f in (await client.get("/v1/files")).json()["data"]] == [keep["id"]]
    batch = await client.post(
        "/v1/batches", json={"input_file_id": old["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    )
    assert batch.status_code == 404
    blobs = BlobStore(settings.blob_dir)
    assert blobs.exists(old["id"])
    assert delete_expired(db, blobs) == 1
    assert not blobs.exists(old["id"]) and blobs.exists(keep["id"])
    db.dispose()
