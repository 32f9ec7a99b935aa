"""Many SGLang workers behind the SGLang Model Gateway (smg, `smg launch --policy manual`), as one runtime.

Requests go to the gateway's POST /generate with an `X-SMG-Routing-Key` header: the lane the request's
subtree is pinned to (core/dispatch/affinity.py). smg's manual policy (smg 1.13.0, model_gateway/src/policies/
manual.rs) maps each key to one worker on first sight and keeps it there; it moves a key only when that worker
turns unhealthy. It offers no way to name the worker for a key (X-SMG-Target-Worker is read by the
consistent_hashing policy alone, as an index into an internal list whose order /workers does not promise), so
the dispatcher keeps one lane per healthy worker and lets `--assignment-mode min_group` (fewest busy keys)
spread the lanes. See docs/SCALE-OUT.md.

The worker list comes from the gateway's GET /workers (url, is_healthy, load); each worker's KV capacity
from its own GET /server_info (max_total_num_tokens, summed over DP ranks). Tokenization and model info are
read from a healthy worker directly: every worker serves the same model."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import httpx

from blendserve.core.runtime.base import GenerateRequest, GenerateResult, RuntimeError_
from blendserve.core.runtime.sglang_http import HTTPTokenizer, SGLangHTTPRuntime, _result, sampling_params
from blendserve.core.sched.perf_model import PerfModel

ROUTING_KEY_HEADER = "X-SMG-Routing-Key"


@dataclass(frozen=True)
class WorkerState:
    url: str
    healthy: bool
    load: int  # requests in flight at the gateway for this worker
    kv_capacity_tokens: int


def kv_capacity(server_info: dict, default: int) -> int:
    """KV pool size in tokens. With --dp-size > 1 the top-level figure is rank 0's only: sum the ranks."""
    ranks = [s.get("memory_usage", {}).get("token_capacity") for s in server_info.get("internal_states") or []]
    if ranks and all(isinstance(r, int) and r > 0 for r in ranks):
        return sum(ranks)
    return int(server_info.get("max_total_num_tokens") or default)


class FleetTokenizer(HTTPTokenizer):
    """/v1/tokenize on one healthy worker; moves to another when that one stops answering (retryable)."""

    def __init__(self, urls: list[str], timeout: float) -> None:
        super().__init__(urls[0], timeout)
        self.urls, self.timeout = urls, timeout

    def use(self, urls: list[str]) -> None:
        if urls and str(self.client.base_url).rstrip("/") not in urls:
            self.client.close()
            self.client = httpx.Client(base_url=urls[0], timeout=self.timeout)
        self.urls = urls

    def _tokens(self, payload: dict) -> list[int]:
        try:
            return super()._tokens(payload)
        except httpx.TransportError as exc:
            raise RuntimeError_(f"tokenizer worker unreachable: {exc}") from exc


class GatewayRuntime(SGLangHTTPRuntime):
    """The gateway is the data path; the workers are read for their state. `workers()` is the fleet now."""

    def __init__(self, gateway_url: str, perf: PerfModel, timeout_s: float = 600.0, lane_concurrency: int = 256):
        super().__init__(gateway_url, perf, timeout_s=timeout_s, max_concurrency=lane_concurrency)
        self.tokenizer.client.close()
        self.admin = httpx.AsyncClient(timeout=10.0)
        self._capacity: dict[str, int] = {}
        self.fleet: list[WorkerState] = []

    def route_headers(self, request: GenerateRequest) -> dict[str, str]:
        return {ROUTING_KEY_HEADER: request.route} if request.route else {}

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        """smg's /generate takes ONE request per call (a batched input_ids/rid list is a 400 there): n copies go as
        n calls with the same routing key, so they land on the same worker."""
        payloads = []
        for i in range(request.params.n):
            payload = {
                "input_ids": list(request.input_ids),
                "sampling_params": sampling_params(request),
                "rid": request.rid if request.params.n == 1 else f"{request.rid}.{i}",
                "stream": False,
            }
            if request.params.logprobs:
                payload.update(
                    return_logprob=True, top_logprobs_num=request.params.top_logprobs, return_text_in_logprobs=True
                )
            payloads.append(payload)
        items = await asyncio.gather(*(self._one(p, request) for p in payloads))
        return _result(request, list(items))

    async def _one(self, payload: dict, request: GenerateRequest) -> dict:
        try:
            resp = await self.client.post("/generate", json=payload, headers=self.route_headers(request))
        except httpx.HTTPError as exc:
            raise RuntimeError_(f"gateway unreachable: {exc}") from exc
        if resp.status_code >= 400:  # smg answers 5xx when no healthy worker is left: retryable
            raise RuntimeError_(
                f"gateway /generate {resp.status_code}: {resp.text[:300]}", retryable=resp.status_code >= 500
            )
        return resp.json()

    async def workers(self) -> list[WorkerState]:
        """The gateway's workers with their health and each one's KV capacity (read once per worker URL).
        Raises RuntimeError_ (retryable) when the gateway does not answer."""
        try:
            resp = await self.client.get("/workers")
            resp.raise_for_status()
            listed = resp.json().get("workers", [])
        except (httpx.HTTPError, ValueError) as exc:
            raise RuntimeError_(f"gateway /workers unavailable: {exc}") from exc
        out = []
        for w in listed:
            url = str(w.get("url", "")).rstrip("/")
            healthy = bool(w.get("is_healthy")) and w.get("status", "ready") == "ready"
            if healthy and url not in self._capacity:
                info = await self._worker_json(url, "/server_info", "/get_server_info")
                if info is None:
                    healthy = False
                else:
                    self._capacity[url] = kv_capacity(info, self.perf.kv_capacity_tokens)
            out.append(WorkerState(url, healthy, int(w.get("load") or 0), self._capacity.get(url, 0)))
        self.fleet = out
        healthy_urls = [w.url for w in out if w.healthy]
        if isinstance(self.tokenizer, FleetTokenizer):
            self.tokenizer.use(healthy_urls)
        return out

    async def _worker_json(self, url: str, *paths: str) -> dict | None:
        for path in paths:
            try:
                resp = await self.admin.get(url + path)
            except httpx.HTTPError:
                return None
            if resp.status_code == 200:
                return resp.json()
        return None

    async def start(self, wait_s: float = 60.0) -> None:
        """Model and context from a healthy worker. smg registers workers a few seconds after it starts: waits up
        to wait_s for one, then raises RuntimeError_."""
        deadline = time.monotonic() + wait_s
        while True:
            with contextlib.suppress(RuntimeError_):
                healthy = [w for w in await self.workers() if w.healthy]
                if healthy:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError_(f"the gateway at {self.base_url} has no healthy worker after {wait_s:.0f} s")
            await asyncio.sleep(0.25)
        self.tokenizer = FleetTokenizer([w.url for w in healthy], 60.0)
        probe = SGLangHTTPRuntime(healthy[0].url, self.perf, max_concurrency=self.info.max_concurrency)
        try:
            await probe.start()
        finally:
            await probe.close()
        self.info = probe.info
        self.info.kv_capacity_tokens = min(w.kv_capacity_tokens for w in healthy)

    async def close(self) -> None:
        await super().close()
        await self.admin.aclose()
