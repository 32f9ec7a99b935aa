"""/v1/responses batches: Responses bodies run as text generation and come back as Response objects that the
openai SDK parses; unsupported Responses features fail their line alone. SQLite and Postgres."""

from __future__ import annotations

import pytest
from openai.types.responses import Response

from blendserve.core.runtime.simulated import SimulatedRuntime
from tests.api.test_dispatch import _app, _lines, _wait
from tests.conftest import running_client
from tests.helpers import upload_batch

pytestmark = pytest.mark.anyio
URL = "/v1/responses"


def _line(custom_id: str, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": URL, "body": {"model": "simulated", **body}}


async def test_responses_batch(db_url, tmp_path):
    lines = [
        _line("text", input="Say hi.", max_output_tokens=8),
        _line(
            "messages",
            instructions="Be terse.",
            input=[
                {"role": "user", "content": [{"type": "input_text", "text": "Count to three."}]},
                {"type": "message", "role": "assistant", "content": "1 2"},
                {"role": "user", "content": "go on"},
            ],
            temperature=0.2,
            metadata={"k": "v"},
            tools=[],
        ),
        _line("tools", input="x", tools=[{"type": "web_search"}]),
        _line("reasoning", input="x", reasoning={"effort": "high"}),
        _line("background", input="x", background=True),
        _line("image", input=[{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]),
        _line("bad-type", input="x", max_output_tokens="many"),
    ]
    async with running_client(_app(db_url, tmp_path, SimulatedRuntime())) as c:
        created = (await upload_batch(c, lines, endpoint=URL)).json()
        assert created["status"] == "in_progress", created
        done = await _wait(c, created["id"])
        assert done["status"] == "completed" and done["request_counts"] == {"total": 7, "completed": 2, "failed": 5}
        out = {x["custom_id"]: x["response"]["body"] for x in await _lines(c, done["output_file_id"])}
        err = {x["custom_id"]: x["response"]["body"]["error"] for x in await _lines(c, done["error_file_id"])}
    for body in out.values():
        parsed = Response.model_validate(body)  # the SDK's own model of a Response
        assert parsed.object == "response" and parsed.output[0].content[0].type == "output_text"
        assert parsed.output_text == body["output"][0]["content"][0]["text"]
        assert parsed.usage.input_tokens > 0 and parsed.usage.output_tokens > 0
        assert parsed.usage.input_tokens_details.cached_tokens >= 0
    assert out["text"]["max_output_tokens"] == 8 and out["text"]["usage"]["output_tokens"] <= 8
    assert out["messages"]["instructions"] == "Be terse." and out["messages"]["metadata"] == {"k": "v"}
    assert out["messages"]["temperature"] == 0.2
    assert {k: (e["code"], e["param"]) for k, e in err.items()} == {
        "tools": ("unsupported_parameter", "tools"),
        "reasoning": ("unsupported_parameter", "reasoning"),
        "background": ("unsupported_parameter", "background"),
        "image": ("unsupported_parameter", "input[0].content"),
        "bad-type": ("invalid_type", "max_output_tokens"),
    }


async def test_responses_batch_validation(db_url, tmp_path):
    async with running_client(_app(db_url, tmp_path, SimulatedRuntime())) as c:
        no_input = (await upload_batch(c, [_line("a")], endpoint=URL)).json()
        assert no_input["status"] == "failed" and no_input["errors"]["data"][0]["param"] == "body.input"
        streaming = (await upload_batch(c, [_line("a", input="x", stream=True)], endpoint=URL)).json()
        assert streaming["errors"]["data"][0]["code"] == "streaming_unsupported"
