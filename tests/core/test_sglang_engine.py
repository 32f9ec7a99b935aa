"""The sglang-engine adapter on CPU, against a fake `sglang` module whose Engine handles event loops as
SGLang 0.5.23's does (srt/entrypoints/engine.py): the constructor takes the running loop or makes one
(`_ensure_event_loop`, :1403-1414), sync methods run `self.loop.run_until_complete` (:1570-1585), and the
tokenizer manager binds to the loop of its first async call (tokenizer_manager.py:2440-2449)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types

import pytest

from blendserve.config import Settings
from blendserve.core.runtime.base import Aborted, GenerateRequest, HealthState, SamplingParams, UnsupportedParameter
from blendserve.core.runtime.sglang_engine import SGLangEngineRuntime
from tests.fakes.sglang import contract
from tests.fakes.sglang.generation import Generator
from tests.fakes.sglang.radix import RadixCache
from tests.fakes.sglang_standin import load_tokenizer

KV, DP, CONTEXT = 4096, 2, 2048


class FakeTokenizerManager:
    def __init__(self, tokenizer, decode_s: float) -> None:
        self.tokenizer = tokenizer
        self.context_len = CONTEXT
        self.served_model_name = "fake-served"
        self.event_loop = None
        self.generator = Generator(tokenizer, RadixCache(KV * DP), decode_s)
        self.running: dict[str, asyncio.Event] = {}
        self.aborted: list[str] = []

    def auto_create_handle_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.event_loop is None:
            self.event_loop = loop
        elif self.event_loop is not loop:  # the real one would wait forever on a loop nobody runs
            raise RuntimeError("tokenizer manager bound to another event loop")

    async def get_internal_state(self) -> list[dict]:
        self.auto_create_handle_loop()
        return [{"memory_usage": {"token_capacity": KV}, "dp_rank": r} for r in range(DP)]

    def abort_request(self, rid: str = "", abort_all: bool = False) -> None:
        self.aborted.append(rid)
        if rid in self.running:  # exact rids only
            self.running[rid].set()


class FakeEngine:
    decode_s = 0.0
    build_s = 0.5
    instances: list[FakeEngine] = []

    def __init__(self, **kwargs) -> None:
        time.sleep(self.build_s)  # the model load blocks the caller, as Engine() does
        self.kwargs = kwargs
        self.built_in_thread = threading.current_thread() is not threading.main_thread()
        tokenizer, _ = load_tokenizer()
        self.tokenizer_manager = FakeTokenizerManager(tokenizer, self.decode_s)
        self.server_args = types.SimpleNamespace(dp_size=DP)
        info = {"max_total_num_tokens": KV, "max_req_input_len": min(CONTEXT - 1, KV - 1) - 5}
        self._scheduler_init_result = types.SimpleNamespace(scheduler_infos=[info])
        self.loop = self._ensure_event_loop()
        FakeEngine.instances.append(self)

    @staticmethod
    def _ensure_event_loop() -> asyncio.AbstractEventLoop:  # engine.py:1403-1414, verbatim logic
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            pass
        try:
            return asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            return loop

    def get_server_info(self) -> dict:  # engine.py:1570-1585
        states = self.loop.run_until_complete(self.tokenizer_manager.get_internal_state())
        return {**self._scheduler_init_result.scheduler_infos[0], "internal_states": states}

    async def async_generate(
        self, input_ids=None, sampling_params=None, rid=None, return_logprob=False, top_logprobs_num=None, **kwargs
    ):
        manager = self.tokenizer_manager
        manager.auto_create_handle_loop()
        body = {
            "input_ids": input_ids,
            "sampling_params": sampling_params,
            "rid": rid,
            "return_logprob": return_logprob,
            "top_logprobs_num": top_logprobs_num,
        }
        problem = contract.contract_error({k: v for k, v in body.items() if v is not None})
        problem = problem or next(filter(None, (contract.verify_sampling(p, 50000) for p in sampling_params)), None)
        if problem:
            raise ValueError(problem)
        logprob = (int(top_logprobs_num or 0), False) if return_logprob else None
        events = {r: asyncio.Event() for r in rid}
        manager.running.update(events)
        try:
            return list(
                await asyncio.gather(
                    *(
                        manager.generator.run(ids, p, r, logprob, events[r])
                        for ids, p, r in zip(input_ids, sampling_params, rid, strict=True)
                    )
                )
            )
        finally:
            for r in rid:
                manager.running.pop(r, None)

    def shutdown(self) -> None:
        self.closed = True


@pytest.fixture
def fake_sglang(monkeypatch):
    module = types.ModuleType("sglang")
    module.Engine = FakeEngine
    monkeypatch.setitem(sys.modules, "sglang", module)
    FakeEngine.instances.clear()
    FakeEngine.decode_s = 0.0
    return module


def _settings(**kwargs) -> Settings:
    return Settings(runtime="sglang-engine", model_path=load_tokenizer()[1], **kwargs)


async def _ready(rt) -> None:
    deadline = time.monotonic() + 20
    while (await rt.health()).state != HealthState.READY:
        assert (await rt.health()).state != HealthState.DOWN, await rt.health()
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


def test_engine_starts_without_blocking_or_reentering_the_loop(fake_sglang):
    """The old start() called the sync get_server_info() inside the running loop: RuntimeError."""

    async def main():
        rt = SGLangEngineRuntime(_settings())
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        began = time.monotonic()
        await rt.start()
        assert time.monotonic() - began < 0.2 and (await rt.health()).state == HealthState.STARTING
        await _ready(rt)
        tick_task.cancel()
        ids = await asyncio.to_thread(rt.tokenizer.encode_chat, [{"role": "user", "content": "hi"}])
        result = await rt.generate(GenerateRequest("e-1", tuple(ids), SamplingParams(max_new_tokens=64)))
        await rt.close()
        return rt, ticks, result

    rt, ticks, result = asyncio.run(main())
    assert ticks >= 5  # the loop ran while the Engine was being built (blocked, it would tick once)
    assert FakeEngine.instances[0].built_in_thread and FakeEngine.instances[0].kwargs["schedule_policy"] == "fcfs"
    assert rt.info.kv_capacity_tokens == KV * DP and rt.info.input_limit() == min(CONTEXT - 1, KV - 1) - 5
    assert rt.info.max_context_tokens == CONTEXT and rt.info.name == "fake-served"
    assert result.choices[0].finish_reason == "stop" and "日本語" in result.choices[0].text


def test_engine_logprobs_have_text_and_exact_bytes(fake_sglang):
    """async_generate has no return_text_in_logprobs: SGLang gives (logprob, id, None) tuples."""

    async def main():
        rt = SGLangEngineRuntime(_settings())
        await rt.start()
        await _ready(rt)
        params = SamplingParams(max_new_tokens=64, logprobs=True, top_logprobs=1)
        result = await rt.generate(GenerateRequest("e-2", (1, 2, 3), params))
        await rt.close()
        return result.choices[0]

    choice = asyncio.run(main())
    assert all(e["token"] for e in choice.logprobs)
    assert b"".join(bytes(e["bytes"]) for e in choice.logprobs).decode() == choice.text


def test_engine_abort_reaches_every_copy(fake_sglang):
    FakeEngine.decode_s = 0.2

    async def main():
        rt = SGLangEngineRuntime(_settings())
        await rt.start()
        await _ready(rt)
        params = SamplingParams(max_new_tokens=64, n=2, seed=5)
        task = asyncio.create_task(rt.generate(GenerateRequest("e-3", (1, 2, 3), params)))
        manager = FakeEngine.instances[0].tokenizer_manager
        while len(manager.running) < 2:
            await asyncio.sleep(0.01)
        await rt.abort(["e-3", "never-sent"])
        with pytest.raises(Aborted):
            await task
        with pytest.raises(UnsupportedParameter):
            await rt.generate(GenerateRequest("e-4", (1, 2), SamplingParams(max_new_tokens=4, top_p=0.0)))
        await rt.close()
        return manager.aborted

    assert asyncio.run(main())[:2] == ["e-3.0", "e-3.1"]  # then "never-sent": harmless


def test_engine_tokenizer_follows_sglangs_path(fake_sglang, tmp_path):
    """Text with the tokenizer's special tokens, chat through --chat-template (a .jinja file)."""
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>")

    async def main():
        rt = SGLangEngineRuntime(_settings(chat_template=str(template)))
        await rt.start()
        await _ready(rt)
        await rt.close()
        return rt

    rt = asyncio.run(main())
    tok = load_tokenizer()[0]
    assert FakeEngine.instances[0].kwargs["chat_template"] == str(template)
    assert rt.tokenizer.encode_chat([{"role": "user", "content": "hi"}]) == tok.encode("<user>hi<assistant>")
    assert rt.tokenizer.encode_text("hello") == tok("hello")["input_ids"]
