"""SGLang over HTTP: native POST /generate with input_ids (so our token tree and SGLang's radix cache see the
same tokens), /v1/tokenize for chat-template token ids, /model_info + /server_info for the model and KV size.

Launch SGLang with `--schedule-policy fcfs` (keeps our dispatch order), and `--enable-deterministic-inference`
when seeds must hold (README). start() returns at once: a background task connects (bounded timeouts on every
info call, backoff between tries) and health() says STARTING until it has, so the API serves while SGLang is
down or its info endpoints hang. Until then generate() raises RuntimeUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from blendserve.core.runtime import sglang_info, sglang_params
from blendserve.core.runtime.base import (
    EmbedParams,
    EmbedResult,
    GenerateRequest,
    GenerateResult,
    Health,
    HealthState,
    ModelInfo,
    RuntimeFailure,
    RuntimeUnavailable,
    UnsupportedParameter,
)
from blendserve.core.runtime.deadline import DeadlineEstimator
from blendserve.core.runtime.rid_book import RidBook
from blendserve.core.runtime.sglang_result import parse_items
from blendserve.core.runtime.sglang_tokenize import HTTPTokenizer, _message
from blendserve.core.runtime.token_text import TokenText
from blendserve.core.sched.perf_model import PerfModel

log = logging.getLogger("blendserve.sglang")
HEALTH_CACHE_S = 1.0
sampling_params = sglang_params.sampling_params


class SGLangHTTPRuntime:
    def __init__(
        self,
        base_url: str,
        perf: PerfModel,
        timeout_s: float = 600.0,
        max_concurrency: int = 256,
        model_name: str | None = None,
        info_timeout_s: float = 5.0,
        tokenize_timeout_s: float = 30.0,
        tokenizer_path: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.perf = perf
        self.model_name = model_name
        self.tokenizer_path = tokenizer_path
        self.info_timeout = httpx.Timeout(info_timeout_s, connect=min(info_timeout_s, 5.0))
        # /generate: the dispatcher's deadline (deadline_s) cancels first; this read timeout is the backstop
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=5.0))
        self.tokenizer = HTTPTokenizer(self.base_url, tokenize_timeout_s, connect_s=min(info_timeout_s, 5.0))
        self.info = ModelInfo(
            model_name or "",  # "" until SGLang names its model (then any model name is accepted at intake)
            perf.kv_capacity_tokens,
            32768,
            perf,
            max_concurrency,
            frozenset({"logprobs", "seed", "n"}),
        )
        self.deadlines = DeadlineEstimator(timeout_s)
        self.token_text: TokenText | None = None
        self._state, self._detail = HealthState.STARTING, "connecting"
        self._checked = 0.0
        self._connector: asyncio.Task | None = None
        self.rids = RidBook()

    # ---- connection -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_until_ready(), name="sglang-connect")

    async def _connect_until_ready(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._read_info()
                self._set(HealthState.READY, "")
                log.info(
                    "SGLang at %s ready: %s, KV %d tokens", self.base_url, self.info.name, self.info.kv_capacity_tokens
                )
                return
            except (httpx.HTTPError, RuntimeFailure, ValueError) as exc:
                self._set(self._state, f"{type(exc).__name__}: {exc}")
                log.warning("SGLang at %s not ready (%s); retrying in %.1f s", self.base_url, self._detail, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _get_json(self, *paths: str) -> dict:
        """First path that answers 200 (0.5.23 names, then the deprecated aliases of older servers)."""
        status = None
        for path in paths:
            resp = await self.client.get(path, timeout=self.info_timeout)
            if resp.status_code == 200:
                body = resp.json()
                if isinstance(body, dict):
                    return body
            status = resp.status_code
        raise RuntimeFailure(f"SGLang answered {status} for {paths}")

    async def _read_info(self) -> None:
        model = await self._get_json("/model_info", "/get_model_info")
        server = await self._get_json("/server_info", "/get_server_info")
        models = await self._get_json("/v1/models")
        context = next((m.get("max_model_len") for m in models.get("data", []) if m.get("max_model_len")), None)
        sglang_info.apply_server_info(self.info, server, context, sglang_info.model_name(model, self.model_name))
        await self._load_vocabulary(model)

    async def _load_vocabulary(self, model: dict) -> None:
        """The vocabulary for logprobs' exact token bytes: the configured tokenizer, else the paths the server
        reports (readable when it shares this machine's files). None of them readable: SGLang's per-token text."""
        if self.token_text is None:
            self.token_text = await asyncio.to_thread(
                _load_token_text, self.tokenizer_path, model.get("tokenizer_path"), model.get("model_path")
            )

    def _set(self, state: HealthState, detail: str) -> None:
        self._state, self._detail, self._checked = state, detail, time.monotonic()

    async def health(self) -> Health:
        if self._connector is not None and not self._connector.done():
            return Health(self._state, self._detail)
        if time.monotonic() - self._checked < HEALTH_CACHE_S:
            return Health(self._state, self._detail)
        try:
            resp = await self.client.get("/ready", timeout=httpx.Timeout(2.0))
            if resp.status_code == 404:  # older servers: /health
                resp = await self.client.get("/health", timeout=httpx.Timeout(2.0))
            ok = resp.status_code == 200
            if ok and self._state == HealthState.DOWN:  # back (maybe restarted with other limits): re-read them
                await asyncio.wait_for(self._read_info(), timeout=2.0)
            self._set(
                HealthState.READY if ok else HealthState.DOWN, "" if ok else f"/ready answered {resp.status_code}"
            )
        except (httpx.HTTPError, RuntimeFailure, ValueError, TimeoutError) as exc:
            self._set(HealthState.DOWN, f"{type(exc).__name__}: {exc}")
        return Health(self._state, self._detail)

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        await self.client.aclose()
        self.tokenizer.close()

    # ---- requests ---------------------------------------------------------------------------------------
    def deadline_s(self, request: GenerateRequest) -> float:
        return self.deadlines.deadline_s(request.params.max_new_tokens)

    async def abort(self, rids: Sequence[str]) -> None:
        if self._state == HealthState.STARTING:
            return  # nothing was sent yet
        for rid in rids:
            for copy in self.rids.to_abort(rid):
                try:
                    await self.client.post(
                        "/abort_request", json={"rid": copy, "abort_all": False}, timeout=self.info_timeout
                    )
                except httpx.HTTPError as exc:  # best effort: a dropped connection aborts it within 4 s too
                    log.warning("abort of %s failed: %s", copy, exc)

    async def embed(self, params: EmbedParams) -> EmbedResult:
        raise UnsupportedParameter(
            "Embeddings need an SGLang embedding model; this adapter serves generation.", param="url"
        )

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self._state == HealthState.STARTING:
            raise RuntimeUnavailable(f"SGLang at {self.base_url} is not ready: {self._detail}")
        sglang_params.check(request, self.info)
        body = sglang_params.generate_body(request, with_logprob_text=self.token_text is None)
        with self.rids.tracking(request.rid, body["rid"]):
            resp = await self._post_generate(body)
            result, timings = parse_items(request, _json(resp), self.rids.was_aborted(request.rid), self.token_text)
        for tokens, seconds in timings:
            self.deadlines.observe(tokens, seconds)
        return result

    async def _post_generate(self, body: dict, headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            resp = await self.client.post("/generate", json=body, headers=headers)
        except httpx.ConnectError as exc:
            self._set(HealthState.DOWN, f"ConnectError: {exc}")
            raise RuntimeUnavailable(f"SGLang unreachable: {exc}") from exc
        except httpx.HTTPError as exc:
            raise RuntimeFailure(f"SGLang /generate failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code == 400:
            message = _message(resp)
            if "Duplicate request ID" in message:  # a retry with a new attempt suffix is fine
                raise RuntimeFailure(f"SGLang /generate 400: {message}")
            raise UnsupportedParameter(f"SGLang rejected the request: {message}")
        if resp.status_code >= 400:
            raise RuntimeFailure(
                f"SGLang /generate {resp.status_code}: {resp.text[:300]}", retryable=resp.status_code >= 500
            )
        return resp


def _json(resp: httpx.Response) -> object:
    try:
        return resp.json()
    except ValueError as exc:
        raise RuntimeFailure(f"SGLang /generate answered malformed JSON: {resp.text[:100]!r}") from exc


def _load_token_text(*paths: str | None) -> TokenText | None:
    """The model's tokenizer for exact logprob bytes, when one of the paths is a local directory."""
    for path in paths:
        if path and Path(path).is_dir():
            try:
                from transformers import AutoTokenizer

                return TokenText(AutoTokenizer.from_pretrained(path))
            except Exception as exc:  # an optional refinement; SGLang's per-token text is the fallback
                log.warning("no tokenizer from %s (%s): logprob bytes come from SGLang's token text", path, exc)
    return None
