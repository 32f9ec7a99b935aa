"""Many SGLang workers behind the SGLang Model Gateway (smg 1.13.0, `smg launch --policy consistent_hashing`), as
one runtime.

Requests go to the gateway's POST /generate with an `X-SMG-Routing-Key` header: the lane the request's
subtree is pinned to (core/sched/affinity.py). smg's consistent_hashing policy (model_gateway/src/policies/
consistent_hashing.rs, worker/hash_ring.rs) sends a key to the first healthy worker at or after the key's point
on a blake3 ring of the worker URLs; the dispatcher replays that ring (smg_ring.py) and mints one key per
worker whose ring successor is that worker, so each lane is bound to its own worker (workers.py). smg's /generate
takes ONE request per call (a batched input_ids/rid list is a 400 there), so the copies of an n > 1 line go as
n calls with the same key. See docs/SCALE-OUT.md.

The worker list is the gateway's GET /workers (url, is_healthy, status, load); each worker's KV capacity is
its own GET /server_info. Tokenization and model info are read from a healthy worker directly: every worker
serves the same model, and the gateway need not proxy those routes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from blendserve.core.runtime import sglang_info, sglang_params
from blendserve.core.runtime.base import (
    GenerateRequest,
    GenerateResult,
    HealthState,
    RuntimeFailure,
    RuntimeUnavailable,
)
from blendserve.core.runtime.sglang_http import SGLangHTTPRuntime, _json
from blendserve.core.runtime.sglang_result import parse_items
from blendserve.core.runtime.sglang_tokenize import HTTPTokenizer

ROUTING_KEY_HEADER = "X-SMG-Routing-Key"
COPY_KEYS = ("input_ids", "sampling_params", "rid")  # per-copy lists in a batched body


@dataclass(frozen=True)
class WorkerState:
    url: str
    healthy: bool
    load: int  # requests in flight at the gateway for this worker
    kv_capacity_tokens: int


class FleetTokenizer(HTTPTokenizer):
    """/v1/tokenize on one healthy worker; moves to another when the fleet changes and that one is gone."""

    def __init__(self, url: str, timeout_s: float, connect_s: float) -> None:
        super().__init__(url, timeout_s, connect_s)
        self.timeout = httpx.Timeout(timeout_s, connect=connect_s)

    def use(self, urls: list[str]) -> None:
        if urls and str(self.client.base_url).rstrip("/") not in urls:
            old, self.client = self.client, httpx.Client(base_url=urls[0], timeout=self.timeout)
            old.close()


def split_dp_rank(url: str) -> tuple[str, int | None]:
    """`http://h:p@2` (a DP rank as smg --dp-aware lists it) -> ("http://h:p", 2); a plain URL -> (url, None)."""
    head, sep, tail = url.rpartition("@")
    if sep and tail.isdigit() and "://" in head:
        return head, int(tail)
    return url, None


def single_bodies(body: dict) -> list[dict]:
    """A batched /generate body (one item per copy) -> one body per copy, as smg takes them."""
    common = {k: v for k, v in body.items() if k not in COPY_KEYS}
    return [{**common, **{k: body[k][i] for k in COPY_KEYS}} for i in range(len(body["rid"]))]


class GatewayRuntime(SGLangHTTPRuntime):
    """The gateway is the data path; the workers are read for their state. `workers()` is the fleet now."""

    def __init__(self, gateway_url: str, perf, timeout_s: float = 600.0, max_concurrency: int = 256, **kwargs):
        super().__init__(gateway_url, perf, timeout_s=timeout_s, max_concurrency=max_concurrency, **kwargs)
        self._tokenize_timeout = (kwargs.get("tokenize_timeout_s", 30.0), self.info_timeout.connect or 5.0)
        self._capacity: dict[str, int] = {}
        self.fleet: list[WorkerState] = []

    async def workers(self) -> list[WorkerState]:
        """The gateway's workers with their health and each one's KV capacity (read once per worker URL).
        Raises RuntimeFailure (retryable) when the gateway does not answer."""
        try:
            resp = await self.client.get("/workers", timeout=self.info_timeout)
            resp.raise_for_status()
            listed = resp.json().get("workers", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise RuntimeFailure(f"gateway /workers unavailable: {exc}") from exc
        out = []
        for w in listed:
            url = str(w.get("url", "")).rstrip("/")
            healthy = bool(w.get("is_healthy")) and w.get("status", "ready") == "ready"
            if healthy and url not in self._capacity:
                try:
                    self._capacity[url] = await self._worker_capacity(url)
                except (httpx.HTTPError, RuntimeFailure, ValueError):
                    healthy = False  # listed but not answering yet: not a lane until it does
            out.append(WorkerState(url, healthy, int(w.get("load") or 0), self._capacity.get(url, 0)))
        self.fleet = out
        if isinstance(self.tokenizer, FleetTokenizer):
            self.tokenizer.use([split_dp_rank(w.url)[0] for w in out if w.healthy])
        return out

    async def _worker_capacity(self, url: str) -> int:
        """KV tokens of one worker. Under `smg --dp-aware` each DP rank of a server is its own worker, listed as
        `url@rank` (smg injects the rank into each request it forwards): that rank's own capacity."""
        base, rank = split_dp_rank(url)
        server = await self._get_json(base + "/server_info", base + "/get_server_info")
        if rank is not None:
            states = server.get("internal_states") or []
            per_rank = [(s.get("memory_usage") or {}).get("token_capacity") for s in states if isinstance(s, dict)]
            capacity = per_rank[rank] if rank < len(per_rank) else None
            if isinstance(capacity, int):
                return capacity
            return int(server.get("max_total_num_tokens") or self.perf.kv_capacity_tokens)
        return sglang_info.kv_capacity(server) or self.perf.kv_capacity_tokens

    async def _read_info(self) -> None:
        """Model, context and KV size from a healthy worker (the connector retries while there is none)."""
        healthy = [w for w in await self.workers() if w.healthy]
        if not healthy:
            raise RuntimeFailure(f"the gateway at {self.base_url} has no healthy worker yet")
        url, _ = split_dp_rank(healthy[0].url)
        if not isinstance(self.tokenizer, FleetTokenizer):
            self.tokenizer.close()
            self.tokenizer = FleetTokenizer(url, *self._tokenize_timeout)
        model = await self._get_json(url + "/model_info", url + "/get_model_info")
        server = await self._get_json(url + "/server_info", url + "/get_server_info")
        models = await self._get_json(url + "/v1/models")
        context = next((m.get("max_model_len") for m in models.get("data", []) if m.get("max_model_len")), None)
        sglang_info.apply_server_info(self.info, server, context, sglang_info.model_name(model, self.model_name))
        self.info.kv_capacity_tokens = min(w.kv_capacity_tokens for w in healthy)
        await self._load_vocabulary(model)

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self._state == HealthState.STARTING:
            raise RuntimeUnavailable(f"the gateway at {self.base_url} is not ready: {self._detail}")
        sglang_params.check(request, self.info)
        body = sglang_params.generate_body(request, with_logprob_text=self.token_text is None)
        headers = {ROUTING_KEY_HEADER: request.route} if request.route else None
        with self.rids.tracking(request.rid, body["rid"]):
            resps = await asyncio.gather(*(self._post_generate(b, headers) for b in single_bodies(body)))
            items = [_json(r) for r in resps]
            result, timings = parse_items(request, items, self.rids.was_aborted(request.rid), self.token_text)
        for tokens, seconds in timings:
            self.deadlines.observe(tokens, seconds)
        return result
