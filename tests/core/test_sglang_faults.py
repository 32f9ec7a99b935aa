"""Issue 9, runtime side: the sglang-http adapter under SGLang outages and faults (the stand-in's /_faults):
start while SGLang is down or its info endpoints hang, typed errors for /generate and /v1/tokenize faults,
bounded waits, deadlines from the measured rate, and health()."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from blendserve.core.runtime.base import HealthState, RuntimeFailure, RuntimeUnavailable, UnsupportedParameter
from tests.e2e.server import free_port
from tests.fakes.sglang.testing import CHAT, _faults, _ready, _req, _rt
from tests.fakes.sglang_standin import StandinServer, load_tokenizer


@pytest.fixture(scope="module")
def standin():
    with StandinServer(free_port()) as s:
        yield s


def test_start_returns_while_sglang_is_down_and_connects_later():
    """Issue 9: the server must start with SGLang down (the old start() raised ConnectError)."""
    port = free_port()

    async def main():
        rt = _rt(f"http://127.0.0.1:{port}", info_timeout_s=0.5, model_name="configured")
        began = time.monotonic()
        await rt.start()
        assert time.monotonic() - began < 1.0
        assert (await rt.health()).state == HealthState.STARTING and rt.info.name == "configured"
        with pytest.raises(RuntimeUnavailable):
            await rt.generate(_req("a-1", (1, 2)))
        with pytest.raises(RuntimeUnavailable):
            await asyncio.to_thread(rt.tokenizer.encode_text, "x")
        with StandinServer(port, kv_capacity=777):
            await _ready(rt)
            assert rt.info.kv_capacity_tokens == 777 and rt.info.name == "configured"
            assert (await rt.generate(_req("a-2", (1, 2)))).completion_tokens > 0
        await asyncio.sleep(1.1)  # past the health cache
        assert (await rt.health()).state == HealthState.DOWN
        with pytest.raises(RuntimeUnavailable):
            await rt.generate(_req("a-3", (1, 2)))
        with StandinServer(port, kv_capacity=888):  # restarted with another KV pool
            await asyncio.sleep(1.1)
            assert (await rt.health()).ready and rt.info.kv_capacity_tokens == 888
        await rt.close()

    asyncio.run(main())


def test_start_survives_hanging_info_endpoints(standin):
    async def main():
        _faults(standin.url, info="hang")
        rt = _rt(standin.url, info_timeout_s=0.3)
        try:
            await rt.start()
            await asyncio.sleep(0.8)
            health = await rt.health()
            assert health.state == HealthState.STARTING and "Timeout" in health.detail
        finally:
            httpx.delete(standin.url + "/_faults")
        await _ready(rt)
        await rt.close()

    asyncio.run(main())


@pytest.mark.parametrize("mode", ["500", "close", "malformed"])
def test_generate_faults_are_retryable(standin, mode):
    async def main():
        rt = _rt(standin.url)
        await rt.start()
        await _ready(rt)
        _faults(standin.url, generate=mode)
        try:
            with pytest.raises(RuntimeFailure) as err:
                await rt.generate(_req(f"f-{mode}", (1, 2)))
        finally:
            httpx.delete(standin.url + "/_faults")
        assert err.value.retryable and not isinstance(err.value, UnsupportedParameter)
        await rt.close()

    asyncio.run(main())


def test_generate_hang_is_bounded_and_deadlines_follow_measured_rate(standin):
    async def main():
        rt = _rt(standin.url, timeout_s=1.0)
        await rt.start()
        await _ready(rt)
        _faults(standin.url, generate="hang")
        try:
            with pytest.raises(RuntimeFailure) as err:
                await rt.generate(_req("h-1", (1, 2)))
        finally:
            httpx.delete(standin.url + "/_faults")
        assert err.value.retryable
        slow = _rt(standin.url, timeout_s=600.0)
        before = slow.deadline_s(_req("d", (1,), max_new_tokens=1000))
        slow.deadlines.observe(500, 1.0)  # 500 tokens/s measured
        after = slow.deadline_s(_req("d", (1,), max_new_tokens=1000))
        await rt.close()
        await slow.close()
        return before, after

    before, after = asyncio.run(main())
    assert before == 600.0 and after == pytest.approx(30 + 4 * 1000 / 500)


def test_tokenize_faults_are_retried_or_typed(standin):
    rt = _rt(standin.url, tokenize_timeout_s=0.5)
    try:
        _faults(standin.url, tokenize="500", times=1)  # one failure, then the second try succeeds
        assert rt.tokenizer.encode_text("hello") == load_tokenizer()[0].encode("hello")
        for mode in ("500", "hang"):
            _faults(standin.url, tokenize=mode)
            with pytest.raises(RuntimeFailure) as err:
                rt.tokenizer.encode_chat(CHAT)
            assert err.value.retryable
        _faults(standin.url, tokenize="slow", slow_s=0.2)
        assert rt.tokenizer.encode_chat(CHAT)
        httpx.delete(standin.url + "/_faults")
        with pytest.raises(UnsupportedParameter):  # SGLang's own 400: the line's fault
            rt.tokenizer._tokens({"prompt": "x", "messages": CHAT}, "messages")
    finally:
        httpx.delete(standin.url + "/_faults")
        rt.tokenizer.close()


def test_health_reports_down_when_sglang_says_so(standin):
    async def main():
        rt = _rt(standin.url)
        await rt.start()
        await _ready(rt)
        _faults(standin.url, down=True)
        try:
            await asyncio.sleep(1.1)
            assert (await rt.health()).state == HealthState.DOWN
        finally:
            httpx.delete(standin.url + "/_faults")
        await asyncio.sleep(1.1)
        assert (await rt.health()).ready
        await rt.close()

    asyncio.run(main())
