"""The SGLang stand-in behaves as SGLang 0.5.23 does where our adapters meet it (file:line in tests/fakes/sglang)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e.server import free_port
from tests.fakes.sglang_standin import SKIP_REASON, StandinServer, api_types, load_tokenizer

needs_contract = pytest.mark.skipif(api_types() is None, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def standin():
    with StandinServer(free_port(), model_name="m", kv_capacity=4096, dp_size=2, page_size=4, context_len=2048) as s:
        yield s


def _gen(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/generate", json=body, timeout=30)


@needs_contract
def test_contract_gate_is_sglangs_own_codec(standin):
    ok = _gen(
        standin.url,
        {
            "input_ids": [[5, 6, 7], [5, 6, 8]],
            "rid": ["a", "b"],
            "foo": 1,
            "sampling_params": [{"max_new_tokens": 8, "temperature": 0}, {"max_new_tokens": 4}],
        },
    )
    assert ok.status_code == 200 and [x["meta_info"]["id"] for x in ok.json()] == ["a", "b"]
    cases = [
        ({"max_tokens": 8}, "unknown field `max_tokens`"),
        ({"seed": 1}, "unknown field `seed`"),
        ({"sampling_seed": 1.5}, "invalid type: floating point `1.5`"),
        ({"sampling_seed": True}, "invalid type: boolean `true`"),
        ({"temperature": "hot"}, 'invalid type: string "hot"'),
    ]
    for params, message in cases:
        resp = _gen(standin.url, {"input_ids": [1, 2], "sampling_params": params})
        assert resp.status_code == 400 and message in resp.json()["error"], (params, resp.text)


def test_sampling_verify_and_length_limits(standin):
    for params, message in [({"top_p": 0.0}, "top_p must be in (0, 1]"), ({"temperature": -1}, "temperature must")]:
        resp = _gen(standin.url, {"input_ids": [1, 2], "sampling_params": params})
        assert resp.status_code == 400 and message in resp.json()["error"]["message"]
    info = httpx.get(standin.url + "/server_info").json()
    limit = info["max_req_input_len"]
    assert limit == min(2048 - 1, 4096 - 1) - 5  # srt/managers/tp_worker.py:568-572
    over = _gen(standin.url, {"input_ids": [7] * limit, "sampling_params": {"max_new_tokens": 1}})
    assert over.status_code == 400 and "exceeds the maximum allowed length" in over.json()["error"]["message"]
    under = _gen(standin.url, {"input_ids": [7] * (limit - 1), "sampling_params": {"max_new_tokens": 1}})
    assert under.status_code == 200


def test_server_info_reports_each_dp_rank(standin):
    info = httpx.get(standin.url + "/server_info").json()
    assert info["max_total_num_tokens"] == 4096 and info["dp_size"] == 2
    assert [s["memory_usage"]["token_capacity"] for s in info["internal_states"]] == [4096, 4096]


def test_cached_tokens_page_aligned_below_input_len():
    with StandinServer(free_port(), kv_capacity=64, page_size=4, context_len=512) as s:
        first = _gen(s.url, {"input_ids": list(range(10, 22)), "sampling_params": {"max_new_tokens": 1}}).json()
        again = _gen(s.url, {"input_ids": list(range(10, 22)), "sampling_params": {"max_new_tokens": 1}}).json()
        longer = _gen(s.url, {"input_ids": list(range(10, 29)), "sampling_params": {"max_new_tokens": 1}}).json()
        assert first["meta_info"]["cached_tokens"] == 0
        assert again["meta_info"]["cached_tokens"] == 8  # 12 tokens: at most 11 match, in whole pages of 4
        assert longer["meta_info"]["cached_tokens"] == 12
        for k in range(6):  # other prompts push the first one out (64-token cap, LRU)
            _gen(s.url, {"input_ids": [500 + k] * 16, "sampling_params": {"max_new_tokens": 1}})
        evicted = _gen(s.url, {"input_ids": list(range(10, 22)), "sampling_params": {"max_new_tokens": 1}}).json()
        assert evicted["meta_info"]["cached_tokens"] == 0
        assert httpx.get(s.url + "/_stats").json()["evicted_tokens"] > 0


def test_tokenize_both_modes_and_the_400():
    tok, _ = load_tokenizer()
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure:"}]
    with StandinServer(free_port()) as jinja, StandinServer(free_port(), builtin_template="chatml") as builtin:
        as_completion = httpx.post(jinja.url + "/v1/tokenize", json={"messages": chat}).json()["tokens"]
        rendered = tok.apply_chat_template(
            [chat[0], {"role": "user", "content": "Sure:"}], add_generation_prompt=True, tokenize=False
        )
        assert as_completion == tok.encode(rendered, add_special_tokens=False)  # trailing assistant -> user
        as_given = httpx.post(jinja.url + "/v1/tokenize", json={"messages": chat, "add_generation_prompt": False})
        assert as_given.json()["tokens"] != as_completion
        refused = httpx.post(builtin.url + "/v1/tokenize", json={"messages": chat, "add_generation_prompt": True})
        assert refused.status_code == 400 and refused.json()["object"] == "error"
        assert "only with a Jinja chat template" in refused.json()["message"]
        text = httpx.post(builtin.url + "/v1/tokenize", json={"prompt": "hello world"}).json()
        assert text["tokens"] == tok.encode("hello world") and text["count"] == len(text["tokens"])


def test_abort_matches_exact_rids_only():
    with StandinServer(free_port(), decode_s=0.2) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        import threading

        out = {}
        body = {"input_ids": [[1, 2, 3]] * 2, "rid": ["r.0", "r.1"], "sampling_params": [{"max_new_tokens": 64}] * 2}
        worker = threading.Thread(target=lambda: out.setdefault("resp", c.post("/generate", json=body)))
        worker.start()
        deadline = time.monotonic() + 10
        while httpx.get(s.url + "/_stats").json()["in_flight"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.post("/abort_request", json={"rid": "r"}).status_code == 200  # no such rid: nothing happens
        c.post("/abort_request", json={"rid": "r.1"})
        worker.join(timeout=20)
        items = out["resp"].json()
        assert [i["meta_info"]["finish_reason"]["type"] for i in items] == ["stop", "abort"]


def test_logprobs_are_sglang_tuples(standin):
    body = {
        "input_ids": [1, 2, 3],
        "sampling_params": {"max_new_tokens": 4},
        "return_logprob": True,
        "top_logprobs_num": 2,
    }
    meta = _gen(standin.url, body).json()["meta_info"]
    first = meta["output_token_logprobs"][0]
    assert len(first) == 3 and isinstance(first[1], int) and first[2] is None  # no return_text_in_logprobs
    assert len(meta["output_top_logprobs"][0]) == 2


def test_faults_are_injectable(standin):
    with httpx.Client(base_url=standin.url, timeout=10) as c:
        c.post("/_faults", json={"generate": "500", "times": 1})
        assert _gen(standin.url, {"input_ids": [1, 2]}).status_code == 500
        assert _gen(standin.url, {"input_ids": [1, 2]}).status_code == 200  # times: 1
        c.post("/_faults", json={"generate": "malformed"})
        with pytest.raises(ValueError):
            _gen(standin.url, {"input_ids": [1, 2]}).json()
        c.post("/_faults", json={"generate": "close"})
        with pytest.raises(httpx.RemoteProtocolError):
            _gen(standin.url, {"input_ids": [1, 2]})
        c.post("/_faults", json={"tokenize": "hang"})
        with pytest.raises(httpx.ReadTimeout):
            c.post("/v1/tokenize", json={"prompt": "x"}, timeout=0.5)
        c.post("/_faults", json={"down": True})
        assert c.get("/ready").status_code == 503
        assert c.delete("/_faults").json()["down"] is False
        assert c.get("/ready").status_code == 200


def test_runs_as_its_own_process():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sglang_standin", "--port", str(port), "--kv-capacity", "1234"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=1).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        assert info["max_total_num_tokens"] == 1234
    finally:
        proc.terminate()
        proc.wait(timeout=10)
