"""A stand-in for an SGLang 0.5.23 server, written from SGLang's source as summarised in SGLANG-NOTES.md:
the /generate contract gate (unknown sampling_params keys -> 400, unknown top-level keys ignored), batch
lists in input order, finish_reason dicts, meta_info with cached_tokens from a radix-style prefix cache,
unique in-flight rids, /abort_request, /model_info, /server_info (+ deprecated aliases), /v1/models,
/v1/tokenize (prompt or messages). Generation itself is fake and deterministic."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SAMPLING_KEYS = {
    "max_new_tokens",
    "stop",
    "stop_token_ids",
    "stop_regex",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "min_new_tokens",
    "n",
    "json_schema",
    "regex",
    "ebnf",
    "structural_tag",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "no_stop_trim",
    "stream_interval",
    "logit_bias",
    "sampling_seed",
    "custom_params",
    "beam_width",
    "watermark",
    "choice",
}
EOS = 2


class RadixCache:
    """Longest cached prefix of a token sequence (what SGLang reports as cached_tokens)."""

    def __init__(self) -> None:
        self.root: dict = {}

    def match_and_insert(self, ids: list[int]) -> int:
        node, matched, still = self.root, 0, True
        for tok in ids:
            if still and tok in node:
                matched += 1
            else:
                still = False
            node = node.setdefault(tok, {})
        return matched


def build_app(model_name: str = "standin-model", max_total_num_tokens: int = 500_000, delay: float = 0.0):
    app = FastAPI()
    cache = RadixCache()
    active: set[str] = set()
    app.state.calls = []

    def bad(message: str, status: int = 400):
        return JSONResponse({"error": {"message": message}}, status_code=status)

    @app.post("/generate")
    async def generate(request: Request):
        body = await request.json()
        app.state.calls.append(body)
        ids = body.get("input_ids")
        if ids is None or "text" in body:
            return bad("this stand-in takes input_ids only")
        batch = isinstance(ids[0], list)
        ids_list = ids if batch else [ids]
        params = body.get("sampling_params") or {}
        params_list = params if isinstance(params, list) else [params] * len(ids_list)
        rids = body.get("rid") or [f"auto-{time.time_ns()}-{i}" for i in range(len(ids_list))]
        rids = (
            rids if isinstance(rids, list) else [rids] if not batch else [f"{rids}_{i}" for i in range(len(ids_list))]
        )
        for p in params_list:
            unknown = set(p) - SAMPLING_KEYS
            if unknown:
                return bad(f"unknown field `{sorted(unknown)[0]}`, expected one of `max_new_tokens`, ...")
        if any(r in active for r in rids) or len(set(rids)) != len(rids):
            return bad("Duplicate request ID detected")
        active.update(rids)
        try:
            if delay:
                await asyncio.sleep(delay)
            out = [_one(cache, toks, p, rid) for toks, p, rid in zip(ids_list, params_list, rids, strict=True)]
        finally:
            active.difference_update(rids)
        return out if batch else out[0]

    @app.get("/model_info")
    async def model_info():
        return {"model_path": f"/models/{model_name}", "served_model_name": model_name, "is_generation": True}

    @app.get("/get_model_info")
    async def get_model_info():
        return await model_info()

    @app.get("/server_info")
    async def server_info():
        return {
            "max_total_num_tokens": max_total_num_tokens,
            "max_req_input_len": 32000,
            "schedule_policy": "fcfs",
            "internal_states": [{"memory_usage": {"token_capacity": max_total_num_tokens}}],
        }

    @app.get("/get_server_info")
    async def get_server_info():
        return await server_info()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "max_model_len": 32768}]}

    @app.post("/v1/tokenize")
    async def tokenize(request: Request):
        body = await request.json()
        if "messages" in body:
            text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in body["messages"])
            text += "<|im_start|>assistant\n" if body.get("add_generation_prompt", True) else ""
        else:
            text = body["prompt"]
        tokens = [b + 10 for b in text.encode()]
        return {"tokens": tokens, "count": len(tokens), "max_model_len": 32768}

    @app.post("/abort_request")
    async def abort(request: Request):
        return {"success": True}

    @app.get("/health")
    async def health():
        return {}

    return app


def _one(cache: RadixCache, toks: list[int], p: dict, rid: str) -> dict:
    max_new = int(p.get("max_new_tokens", 128))
    natural = 3 + len(toks) % 7
    n = min(max_new, natural)
    finish = {"type": "length", "length": n} if n == max_new and n < natural else {"type": "stop", "matched": EOS}
    cached = cache.match_and_insert(toks)
    return {
        "text": " ".join(f"w{(t + i) % 97}" for i, t in enumerate(toks[:n])),
        "output_ids": toks[:n],
        "meta_info": {
            "id": rid,
            "finish_reason": finish,
            "prompt_tokens": len(toks),
            "completion_tokens": n,
            "cached_tokens": cached,
            "reasoning_tokens": 0,
            "weight_version": "default",
            "num_retractions": 0,
            "e2e_latency": 0.01,
        },
    }


class StandinServer:
    """Runs the stand-in on a real port in a background thread."""

    def __init__(self, port: int, **kwargs) -> None:
        self.app = build_app(**kwargs)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> StandinServer:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
