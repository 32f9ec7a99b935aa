"""In-process sglang.Engine (GPU hosts; `pip install blendserve[sglang]`). sglang is imported lazily here only.

Event loops (srt/entrypoints/engine.py): the Engine's sync methods (get_server_info, flush_cache, generate)
run `self.loop.run_until_complete(...)` (:1570-1585), which raises "This event loop is already running" when
called from the server's loop, and the tokenizer manager binds its receive loop to the loop of the first
async call (srt/managers/tokenizer_manager.py:2440-2449). So:
- the Engine is built in a worker thread (its constructor blocks for the model load; the engine supports a
  non-main thread, :1988), and start() returns at once: health() says STARTING until it is built;
- capacity and limits are read without any sync Engine method: `await tokenizer_manager.get_internal_state()`
  (per DP rank, summed) and `_scheduler_init_result.scheduler_infos[0]` (max_req_input_len);
- every request goes through `async_generate` from the server's loop. It has no return_text_in_logprobs, so
  logprob text and bytes come from the token ids with the Engine's own tokenizer (token_text.py);
- tokenization uses the Engine's own tokenizer (its --tokenizer-path) and --chat-template when a .jinja file;
- abort: `tokenizer_manager.abort_request(rid=...)` per copy rid (the Engine has no public abort).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from blendserve.config import Settings
from blendserve.core.runtime import sglang_info, sglang_params
from blendserve.core.runtime.base import (
    EmbedParams,
    EmbedResult,
    GenerateRequest,
    GenerateResult,
    Health,
    HealthState,
    ModelInfo,
    RuntimeUnavailable,
    Tokenizer,
    UnsupportedParameter,
)
from blendserve.core.runtime.deadline import DeadlineEstimator
from blendserve.core.runtime.hf_tokenizer import HFTokenizer, load_chat_template
from blendserve.core.runtime.rid_book import RidBook
from blendserve.core.runtime.sglang_result import parse_items
from blendserve.core.runtime.token_text import TokenText
from blendserve.core.sched.perf_model import PerfModel

log = logging.getLogger("blendserve.sglang")


class _NotReady:
    """The tokenizer until the Engine is built: every call is RuntimeUnavailable (retry later)."""

    def encode_text(self, text: str) -> list[int]:
        raise RuntimeUnavailable("the SGLang engine is still starting")

    def encode_chat(self, messages: list[dict]) -> list[int]:
        raise RuntimeUnavailable("the SGLang engine is still starting")


def _sglang_engine_class() -> Callable[..., Any]:
    import sglang  # lazy: GPU hosts only

    return sglang.Engine


class SGLangEngineRuntime:
    def __init__(self, settings: Settings, engine_factory: Callable[..., Any] | None = None, **engine_kwargs) -> None:
        if not settings.model_path:
            raise ValueError("sglang-engine needs BLENDSERVE_MODEL_PATH")
        self.settings = settings
        self.engine_factory = engine_factory
        self.engine_kwargs = {"schedule_policy": "fcfs", **engine_kwargs}
        if settings.tokenizer_path:
            self.engine_kwargs.setdefault("tokenizer_path", settings.tokenizer_path)
        if settings.chat_template:
            self.engine_kwargs.setdefault("chat_template", settings.chat_template)
        self.chat_template = load_chat_template(self.engine_kwargs.get("chat_template"))
        self.perf = PerfModel.preset(gpu=settings.gpu)
        self.info = ModelInfo(
            settings.model_name or settings.model_path,
            self.perf.kv_capacity_tokens,
            32768,
            self.perf,
            256,
            frozenset({"logprobs", "seed", "n"}),
        )
        self.engine: Any = None  # sglang.Engine once built (typed by sglang, which is not installed here)
        self.tokenizer: Tokenizer = _NotReady()
        self.token_text: TokenText | None = None
        self.deadlines = DeadlineEstimator(settings.request_timeout_s)
        self._state, self._detail = HealthState.STARTING, "loading the model"
        self._builder: asyncio.Task | None = None
        self.rids = RidBook()

    async def start(self) -> None:
        self._builder = asyncio.create_task(self._build(), name="sglang-engine-start")

    async def _build(self) -> None:
        try:
            factory = self.engine_factory or _sglang_engine_class()
            self.engine = await asyncio.to_thread(factory, model_path=self.settings.model_path, **self.engine_kwargs)
            await self._read_info()
            self._state, self._detail = HealthState.READY, ""
        except Exception as exc:  # health() tells; the API keeps serving
            log.exception("the SGLang engine failed to start")
            self._state, self._detail = HealthState.DOWN, f"{type(exc).__name__}: {exc}"

    async def _read_info(self) -> None:
        manager = self.engine.tokenizer_manager
        first = dict(self.engine._scheduler_init_result.scheduler_infos[0])
        states = await asyncio.wait_for(manager.get_internal_state(), timeout=30.0)
        server = {
            **first,
            "internal_states": states,
            "dp_size": getattr(self.engine.server_args, "dp_size", 1),
        }
        name = self.settings.model_name or getattr(manager, "served_model_name", None)
        sglang_info.apply_server_info(self.info, server, getattr(manager, "context_len", None), name)
        self.tokenizer = HFTokenizer(manager.tokenizer, self.chat_template)
        self.token_text = TokenText(manager.tokenizer)

    async def health(self) -> Health:
        return Health(self._state, self._detail)

    def deadline_s(self, request: GenerateRequest) -> float:
        return self.deadlines.deadline_s(request.params.max_new_tokens)

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self._state != HealthState.READY:
            raise RuntimeUnavailable(f"the SGLang engine is not ready: {self._detail}")
        sglang_params.check(request, self.info)
        body = sglang_params.generate_body(request, with_logprob_text=False)
        try:
            with self.rids.tracking(request.rid, body["rid"]):
                out = await self.engine.async_generate(
                    input_ids=body["input_ids"],
                    sampling_params=body["sampling_params"],
                    rid=body["rid"],
                    return_logprob=request.params.logprobs,
                    top_logprobs_num=request.params.top_logprobs if request.params.logprobs else None,
                )
                items = out if isinstance(out, list) else [out]
                result, timings = parse_items(request, items, self.rids.was_aborted(request.rid), self.token_text)
        except ValueError as exc:  # the tokenizer manager's 400s (validation, too long) are per line
            raise UnsupportedParameter(f"SGLang rejected the request: {exc}") from exc
        for tokens, seconds in timings:
            self.deadlines.observe(tokens, seconds)
        return result

    async def embed(self, params: EmbedParams) -> EmbedResult:
        raise UnsupportedParameter("Embeddings need an SGLang embedding model.", param="url")

    async def abort(self, rids: Sequence[str]) -> None:
        if self.engine is None:
            return
        for rid in rids:
            for copy in self.rids.to_abort(rid):
                try:
                    self.engine.tokenizer_manager.abort_request(rid=copy)
                except Exception as exc:  # best effort, never raises
                    log.warning("abort of %s failed: %s", copy, exc)

    async def close(self) -> None:
        if self._builder is not None and not self._builder.done():
            self._builder.cancel()
        if self.engine is not None:
            await asyncio.to_thread(self.engine.shutdown)
