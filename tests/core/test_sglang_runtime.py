"""The sglang-http adapter against the protocol stand-in; the Engine adapter on a GPU only."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from blendserve.core.runtime.base import GenerateRequest, RuntimeError_, SamplingParams
from blendserve.core.runtime.sglang_http import SGLangHTTPRuntime, sampling_params
from blendserve.core.sched.perf_model import PerfModel
from tests.e2e.server import free_port
from tests.fakes.sglang_standin import SAMPLING_KEYS, StandinServer


@pytest.fixture(scope="module")
def standin():
    with StandinServer(free_port(), model_name="Qwen2.5-7B-Instruct", max_total_num_tokens=123_456) as server:
        yield server


def test_standin_enforces_the_contract(standin):
    ok = httpx.post(
        standin.url + "/generate",
        json={
            "input_ids": [[1, 2, 3], [1, 2, 4]],
            "rid": ["a", "b"],
            "sampling_params": [{"max_new_tokens": 8, "temperature": 0}, {"max_new_tokens": 4}],
            "foo": 1,
        },
    )
    assert ok.status_code == 200 and [x["meta_info"]["id"] for x in ok.json()] == ["a", "b"]
    assert ok.json()[1]["meta_info"]["cached_tokens"] == 2
    for bad in ({"max_tokens": 8}, {"seed": 1}):
        resp = httpx.post(standin.url + "/generate", json={"input_ids": [1], "sampling_params": bad})
        assert resp.status_code == 400 and "unknown field" in resp.text


def test_mapping_only_uses_sglang_keys():
    req = GenerateRequest("r-1", (1, 2), SamplingParams(max_new_tokens=9, temperature=0.5, stop=("\n",), seed=3))
    params = sampling_params(req)
    assert set(params) <= SAMPLING_KEYS and params["max_new_tokens"] == 9 and params["sampling_seed"] == 3


def test_runtime_reads_model_and_capacity_and_generates(standin):
    async def main():
        rt = SGLangHTTPRuntime(standin.url, PerfModel.preset(gpu="h100"))
        await rt.start()
        assert rt.info.name == "Qwen2.5-7B-Instruct" and rt.info.kv_capacity_tokens == 123_456
        assert rt.info.max_context_tokens == 32768
        ids = tuple(rt.tokenizer.encode_chat([{"role": "user", "content": "hello"}]))
        first = await rt.generate(GenerateRequest("x-1", ids, SamplingParams(max_new_tokens=2)))
        again = await rt.generate(GenerateRequest("y-1", ids, SamplingParams(max_new_tokens=50, n=2)))
        await rt.close()
        return first, again

    first, again = asyncio.run(main())
    assert first.choices[0].finish_reason == "length" and first.completion_tokens == 2
    assert len(again.choices) == 2 and again.cached_tokens == again.prompt_tokens  # whole prompt cached now
    assert again.choices[0].finish_reason == "stop"


def test_unreachable_server_is_retryable():
    async def main():
        rt = SGLangHTTPRuntime(f"http://127.0.0.1:{free_port()}", PerfModel.preset())
        try:
            await rt.generate(GenerateRequest("z-1", (1,), SamplingParams(max_new_tokens=1)))
        finally:
            await rt.close()

    with pytest.raises(RuntimeError_) as err:
        asyncio.run(main())
    assert err.value.retryable


@pytest.mark.anyio
async def test_batch_completes_through_sglang_http(standin, db_url, tmp_path):
    from blendserve.api.app import create_app
    from blendserve.core.dispatch.config import DispatchConfig
    from blendserve.core.dispatch.loop import Dispatcher
    from tests.api.test_dispatch import _lines, _wait
    from tests.helpers import chat_line, upload_batch
    from tests.support import make_settings, running_client

    settings = make_settings(db_url, tmp_path / "d", dispatcher=True, runtime="sglang-http", sglang_url=standin.url)
    runtime = SGLangHTTPRuntime(standin.url, PerfModel.preset())
    app = create_app(settings, lambda db, blobs: Dispatcher(db, blobs, DispatchConfig.from_settings(settings), runtime))
    async with running_client(app) as c:
        objs = [chat_line(i, prompt="Shared instructions. " * 10 + str(i)) for i in range(12)]
        done = await _wait(c, (await upload_batch(c, objs)).json()["id"])
        assert done["status"] == "completed" and done["request_counts"]["completed"] == 12
        out = await _lines(c, done["output_file_id"])
        assert {x["response"]["body"]["model"] for x in out} == {"Qwen2.5-7B-Instruct"}
        assert done["usage"]["input_tokens_details"]["cached_tokens"] > 0
    sent = [call for call in standin.app.state.calls if isinstance(call.get("rid"), list)]
    assert all(set(p) <= SAMPLING_KEYS for call in sent for p in call["sampling_params"])
    assert json.dumps(sent)


@pytest.mark.gpu
def test_sglang_engine_on_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("sglang")
    from blendserve.config import Settings
    from blendserve.core.runtime.sglang_engine import SGLangEngineRuntime

    async def main():
        rt = SGLangEngineRuntime(Settings(model_path="Qwen/Qwen2.5-0.5B-Instruct"), load_format="dummy")
        await rt.start()
        ids = tuple(rt.tokenizer.encode_chat([{"role": "user", "content": "hi"}]))
        result = await rt.generate(GenerateRequest("g-1", ids, SamplingParams(max_new_tokens=4)))
        await rt.close()
        return result

    assert asyncio.run(main()).completion_tokens == 4
