"""Property: for any OpenAI batch line, what the SGLang adapter sends is accepted by the stand-in (SGLang 0.5.23's
own contract codec, its SamplingParams.verify rules and its length limits), and what SGLang would reject the
adapter rejects per line (UnsupportedParameter) before sending anything."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from blendserve.core.openai_format import to_generate
from blendserve.core.runtime import sglang_params
from blendserve.core.runtime.base import GenerateRequest, ModelInfo, UnsupportedParameter
from blendserve.core.runtime.hf_tokenizer import HFTokenizer
from blendserve.core.sched.perf_model import PerfModel
from tests.fakes.sglang_standin import SKIP_REASON, api_types, build_app, load_tokenizer

pytestmark = pytest.mark.skipif(api_types() is None, reason=SKIP_REASON)
KV, CONTEXT = 300, 1024  # max_req_input_len = min(1023, 299) - 5 = 294: long prompts hit it

numbers = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from([0, 0.0, 1, 1.0, 2.0, -2.0, 1e-9]),
)
seeds = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(-10, 10, allow_nan=False))
words = st.lists(st.sampled_from(["alpha", "beta", "日本", "é", " ", "\n", "token"]), max_size=400).map("".join)


@st.composite
def lines(draw) -> tuple[str, dict]:
    chat = draw(st.booleans())
    body: dict = {"model": "m"}
    if chat:
        turns = draw(
            st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), words), min_size=1, max_size=3)
        )
        body["messages"] = [{"role": r, "content": c} for r, c in turns]
    else:
        body["prompt"] = draw(words)
    for key, strategy in {
        "temperature": numbers,
        "top_p": numbers,
        "frequency_penalty": numbers,
        "presence_penalty": numbers,
        "seed": seeds,
        "n": st.one_of(st.none(), st.integers(1, 3)),
        "max_tokens": st.one_of(st.none(), st.integers(1, 2000)),
        "stop": st.one_of(st.none(), st.text(max_size=3), st.lists(st.text(min_size=1, max_size=3), max_size=4)),
        "logprobs": st.one_of(st.none(), st.booleans()) if chat else st.one_of(st.none(), st.integers(0, 3)),
    }.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    if chat and body.get("logprobs"):
        body["top_logprobs"] = draw(st.integers(0, 5))
    return ("/v1/chat/completions" if chat else "/v1/completions"), body


@pytest.fixture(scope="module")
def world():
    tok, directory = load_tokenizer()
    app = build_app(tok, directory, kv_capacity=KV, context_len=CONTEXT)
    info = ModelInfo("m", KV, CONTEXT, PerfModel.preset(), 8, frozenset({"logprobs", "seed", "n"}))
    info.max_input_tokens = min(CONTEXT - 1, KV - 1) - 5
    return app, HFTokenizer(tok), info


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=lines())
def test_whatever_the_adapter_sends_sglang_accepts(world, line):
    app, tokenizer, info = world
    endpoint, body = line
    try:
        ids, params = to_generate(endpoint, body, tokenizer, info)
    except UnsupportedParameter:
        event("rejected at intake")
        return  # intake's own per-line rejection
    except (TypeError, ValueError):
        assume(False)  # openai_format's input checks (issue 10's scope), not the adapter's
    request = GenerateRequest("p-1", tuple(ids), params)
    try:
        sglang_params.check(request, info)
    except UnsupportedParameter as exc:
        event(f"rejected by the adapter: {exc.param}")
        return  # rejected per line before sending
    payload = sglang_params.generate_body(request, with_logprob_text=False)

    async def send():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client:
            return await client.post("/generate", json=payload)

    event("sent")
    resp = asyncio.run(send())
    assert resp.status_code == 200, (body, payload["sampling_params"], resp.text)
