"""SGLang over HTTP: native POST /generate with input_ids (so our token tree and SGLang's radix cache see the
same tokens), /v1/tokenize for chat-template token ids, /model_info + /server_info for the model and KV size.

Launch SGLang with:  python -m sglang.launch_server --model-path M --schedule-policy fcfs --enable-metrics
(fcfs keeps our dispatch order; the radix cache stays on, i.e. no --disable-radix-cache). See README.
"""

from __future__ import annotations

import httpx

from blendserve.core.runtime.base import (
    Choice,
    GenerateRequest,
    GenerateResult,
    ModelInfo,
    RuntimeError_,
    UnsupportedParameter,
)
from blendserve.core.sched.perf_model import PerfModel


def sampling_params(req: GenerateRequest) -> dict:
    """OpenAI-side params -> SGLang's sampling_params keys (unknown keys are an HTTP 400 in SGLang)."""
    p = req.params
    out = {
        "max_new_tokens": p.max_new_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "frequency_penalty": p.frequency_penalty,
        "presence_penalty": p.presence_penalty,
    }
    if p.stop:
        out["stop"] = list(p.stop)
    if p.seed is not None:
        out["sampling_seed"] = p.seed
    return out


class HTTPTokenizer:
    """Token ids exactly as SGLang renders them (POST /v1/tokenize), so cache prefixes match."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=timeout)

    def _tokens(self, payload: dict) -> list[int]:
        resp = self.client.post("/v1/tokenize", json=payload)
        resp.raise_for_status()
        return list(resp.json()["tokens"])

    def encode_text(self, text: str) -> list[int]:
        return self._tokens({"prompt": text})

    def encode_chat(self, messages: list[dict]) -> list[int]:
        return self._tokens({"messages": messages, "add_generation_prompt": True})


class SGLangHTTPRuntime:
    def __init__(self, base_url: str, perf: PerfModel, timeout_s: float = 600.0, max_concurrency: int = 256) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.perf = perf
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)
        self.tokenizer = HTTPTokenizer(self.base_url, 60.0)
        self.info = ModelInfo(
            "unknown", perf.kv_capacity_tokens, 32768, perf, max_concurrency, frozenset({"logprobs", "seed", "n"})
        )

    async def _get_json(self, *paths: str) -> dict:
        """First path that answers 200 (0.5.23 names, then the deprecated aliases of older servers)."""
        last = None
        for path in paths:
            resp = await self.client.get(path)
            if resp.status_code == 200:
                return resp.json()
            last = resp
        raise RuntimeError_(f"SGLang at {self.base_url} answered {last.status_code if last else '?'} for {paths}")

    async def start(self) -> None:
        model = await self._get_json("/model_info", "/get_model_info")
        server = await self._get_json("/server_info", "/get_server_info")
        models = await self._get_json("/v1/models")
        name = model.get("served_model_name") or model.get("model_path") or "sglang-model"
        context = next((m.get("max_model_len") for m in models.get("data", []) if m.get("max_model_len")), None)
        self.info = ModelInfo(
            name,
            int(server.get("max_total_num_tokens") or self.perf.kv_capacity_tokens),
            int(context or server.get("max_req_input_len") or 32768),
            self.perf,
            self.info.max_concurrency,
            self.info.supports,
        )

    async def close(self) -> None:
        await self.client.aclose()
        self.tokenizer.client.close()

    async def abort(self, rid: str) -> None:
        await self.client.post("/abort_request", json={"rid": rid, "abort_all": False})

    async def embed(self, params) -> GenerateResult:
        raise UnsupportedParameter(
            "Embeddings need an SGLang embedding model; this adapter serves generation.", param="url"
        )

    def route_headers(self, request: GenerateRequest) -> dict[str, str]:
        """Extra headers for one /generate call (the gateway runtime adds its routing key)."""
        return {}

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        n = request.params.n
        rids = [request.rid] if n == 1 else [f"{request.rid}.{i}" for i in range(n)]
        payload = {
            "input_ids": [list(request.input_ids)] * n,
            "sampling_params": [sampling_params(request)] * n,
            "rid": rids,
            "stream": False,
        }
        if request.params.logprobs:
            payload.update(
                return_logprob=True, top_logprobs_num=request.params.top_logprobs, return_text_in_logprobs=True
            )
        try:
            resp = await self.client.post("/generate", json=payload, headers=self.route_headers(request))
        except httpx.HTTPError as exc:
            raise RuntimeError_(f"SGLang unreachable: {exc}") from exc
        if resp.status_code >= 400:
            raise RuntimeError_(
                f"SGLang /generate {resp.status_code}: {resp.text[:300]}", retryable=resp.status_code >= 500
            )
        items = resp.json()
        items = items if isinstance(items, list) else [items]
        return _result(request, items)


def _result(request: GenerateRequest, items: list[dict]) -> GenerateResult:
    choices, prompt, cached, retractions = [], 0, 0, 0
    for item in items:
        meta = item["meta_info"]
        finish = meta.get("finish_reason") or {}
        if finish.get("type") == "abort":
            raise RuntimeError_(f"SGLang aborted the request: {finish.get('message')}")
        prompt, cached = meta["prompt_tokens"], max(cached, meta.get("cached_tokens", 0))
        retractions += meta.get("num_retractions", 0)
        logprobs = None
        if "output_token_logprobs" in meta:
            tops = meta.get("output_top_logprobs") or [None] * len(meta["output_token_logprobs"])
            logprobs = [
                {
                    "token": text or "",
                    "logprob": lp,
                    "bytes": list((text or "").encode()),
                    "top_logprobs": [
                        {"token": t or "", "logprob": v, "bytes": list((t or "").encode())} for v, _, t in (top or [])
                    ],
                }
                for (lp, _, text), top in zip(meta["output_token_logprobs"], tops, strict=False)
            ]
        choices.append(
            Choice(
                item.get("text", ""),
                meta["completion_tokens"],
                "length" if finish.get("type") == "length" else "stop",
                logprobs,
            )
        )
    return GenerateResult(request.rid, tuple(choices), prompt, cached, retractions)
