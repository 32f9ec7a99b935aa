from __future__ import annotations

import pytest

from blendserve.core.openai_format import response_body, to_generate
from blendserve.core.runtime.base import Choice, GenerateResult, UnsupportedParameter
from blendserve.core.runtime.simulated import SimulatedRuntime

RT = SimulatedRuntime()


def gen(endpoint, body):
    return to_generate(endpoint, body, RT.tokenizer, RT.info)


def test_chat_maps_params_and_applies_template():
    ids, p = gen(
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            ],
            "max_completion_tokens": 7,
            "temperature": 0,
            "top_p": 0.5,
            "stop": "\n",
            "n": 2,
            "seed": 3,
            "user": "u",
        },
    )
    assert bytes(list(ids)).decode().startswith("<|im_start|>system\nbe brief")
    assert bytes(list(ids)).decode().endswith("<|im_start|>assistant\n")
    assert (p.max_new_tokens, p.temperature, p.top_p, p.stop, p.n, p.seed) == (7, 0.0, 0.5, ("\n",), 2, 3)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"tools": [{}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"stream": True}, "stream"),
        ({"n": 0}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logprobs": True}, "logprobs"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
    ],
)
def test_chat_unsupported_is_a_line_error(body, param):
    full = {"model": "m", "messages": [{"role": "user", "content": "x"}], **body}
    with pytest.raises(UnsupportedParameter) as err:
        gen("/v1/chat/completions", full)
    assert err.value.param == param


def test_completion_prompt_forms():
    assert list(gen("/v1/completions", {"model": "m", "prompt": "ab"})[0]) == [97, 98]
    assert list(gen("/v1/completions", {"model": "m", "prompt": ["ab"]})[0]) == [97, 98]
    assert gen("/v1/completions", {"model": "m", "prompt": [5, 6, 7]})[0] == [5, 6, 7]
    assert gen("/v1/completions", {"model": "m", "prompt": [[5, 6]]})[0] == [5, 6]
    assert gen("/v1/completions", {"model": "m", "prompt": "x"})[1].max_new_tokens == 256  # always sent
    for bad in (["a", "b"], [], [-1], {"x": 1}):
        with pytest.raises(UnsupportedParameter):
            gen("/v1/completions", {"model": "m", "prompt": bad})
    with pytest.raises(UnsupportedParameter):
        gen("/v1/completions", {"model": "m", "prompt": "x", "echo": True})


def test_context_overflow_is_a_line_error():
    with pytest.raises(UnsupportedParameter):
        gen("/v1/completions", {"model": "m", "prompt": "x" * 40000})


def test_response_bodies():
    result = GenerateResult("r", (Choice("hello", 3, "stop"), Choice("hi", 2, "length")), 10, 4)
    chat = response_body("/v1/chat/completions", "m", result)
    assert chat["object"] == "chat.completion" and chat["choices"][1]["finish_reason"] == "length"
    assert chat["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    text = response_body("/v1/completions", "m", result)
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "hello"
