"""The bad-input catalogue: what a careless client or an attacker sends, case by case, on SQLite and Postgres.

Every case asserts the status and the OpenAI error envelope, that the server stays healthy, and, for lines,
that the good lines next to the bad one still complete. One server (dispatcher + simulated runtime) per
backend serves the whole module, as a real server would serve all of these one after another."""

from __future__ import annotations

import asyncio
import json

import pytest

from blendserve.core.dispatch.config import DispatchConfig
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.runtime.simulated import SimulatedRuntime
from tests.helpers import chat_line, to_jsonl, upload
from tests.spec import assert_matches
from tests.support import clean_tables, make_settings, running_client

pytestmark = pytest.mark.anyio
A, B = {"Authorization": "Bearer sk-a"}, {"Authorization": "Bearer sk-b"}
CHAT = "/v1/chat/completions"
MAX_REQUESTS = 40


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def api(migrated_url, tmp_path_factory):
    from blendserve.api.app import create_app

    settings = make_settings(
        migrated_url,
        tmp_path_factory.mktemp("catalogue"),
        dispatcher=True,
        api_keys="sk-a,sk-b",
        max_file_lines=MAX_REQUESTS,
        max_file_bytes=2 * 1024 * 1024,
        model_aliases={"alias-model": "simulated"},
    )
    runtime = SimulatedRuntime()
    app = create_app(settings, lambda db, blobs: Dispatcher(db, blobs, DispatchConfig.from_settings(settings), runtime))
    try:
        async with running_client(app, headers=A) as client:
            yield client
    finally:
        clean_tables(migrated_url)


async def _healthy(api) -> None:
    assert (await api.get("/health")).status_code == 200


