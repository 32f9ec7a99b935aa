"""A stand-in SGLang worker as its own process, for the scale-out tests behind the real smg gateway.

Thin on purpose: it wraps tests/fakes/sglang_standin.build_app and swaps in a prefix cache bounded by a KV
capacity (LRU, 16-token pages, as SGLang's radix cache evicts unreferenced leaves), and adds /standin_stats
(prompt and cached tokens served, requests, routing keys seen) so a test can read each worker's hit ratio.
When the faithful stand-in process (`python -m tests.fakes.sglang_standin --port P ...`) lands, switch to it.

    python -m tests.fakes.worker_process --port P --kv-capacity 20000 [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections import OrderedDict

import uvicorn
from fastapi import Request

from tests.fakes import sglang_standin

PAGE = 16


class LRUPrefixCache:
    """cached_tokens as a bounded radix cache reports them: the longest run of leading pages still resident."""

    def __init__(self, capacity_tokens: int) -> None:
        self.pages: OrderedDict[bytes, None] = OrderedDict()
        self.max_pages = max(1, capacity_tokens // PAGE)

    def match_and_insert(self, ids: list[int]) -> int:
        digest, matched, hit = hashlib.blake2b(digest_size=16), 0, True
        for start in range(0, len(ids) - len(ids) % PAGE, PAGE):
            digest.update(str(ids[start : start + PAGE]).encode())
            key = digest.digest()
            if hit and key in self.pages:
                matched += PAGE
                self.pages.move_to_end(key)
                continue
            hit = False
            self.pages[key] = None
            if len(self.pages) > self.max_pages:
                self.pages.popitem(last=False)
        return min(matched, max(0, len(ids) - 1))


def build_app(kv_capacity: int, delay: float, name: str):
    cache = LRUPrefixCache(kv_capacity)
    sglang_standin.RadixCache = lambda: cache  # the stand-in builds its cache through this name
    app = sglang_standin.build_app(model_name=name, max_total_num_tokens=kv_capacity, delay=delay)
    stats = {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "routing_keys": {}}

    @app.middleware("http")
    async def count(request: Request, call_next):
        key = request.headers.get("x-smg-routing-key")
        if request.url.path == "/generate" and key:
            stats["routing_keys"][key] = stats["routing_keys"].get(key, 0) + 1
        return await call_next(request)

    real_one = sglang_standin._one

    def counted(c, toks, p, rid):
        out = real_one(c, toks, p, rid)
        stats["requests"] += 1
        stats["prompt_tokens"] += out["meta_info"]["prompt_tokens"]
        stats["cached_tokens"] += out["meta_info"]["cached_tokens"]
        return out

    sglang_standin._one = counted

    @app.get("/standin_stats")
    async def standin_stats():
        return stats

    @app.post("/flush_cache")
    async def flush_cache():
        """As SGLang's: empties the prefix cache (the stand-in is idle between test phases); resets the stats."""
        cache.pages.clear()
        stats.update(requests=0, prompt_tokens=0, cached_tokens=0, routing_keys={})
        return "Cache flushed."

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kv-capacity", type=int, default=20_000)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--model-name", default="standin-model")
    args = parser.parse_args()
    app = build_app(args.kv_capacity, args.delay, args.model_name)
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
