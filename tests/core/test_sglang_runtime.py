"""The sglang-http adapter against the SGLang stand-in: each SGLang 0.5.23 interaction the adapter depends on,
and each fault of issue 9's runtime side. The Engine adapter is in test_sglang_engine.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from blendserve.core.runtime.base import (
    Aborted,
    UnsupportedParameter,
)
from blendserve.core.runtime.hf_tokenizer import HFTokenizer
from blendserve.core.runtime.sglang_http import sampling_params
from tests.e2e.server import free_port
from tests.fakes.sglang.testing import CHAT, _faults, _ready, _req, _rt  # noqa: F401
from tests.fakes.sglang_standin import SAMPLING_KEYS, StandinServer, load_tokenizer


@pytest.fixture(scope="module")
def standin():
    with StandinServer(free_port(), model_name="Qwen2.5-7B-Instruct", kv_capacity=123_456, context_len=8192) as s:
        yield s


def test_mapping_only_uses_sglang_keys():
    params = sampling_params(_req("r-1", (1, 2), temperature=0.5, stop=("\n",), seed=3))
    assert set(params) <= SAMPLING_KEYS and params["max_new_tokens"] == 8 and params["sampling_seed"] == 3


def test_reads_model_capacity_and_generates(standin):
    async def main():
        rt = _rt(standin.url)
        await rt.start()
        await _ready(rt)
        ids = rt.tokenizer.encode_chat(CHAT)
        first = await rt.generate(_req("x-1", ids, max_new_tokens=2))
        again = await rt.generate(_req("y-1", ids, max_new_tokens=50, n=2))
        await rt.close()
        return rt.info, first, again, len(ids)

    info, first, again, prompt = asyncio.run(main())
    assert info.name == "Qwen2.5-7B-Instruct" and info.kv_capacity_tokens == 123_456
    assert info.max_context_tokens == 8192 and info.input_limit() == min(8191, 123_455) - 5
    assert first.choices[0].finish_reason == "length" and first.completion_tokens == 2
    assert len(again.choices) == 2 and again.choices[0].finish_reason == "stop"
    assert again.cached_tokens == prompt - 1  # SGLang reports at most input_len - 1


def test_chat_tokenize_renders_as_a_chat_completion():
    """SGLang with a built-in template answers 400 to add_generation_prompt (serving_tokenize.py:100-107), and
    a trailing assistant message is rendered as a user one for chat completions (serving_chat.py:2154-2160)."""
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure, "}]
    with StandinServer(free_port(), builtin_template="chatml") as s:
        rt = _rt(s.url)
        ids = rt.tokenizer.encode_chat(chat)
        rt.tokenizer.close()
    tok, _ = load_tokenizer()
    assert ids == HFTokenizer(tok).encode_chat(chat)  # the Engine adapter's local render agrees
    expected = tok.apply_chat_template(
        [chat[0], {"role": "user", "content": "Sure, "}], add_generation_prompt=True, tokenize=False
    )
    assert ids == tok.encode(expected, add_special_tokens=False)


def test_abort_aborts_every_copy():
    """n > 1 runs as rid.0, rid.1, ...; SGLang aborts exact rids only (tokenizer_manager.py:2241-2253)."""
    with StandinServer(free_port(), decode_s=0.2) as s:

        async def main():
            rt = _rt(s.url)
            await rt.start()
            await _ready(rt)
            task = asyncio.create_task(rt.generate(_req("row7-1", (1, 2, 3), n=2, max_new_tokens=64)))
            while httpx.get(s.url + "/_stats").json()["in_flight"] < 2:
                await asyncio.sleep(0.02)
            await rt.abort(["row7-1", "unknown-1"])  # unknown rids are harmless
            with pytest.raises(Aborted):
                await task
            await rt.abort(["row7-1"])  # finished: a no-op too
            await rt.close()

        asyncio.run(main())
        assert httpx.get(s.url + "/_stats").json()["aborted"] == 2  # both copies stopped early, none ran out
        assert [a["rid"] for a in s.app.state.aborts][:2] == ["row7-1.0", "row7-1.1"]


def test_abort_after_the_task_was_cancelled_still_names_every_copy():
    """The dispatcher cancels the waiting task first, then calls abort(): the copies are remembered."""
    with StandinServer(free_port(), decode_s=0.5) as s:

        async def main():
            rt = _rt(s.url)
            await rt.start()
            await _ready(rt)
            task = asyncio.create_task(rt.generate(_req("row8-2", (1, 2, 3), n=3, max_new_tokens=64)))
            while httpx.get(s.url + "/_stats").json()["in_flight"] < 3:
                await asyncio.sleep(0.02)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await rt.abort(["row8-2"])
            while httpx.get(s.url + "/_stats").json()["in_flight"]:  # SGLang stopped generating them
                await asyncio.sleep(0.02)
            await rt.close()

        asyncio.run(main())
        assert httpx.get(s.url + "/_stats").json()["aborted"] == 3
        assert [a["rid"] for a in s.app.state.aborts] == ["row8-2.0", "row8-2.1", "row8-2.2"]


def test_seeds_differ_per_copy_and_bad_values_fail_the_line(standin):
    async def main():
        rt = _rt(standin.url)
        await rt.start()
        await _ready(rt)
        await rt.generate(_req("s-1", (4, 5, 6), n=3, seed=7))
        sent = standin.app.state.calls[-1]
        bad = [dict(seed=1.5), dict(seed=True), dict(top_p=0.0), dict(temperature=-0.1), dict(seed=2**63)]
        calls = len(standin.app.state.calls)
        for params in bad:
            with pytest.raises(UnsupportedParameter):
                await rt.generate(_req("s-2", (4, 5, 6), **params))
        assert len(standin.app.state.calls) == calls  # rejected before anything is sent
        await rt.close()
        return sent

    sent = asyncio.run(main())
    assert [p["sampling_seed"] for p in sent["sampling_params"]] == [7, 8, 9]
    assert sent["rid"] == ["s-1.0", "s-1.1", "s-1.2"]


def test_prompt_at_max_req_input_len_fails_per_line():
    """SGLang refuses len >= max_req_input_len (srt/managers/utils.py:259-287), 6 below the context."""
    with StandinServer(free_port(), kv_capacity=4096, context_len=1024) as s:

        async def main():
            rt = _rt(s.url)
            await rt.start()
            await _ready(rt)
            limit = rt.info.input_limit()
            ok = await rt.generate(_req("l-1", [9] * (limit - 1), max_new_tokens=1))
            with pytest.raises(UnsupportedParameter):
                await rt.generate(_req("l-2", [9] * limit, max_new_tokens=1))
            await rt.close()
            return limit, ok

        limit, ok = asyncio.run(main())
        assert limit == 1024 - 1 - 5 and ok.prompt_tokens == limit - 1


def test_kv_capacity_sums_dp_ranks():
    with StandinServer(free_port(), kv_capacity=4096, dp_size=4) as s:

        async def main():
            rt = _rt(s.url)
            await rt.start()
            await _ready(rt)
            await rt.close()
            return rt.info.kv_capacity_tokens

        assert asyncio.run(main()) == 4 * 4096


def test_logprob_bytes_come_from_token_ids(standin):
    """Per-token decoding turns split UTF-8 into U+FFFD (tokenizer_manager.py:3113); bytes must be exact."""

    async def main():
        rt = _rt(standin.url)
        await rt.start()
        await _ready(rt)
        result = await rt.generate(_req("lp-1", (1, 2, 3), max_new_tokens=64, logprobs=True, top_logprobs=2))
        await rt.close()
        return result.choices[0]

    choice = asyncio.run(main())  # the tokenizer dir comes from /model_info (tokenizer_path)
    joined = b"".join(bytes(e["bytes"]) for e in choice.logprobs)
    assert joined.decode() == choice.text and "日本語" in choice.text
    assert len(choice.logprobs[0]["top_logprobs"]) == 2
    assert any("\ufffd" in e["token"] for e in choice.logprobs)  # the text of a partial character, as OpenAI


@pytest.mark.anyio
async def test_batch_completes_through_sglang_http(standin, db_url, tmp_path):
    from blendserve.api.app import create_app
    from blendserve.core.dispatch.config import DispatchConfig
    from blendserve.core.dispatch.loop import Dispatcher
    from tests.api.test_dispatch import _lines, _wait
    from tests.helpers import chat_line, upload_batch
    from tests.support import make_settings, running_client

    settings = make_settings(db_url, tmp_path / "d", dispatcher=True, runtime="sglang-http", sglang_url=standin.url)
    runtime = _rt(standin.url)
    config = DispatchConfig.from_settings(settings)
    app = create_app(settings, lambda db, blobs: Dispatcher(db, blobs, config, runtime))
    async with running_client(app) as c:
        await _ready(runtime)
        model = runtime.info.name  # the served model, named by SGLang once it answered
        objs = [chat_line(i, model=model, prompt="Shared instructions. " * 10 + str(i)) for i in range(12)]
        done = await _wait(c, (await upload_batch(c, objs)).json()["id"])
        assert done["status"] == "completed" and done["request_counts"]["completed"] == 12
        out = await _lines(c, done["output_file_id"])
        assert {x["response"]["body"]["model"] for x in out} == {"Qwen2.5-7B-Instruct"}
        assert done["usage"]["input_tokens_details"]["cached_tokens"] > 0
    sent = [call for call in standin.app.state.calls if isinstance(call.get("rid"), list)]
    assert sent and all(set(p) <= SAMPLING_KEYS for call in sent for p in call["sampling_params"])


def test_gateway_reads_the_vocabulary_for_logprob_bytes(standin):
    """Through a gateway too, logprobs' bytes come from the model's vocabulary (the worker's /model_info names
    it), not from SGLang's per-token text. The gateway here lists the stand-in as its one worker and forwards
    everything else to it."""
    from blendserve.core.runtime.gateway import GatewayRuntime
    from blendserve.core.sched.perf_model import PerfModel

    async def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/workers":
            return httpx.Response(200, json={"workers": [{"url": standin.url, "is_healthy": True, "load": 0}]})
        async with httpx.AsyncClient() as client:
            url = standin.url + request.url.raw_path.decode() if request.url.host == "gateway" else str(request.url)
            forwarded = await client.request(request.method, url, content=request.content, headers=request.headers)
            return httpx.Response(forwarded.status_code, content=forwarded.content, headers=forwarded.headers)

    async def main():
        rt = GatewayRuntime("http://gateway", PerfModel.preset(gpu="h100"), timeout_s=30)
        await rt.client.aclose()
        rt.client = httpx.AsyncClient(base_url="http://gateway", transport=httpx.MockTransport(gateway), timeout=30)
        await rt.start()
        await _ready(rt)
        result = await rt.generate(_req("gw-lp-1", (1, 2, 3), max_new_tokens=64, logprobs=True, top_logprobs=2))
        await rt.close()
        return rt.token_text, result.choices[0]

    vocabulary, choice = asyncio.run(main())
    assert vocabulary is not None
    assert b"".join(bytes(e["bytes"]) for e in choice.logprobs).decode() == choice.text and "日本語" in choice.text


@pytest.mark.parametrize("runtime", ["sglang-http", "sglang-gateway"])
def test_the_configured_tokenizer_reaches_one_server_and_the_gateway_alike(runtime, tmp_path):
    from blendserve.core.runtime.factory import build_runtime
    from tests.support import make_settings

    settings = make_settings("sqlite://", tmp_path, runtime=runtime, tokenizer_path="/models/tok")
    built = build_runtime(settings)
    assert built.tokenizer_path == "/models/tok"  # type: ignore[attr-defined]
    asyncio.run(built.close())