def _envelope(resp, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert_matches("ErrorResponse", body)
    err = body["error"]
    assert err["message"] and err["type"] == "invalid_request_error"
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    assert resp.headers["x-request-id"].startswith("req_")
    return err


async def _batch(api, content: bytes, endpoint: str = CHAT, headers=None) -> dict:
    file = await upload(api, content, headers=headers)
    assert file.status_code == 200, file.text
    spec = {"input_file_id": file.json()["id"], "endpoint": endpoint, "completion_window": "24h"}
    resp = await api.post("/v1/batches", json=spec, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _finished(api, batch_id: str, headers=None, timeout: float = 60.0) -> dict:
    for _ in range(int(timeout / 0.05)):
        batch = (await api.get(f"/v1/batches/{batch_id}", headers=headers)).json()
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch stuck: {batch}")


async def _lines(api, file_id: str | None) -> list[dict]:
    if not file_id:
        return []
    return [json.loads(x) for x in (await api.get(f"/v1/files/{file_id}/content")).text.splitlines()]


def _line(i: int, url: str = CHAT, **body) -> dict:
    base = chat_line(i)
    if url == "/v1/completions":
        base["body"] = {"model": "simulated", "prompt": f"Say {i}.", "max_tokens": 8}
    elif url == "/v1/embeddings":
        base["body"] = {"model": "simulated", "input": f"text {i}"}
    base["url"] = url
    base["body"].update(body)
    return base


def _drop(name: str) -> dict:
    line = _line(1)
    del line["body"][name]
    return line


# ---- 1. a bad field fails its line alone; the lines around it complete -----------------------------------
LINE_CASES = [
    ({"temperature": "hot"}, "invalid_type", "temperature"),
    ({"temperature": 5}, "decimal_above_max_value", "temperature"),
    ({"temperature": -1}, "decimal_below_min_value", "temperature"),
    ({"temperature": True}, "invalid_type", "temperature"),
    ({"temperature": 1e308}, "decimal_above_max_value", "temperature"),
    ({"temperature": [1]}, "invalid_type", "temperature"),
    ({"top_p": "x"}, "invalid_type", "top_p"),
    ({"top_p": 1.5}, "decimal_above_max_value", "top_p"),
    ({"stop": 5}, "invalid_type", "stop"),
    ({"stop": [1, 2]}, "invalid_type", "stop"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "array_above_max_length", "stop"),
    ({"stop": {"a": 1}}, "invalid_type", "stop"),
    ({"max_tokens": "10"}, "invalid_type", "max_tokens"),
    ({"max_tokens": 0}, "integer_below_min_value", "max_tokens"),
    ({"max_tokens": 1.5}, "invalid_type", "max_tokens"),
    ({"max_tokens": 10**9}, "context_length_exceeded", "messages"),
    ({"max_completion_tokens": -3}, "integer_below_min_value", "max_completion_tokens"),
    ({"n": "2"}, "invalid_type", "n"),
    ({"n": 0}, "integer_below_min_value", "n"),
    ({"n": 1000}, "integer_above_max_value", "n"),
    ({"seed": "s"}, "invalid_type", "seed"),
    ({"seed": 1.5}, "invalid_type", "seed"),
    ({"frequency_penalty": "a"}, "invalid_type", "frequency_penalty"),
    ({"presence_penalty": 3}, "decimal_above_max_value", "presence_penalty"),
    ({"logprobs": "yes"}, "invalid_type", "logprobs"),
    ({"top_logprobs": 50}, "integer_above_max_value", "top_logprobs"),
    ({"messages": "hi"}, "invalid_type", "messages"),
    ({"messages": []}, "empty_array", "messages"),
    ({"messages": [5]}, "invalid_type", "messages[0]"),
    ({"messages": [{"content": "x"}]}, "invalid_type", "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "invalid_type", "messages[0].content"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "unsupported_parameter", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "unsupported_parameter", "messages"),
    ({"messages": [{"role": "user", "content": "x" * 40000}]}, "context_length_exceeded", "messages"),
    ({"tools": [{}]}, "unsupported_parameter", "tools"),
    ({"user": 5}, "invalid_type", "user"),
    ({"metadata": "x"}, "invalid_type", "metadata"),
    ({"store": "yes"}, "invalid_type", "store"),
    ({"stream_options": 5}, "invalid_type", "stream_options"),
    ({"service_tier": 5}, "invalid_type", "service_tier"),
    ({"parallel_tool_calls": "x"}, "invalid_type", "parallel_tool_calls"),
]
OTHER_ENDPOINT_CASES = [
    ("/v1/completions", {"prompt": 5}, "invalid_type", "prompt"),
    ("/v1/completions", {"prompt": []}, "invalid_type", "prompt"),
    ("/v1/completions", {"prompt": [["a"]]}, "unsupported_parameter", "prompt"),
    ("/v1/completions", {"echo": "x"}, "invalid_type", "echo"),
    ("/v1/completions", {"logprobs": 10}, "integer_above_max_value", "logprobs"),
    ("/v1/embeddings", {"input": 5}, "invalid_type", "input"),
    ("/v1/embeddings", {"input": [-1]}, "unsupported_parameter", "input"),
    ("/v1/embeddings", {"encoding_format": "hex"}, "unsupported_parameter", "encoding_format"),
    ("/v1/embeddings", {"dimensions": 0}, "integer_below_min_value", "dimensions"),
]


async def _one_bad_line(api, url: str, bad_body: dict, code: str, param: str) -> None:
    lines = [_line(0, url), _line(1, url, **bad_body), _line(2, url)]
    created = await _batch(api, to_jsonl(lines), endpoint=url)
    done = await _finished(api, created["id"])
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    out, err = await _lines(api, done["output_file_id"]), await _lines(api, done["error_file_id"])
    assert sorted(x["custom_id"] for x in out) == ["req-0", "req-2"]
    assert [x["custom_id"] for x in err] == ["req-1"] and err[0]["response"]["status_code"] == 400
    error = err[0]["response"]["body"]["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error"), error
    await _healthy(api)


@pytest.mark.parametrize("bad_body, code, param", LINE_CASES, ids=[f"{c}:{p}" for _, c, p in LINE_CASES])
async def test_bad_field_fails_its_line_alone(api, bad_body, code, param):
    await _one_bad_line(api, CHAT, bad_body, code, param)


@pytest.mark.parametrize("url, bad_body, code, param", OTHER_ENDPOINT_CASES)
async def test_bad_field_other_endpoints(api, url, bad_body, code, param):
    await _one_bad_line(api, url, bad_body, code, param)


NULL_FIELDS = ["temperature", "top_p", "stop", "max_tokens", "n", "seed", "frequency_penalty", "logprobs", "user"]


@pytest.mark.parametrize("name", NULL_FIELDS)
async def test_null_means_default(api, name):
    created = await _batch(api, to_jsonl([_line(0), _line(1, **{name: None})]))
    done = await _finished(api, created["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    await _healthy(api)


# ---- 2. a file that is not a batch fails the batch at validation, with the line and the param -------------
def _raw(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


FILE_CASES = [
    ("not-json", b"{nope\n", "invalid_json_line", None),
    ("not-utf8", b'{"custom_id": "\xff"}\n', "invalid_json_line", None),
    ("array", b"[1, 2]\n", "invalid_request", None),
    ("string", b'"hello"\n', "invalid_request", None),
    ("null", b"null\n", "invalid_request", None),
    ("deep-nesting", b"[" * 5000 + b"]" * 5000 + b"\n", "invalid_json_line", None),
    ("no-custom-id", _raw({k: v for k, v in _line(1).items() if k != "custom_id"}), None, "custom_id"),
    ("custom-id-number", _raw({**_line(1), "custom_id": 5}), "invalid_custom_id", "custom_id"),
    ("custom-id-empty", _raw({**_line(1), "custom_id": ""}), "invalid_custom_id", "custom_id"),
    ("custom-id-513", _raw({**_line(1), "custom_id": "c" * 513}), "invalid_custom_id", "custom_id"),
    ("custom-id-1mb", _raw({**_line(1), "custom_id": "c" * 1_000_000}), "invalid_custom_id", "custom_id"),
    ("duplicate-custom-id", _raw(_line(0)), "duplicate_custom_id", "custom_id"),
    ("method-get", _raw({**_line(1), "method": "GET"}), "invalid_method", "method"),
    ("url-other-endpoint", _raw({**_line(1), "url": "/v1/completions"}), "invalid_url", "url"),
    ("url-number", _raw({**_line(1), "url": 5}), "invalid_url", "url"),
    ("body-string", _raw({**_line(1), "body": "x"}), "invalid_request", "body"),
    ("no-model", _raw(_drop("model")), "invalid_request", "body.model"),
    ("model-null", _raw(_line(1, model=None)), "invalid_request", "body.model"),
    ("model-number", _raw(_line(1, model=5)), "invalid_request", "body.model"),
    ("model-300-chars", _raw(_line(1, model="m" * 300)), "invalid_value", "body.model"),
    ("model-10k-chars", _raw(_line(1, model="m" * 10_000)), "invalid_value", "body.model"),
    ("model-unknown", _raw(_line(1, model="gpt-unknown")), "model_not_found", "body.model"),
    ("model-mismatch", _raw(_line(1, model="alias-model")), "mismatched_model", "body.model"),
    ("stream-true", _raw(_line(1, stream=True)), "streaming_unsupported", "body.stream"),
    ("stream-string", _raw(_line(1, stream="yes")), "streaming_unsupported", "body.stream"),
    ("no-messages", _raw(_drop("messages")), "invalid_request", "body.messages"),
    ("messages-null", _raw(_line(1, messages=None)), "invalid_request", "body.messages"),
]


@pytest.mark.parametrize("name, bad_line, code, param", FILE_CASES, ids=[c[0] for c in FILE_CASES])
async def test_bad_file_fails_the_batch(api, name, bad_line, code, param):
    batch = await _batch(api, _raw(_line(0)) + bad_line + _raw(_line(2)))
    assert_matches("Batch", batch)
    assert batch["status"] == "failed" and batch["failed_at"] and batch["request_counts"]["total"] == 0
    error = batch["errors"]["data"][0]
    assert error["line"] == 2 and error["message"]
    assert code is None or error["code"] == code, error
    assert param is None or error["param"] == param, error
    await _healthy(api)


@pytest.mark.parametrize(
    "content, code",
    [(b"", "empty_file"), (b"\n \n\r\n", "empty_file"), (to_jsonl([_line(i) for i in range(41)]), "too_many_tasks")],
    ids=["empty", "blank-lines-only", "too-many-requests"],
)
async def test_empty_or_too_large_files(api, content, code):
    batch = await _batch(api, content)
    assert batch["status"] == "failed" and batch["errors"]["data"][0]["code"] == code
    await _healthy(api)


# ---- 3. line endings and blank lines a hand-edited file has are fine ----------------------------------------
GOOD = [_raw(_line(i)) for i in range(3)]
FORMAT_CASES = {
    "utf8-bom": b"\xef\xbb\xbf" + b"".join(GOOD),
    "crlf": b"".join(g.replace(b"\n", b"\r\n") for g in GOOD),
    "blank-lines-between": b"\n".join(GOOD) + b"\n\n",
    "no-trailing-newline": b"".join(GOOD).rstrip(b"\n"),
    "whitespace-lines": b"   \n".join(GOOD),
    "max-requests": to_jsonl([_line(i) for i in range(MAX_REQUESTS)]),
}


@pytest.mark.parametrize("name", list(FORMAT_CASES))
async def test_tolerated_file_formats(api, name):
    content = FORMAT_CASES[name]
    expected = MAX_REQUESTS if name == "max-requests" else 3
    done = await _finished(api, (await _batch(api, content))["id"])
    assert done["status"] == "completed" and done["request_counts"] == {
        "total": expected,
        "completed": expected,
        "failed": 0,
    }


# ---- 4. the HTTP API: bad parameters, limits, other keys' objects, pagination abuse --------------------------
async def _file(api, headers=None, content: bytes | None = None) -> str:
    resp = await upload(api, content or to_jsonl([_line(0)]), headers=headers)
    return resp.json()["id"]


def _create(file_id: str, **extra) -> dict:
    return {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h", **extra}


async def _upload_case(api, filename="in.jsonl", purpose="batch", content=b"{}\n", data=None):
    return await api.post(
        "/v1/files", files={"file": (filename, content, "application/jsonl")}, data={"purpose": purpose, **(data or {})}
    )


UPLOAD_CASES = [
    ("filename-600", dict(filename="f" * 594 + ".jsonl"), 400, "invalid_value", "file"),
    ("purpose-unknown", dict(purpose="nope"), 400, "invalid_value", "purpose"),
    ("batch-not-jsonl", dict(filename="in.txt"), 400, "invalid_file_format", "file"),
    ("too-large", dict(content=b"x" * (2 * 1024 * 1024 + 1)), 400, "file_too_large", "file"),
    (
        "expiry-too-short",
        dict(data={"expires_after[anchor]": "created_at", "expires_after[seconds]": "10"}),
        400,
        "invalid_value",
        "expires_after",
    ),
    ("expiry-not-a-number", dict(data={"expires_after[seconds]": "soon"}), 400, "invalid_value", None),
]


@pytest.mark.parametrize("name, kwargs, status, code, param", UPLOAD_CASES, ids=[c[0] for c in UPLOAD_CASES])
async def test_bad_uploads(api, name, kwargs, status, code, param):
    _envelope(await _upload_case(api, **kwargs), status, code, param)
    await _healthy(api)


async def test_upload_without_file_or_purpose(api):
    _envelope(await api.post("/v1/files", data={"purpose": "batch"}), 400, "missing_required_parameter", "file")
    only_file = await api.post("/v1/files", files={"file": ("in.jsonl", b"{}\n", "application/jsonl")})
    _envelope(only_file, 400, "missing_required_parameter", "purpose")


CREATE_CASES = [
    ("endpoint", {"endpoint": "/v1/moderations"}, 400, "invalid_value", "endpoint"),
    ("window", {"completion_window": "48h"}, 400, "invalid_value", "completion_window"),
    ("metadata-17-keys", {"metadata": {f"k{i}": "v" for i in range(17)}}, 400, "invalid_value", "metadata"),
    ("metadata-key-65", {"metadata": {"k" * 65: "v"}}, 400, "invalid_value", "metadata"),
    ("metadata-value-513", {"metadata": {"k": "v" * 513}}, 400, "invalid_value", "metadata.k"),
    ("metadata-value-number", {"metadata": {"k": 5}}, 400, "invalid_value", "metadata.k"),
    ("metadata-list", {"metadata": ["a"]}, 400, "invalid_value", "metadata"),
    (
        "output-expiry-10s",
        {"output_expires_after": {"anchor": "created_at", "seconds": 10}},
        400,
        "invalid_value",
        "output_expires_after.seconds",
    ),
    (
        "output-expiry-text",
        {"output_expires_after": {"anchor": "created_at", "seconds": "x"}},
        400,
        "invalid_value",
        "output_expires_after.seconds",
    ),
    ("input-file-missing", {"input_file_id": "file-nope"}, 404, "file_not_found", "input_file_id"),
    ("input-file-10k", {"input_file_id": "f" * 10_000}, 404, "file_not_found", "input_file_id"),
    ("input-file-number", {"input_file_id": 5}, 400, "invalid_value", "input_file_id"),
]


@pytest.mark.parametrize("name, extra, status, code, param", CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
async def test_bad_batch_creation(api, name, extra, status, code, param):
    _envelope(await api.post("/v1/batches", json=_create(await _file(api), **extra)), status, code, param)
    await _healthy(api)


async def test_bad_request_bodies(api):
    _envelope(await api.post("/v1/batches", content=b"{nope", headers={"content-type": "application/json"}), 400)
    _envelope(await api.post("/v1/batches", json=["a"]), 400)
    _envelope(await api.post("/v1/batches", json={"endpoint": CHAT}), 400, "missing_required_parameter")
    user_file = (await _upload_case(api, filename="a.txt", purpose="user_data")).json()["id"]
    _envelope(await api.post("/v1/batches", json=_create(user_file)), 400, "invalid_file_purpose", "input_file_id")


async def test_other_keys_objects_are_invisible(api):
    file_a = await _file(api)
    batch_a = (await api.post("/v1/batches", json=_create(file_a))).json()
    for method, path in [
        ("get", f"/v1/files/{file_a}"),
        ("get", f"/v1/files/{file_a}/content"),
        ("delete", f"/v1/files/{file_a}"),
        ("get", f"/v1/batches/{batch_a['id']}"),
        ("post", f"/v1/batches/{batch_a['id']}/cancel"),
        ("get", f"/v1/batches/{batch_a['id']}/webhook_deliveries"),
    ]:
        _envelope(await api.request(method, path, headers=B), 404)
    _envelope(await api.post("/v1/batches", json=_create(file_a), headers=B), 404, "file_not_found")
    assert batch_a["id"] not in [b["id"] for b in (await api.get("/v1/batches", headers=B)).json()["data"]]
    assert file_a not in [f["id"] for f in (await api.get("/v1/files", headers=B)).json()["data"]]
    theirs = (await api.get("/v1/batches", params={"after": batch_a["id"]}, headers=B)).json()
    assert all(b["id"] != batch_a["id"] for b in theirs["data"])
    assert (await api.get(f"/v1/files/{file_a}")).status_code == 200  # still there for its owner


AUTH_CASES = [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
    ({"Authorization": "Basic c2stYQ=="}, "missing_api_key"),
    ({"Authorization": "Bearer "}, "missing_api_key"),
]


@pytest.mark.parametrize("headers, code", AUTH_CASES, ids=[c for _, c in AUTH_CASES])
async def test_bad_credentials(api, headers, code):
    resp = await api.get("/v1/batches", headers={"Authorization": ""} | headers)
    _envelope(resp, 401, code)


PAGE_CASES = [
    ("/v1/batches", {"limit": 0}, 400),
    ("/v1/batches", {"limit": 101}, 400),
    ("/v1/batches", {"limit": "abc"}, 400),
    ("/v1/batches", {"limit": -5}, 400),
    ("/v1/batches", {"after": "batch_nope"}, 200),
    ("/v1/batches", {"after": "b" * 10_000}, 200),
    ("/v1/files", {"limit": 10_001}, 400),
    ("/v1/files", {"order": "sideways"}, 400),
    ("/v1/files", {"after": "' OR 1=1 --"}, 200),
    ("/v1/files", {"purpose": "x" * 5000}, 200),
]


@pytest.mark.parametrize("path, params, status", PAGE_CASES)
async def test_pagination_abuse(api, path, params, status):
    resp = await api.get(path, params=params)
    if status == 200:
        assert resp.status_code == 200 and resp.json()["object"] == "list"
    else:
        _envelope(resp, status, param=next(iter(params)))


async def test_ids_and_routes_nobody_has(api):
    _envelope(await api.get("/v1/batches/" + "b" * 5000), 404, "batch_not_found")
    _envelope(await api.get("/v1/files/" + "f" * 5000), 404, "file_not_found")
    _envelope(await api.post("/v1/batches/batch_nope/cancel"), 404)
    _envelope(await api.get("/v1/nothing-here"), 404, "unknown_url")
    _envelope(await api.put("/v1/batches"), 405)


async def test_cancel_of_a_finished_batch_is_a_conflict(api):
    failed = await _batch(api, b"{nope\n")
    resp = await api.post(f"/v1/batches/{failed['id']}/cancel")
    _envelope(resp, 409)
    assert resp.json()["error"]["message"] == "Cannot cancel a batch with status 'failed'."
