from __future__ import annotations

import pytest

from tests.helpers import chat_line, upload, upload_batch
from tests.spec import assert_matches
from tests.support import make_settings, running_client

pytestmark = pytest.mark.anyio
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


@pytest.fixture
async def keyed(db_url, tmp_path):
    from blendserve.api.app import create_app

    settings = make_settings(db_url, tmp_path / "d", api_keys="key-a,key-b")
    async with running_client(create_app(settings)) as c:
        yield c


async def test_missing_and_wrong_key_get_401(keyed):
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic key-a"}):
        resp = await keyed.get("/v1/files", headers=headers)
        assert resp.status_code == 401
        assert_matches("ErrorResponse", resp.json())
        assert resp.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
    live = await keyed.get("/healthz")  # liveness stays open, and says nothing about tenants or the host
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    for path in ("/health", "/metrics", "/dashboard/state"):
        assert (await keyed.get(path)).status_code == 401, path
        assert (await keyed.get(path, headers=A)).status_code == 200, path


async def test_objects_belong_to_their_key(keyed):
    file = (await upload(keyed, b'{"a": 1}\n', headers=A)).json()
    batch = (await upload_batch(keyed, [chat_line(0)], headers=A)).json()
    for path in (f"/v1/files/{file['id']}", f"/v1/files/{file['id']}/content", f"/v1/batches/{batch['id']}"):
        assert (await keyed.get(path, headers=B)).status_code == 404
        assert (await keyed.get(path, headers=A)).status_code == 200
    assert (await keyed.delete(f"/v1/files/{file['id']}", headers=B)).status_code == 404
    assert (await keyed.post(f"/v1/batches/{batch['id']}/cancel", headers=B)).status_code == 404
    on_foreign = await keyed.post(
        "/v1/batches",
        headers=B,
        json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert on_foreign.status_code == 404
    assert (await keyed.get("/v1/files", headers=B)).json()["data"] == []
    assert (await keyed.get("/v1/batches", headers=B)).json()["data"] == []
    assert len((await keyed.get("/v1/files", headers=A)).json()["data"]) == 2
    # B cannot page through A's list by naming A's ids as cursors either.
    assert (await keyed.get("/v1/batches", headers=B, params={"after": batch["id"]})).json()["data"] == []
