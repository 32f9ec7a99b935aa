"""The stand-in's routes: SGLang 0.5.23's native API as far as our adapters (and smg) use it.

/generate checks, in SGLang's order: the contract gate (the wheel's own codec, 400 {"error": "<text>"}),
SamplingParams.verify, unique in-flight rids, the context checks of the tokenizer manager, then the
scheduler's max_req_input_len (each a 400 {"error": {"message": ...}}); one failing item fails a batched call.
/server_info reports each DP rank; the top-level max_total_num_tokens is one rank's, as SGLang's is."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.sglang import contract
from tests.fakes.sglang.faults import Faults
from tests.fakes.sglang.generation import Generator
from tests.fakes.sglang.radix import RadixCache
from tests.fakes.sglang.tokenizing import Tokenize


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


def build_app(
    tokenizer,
    tokenizer_dir: str = "",
    model_name: str = "standin-model",
    kv_capacity: int = 500_000,
    dp_size: int = 1,
    page_size: int = 1,
    context_len: int = 8192,
    decode_s: float = 0.0,
    builtin_template: str | None = None,
) -> FastAPI:
    """kv_capacity is per DP rank (SGLang's max_total_num_tokens); the one radix cache holds dp_size times it."""
    app = FastAPI()
    faults = Faults()
    cache = RadixCache(kv_capacity * dp_size, page_size)
    gen = Generator(tokenizer, cache, decode_s)
    tokenize = Tokenize(tokenizer, context_len, builtin_template)
    max_req_input_len = min(context_len - 1, kv_capacity - 1) - 5
    active: dict[str, asyncio.Event] = {}
    app.state.calls, app.state.faults, app.state.cache, app.state.gen = [], faults, cache, gen
    app.state.aborts = []

    def item_problem(ids: object, p: dict, rid: str, seen: set[str]) -> str | None:
        if not isinstance(ids, list) or not ids:
            return "input_ids must be a non-empty list of token ids."
        problem = contract.verify_sampling(p, len(tokenizer))
        if problem:
            return problem
        if rid in active or rid in seen:
            return f"Duplicate request ID detected: {rid}"
        seen.add(rid)
        if len(ids) >= context_len:
            return f"The input ({len(ids)} tokens) is longer than the model's context length ({context_len} tokens)."
        max_new = p.get("max_new_tokens")
        if max_new is not None and len(ids) + max_new > context_len:
            return f"Requested token count exceeds the model's maximum context length of {context_len} tokens."
        if len(ids) >= max_req_input_len:
            return (
                f"Input length ({len(ids)} tokens) exceeds the maximum allowed length ({max_req_input_len} tokens). "
                "Use a shorter input or enable --allow-auto-truncate."
            )
        return None

    @app.post("/generate")
    async def generate(request: Request):
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return _bad(f"invalid JSON: {exc}")
        app.state.calls.append(body)
        fault = await faults.apply("generate")
        if fault is not None:
            return fault
        problem = contract.contract_error(body)
        if problem is not None:
            return JSONResponse({"error": problem}, status_code=400)
        if body.get("text") is not None:
            return _bad("this stand-in takes input_ids only")
        ids = body.get("input_ids")
        batch = isinstance(ids, list) and bool(ids) and isinstance(ids[0], list)
        ids_list = ids if batch else [ids]
        params = body.get("sampling_params") or {}
        params_list = params if isinstance(params, list) else [params] * len(ids_list)
        rids = body.get("rid") or [uuid.uuid4().hex for _ in ids_list]
        rids = (
            rids if isinstance(rids, list) else [rids] if not batch else [f"{rids}_{i}" for i in range(len(ids_list))]
        )
        if len(params_list) != len(ids_list) or len(rids) != len(ids_list):
            return _bad("sampling_params and rid must have one entry per input")
        if any(p.get("n", 1) != 1 for p in params_list):
            return _bad("the stand-in does not model parallel sampling (n > 1) inside one item")
        seen: set[str] = set()
        for one, p, rid in zip(ids_list, params_list, rids, strict=True):
            problem = item_problem(one, p, rid, seen)
            if problem is not None:
                return _bad(problem)
        logprob = None
        if body.get("return_logprob"):
            logprob = (int(body.get("top_logprobs_num") or 0), bool(body.get("return_text_in_logprobs")))
        events = {rid: asyncio.Event() for rid in rids}
        active.update(events)
        try:
            out = await asyncio.gather(
                *(
                    gen.run(one, p, rid, logprob, events[rid])
                    for one, p, rid in zip(ids_list, params_list, rids, strict=False)
                )
            )
        finally:
            for rid in rids:
                active.pop(rid, None)
        return out if batch else out[0]

    @app.post("/abort_request")
    async def abort_request(request: Request):
        body = await request.json()
        app.state.aborts.append(body)
        if body.get("abort_all"):
            targets = list(active.values())
        else:
            event = active.get(body.get("rid") or "")  # exact match only (tokenizer_manager.py:2241-2253)
            targets = [event] if event is not None else []
        for event in targets:
            event.set()
        return Response(status_code=200)

    async def model_info():
        return await faults.apply("info") or {
            "model_path": f"/models/{model_name}",
            "tokenizer_path": tokenizer_dir,
            "served_model_name": model_name,
            "is_generation": True,
            "weight_version": "default",
        }

    async def server_info():
        return await faults.apply("info") or {
            "max_total_num_tokens": kv_capacity,
            "max_req_input_len": max_req_input_len,
            "dp_size": dp_size,
            "page_size": page_size,
            "schedule_policy": "fcfs",
            "context_length": context_len,
            "internal_states": [
                {"memory_usage": {"token_capacity": kv_capacity}, "last_gen_throughput": 0.0, "dp_rank": rank}
                for rank in range(dp_size)
            ],
            "version": contract.VERSION,
        }

    async def models():
        return await faults.apply("info") or {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "owned_by": "sglang", "max_model_len": context_len}],
        }

    for path, handler in (
        ("/model_info", model_info),
        ("/get_model_info", model_info),
        ("/server_info", server_info),
        ("/get_server_info", server_info),
        ("/v1/models", models),
    ):
        app.add_api_route(path, handler, methods=["GET"])

    @app.post("/v1/tokenize")
    async def v1_tokenize(request: Request):
        fault = await faults.apply("tokenize")
        if fault is not None:
            return fault
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return _bad(f"invalid JSON: {exc}")
        return tokenize.handle(body)

    @app.get("/health")
    @app.get("/ready")
    async def ready():
        return Response(status_code=503 if faults.down else 200)

    @app.post("/flush_cache")
    async def flush_cache():
        if active:
            return Response("Cache not flushed: requests are running.", status_code=400)
        cache.__init__(cache.capacity, cache.page)
        return Response("Cache flushed.")

    @app.get("/_faults")
    async def get_faults():
        return faults.describe()

    @app.post("/_faults")
    async def set_faults(request: Request):
        problem = faults.set(await request.json())
        return _bad(problem) if problem else faults.describe()

    @app.delete("/_faults")
    async def clear_faults():
        faults.clear()
        return faults.describe()

    @app.get("/_stats")
    async def stats():
        return {
            **gen.stats,
            "cache_tokens": cache.size,
            "evicted_tokens": cache.evicted,
            "in_flight": len(active),
            "time": time.time(),
        }

    return app
