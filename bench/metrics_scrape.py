"""Cost of the operations endpoints with a big queue: /metrics, /dashboard/state and a batch plan, with 50k lines
pending in the tree (simulated runtime slowed down and a small in-flight window, so the queue stays put).
In-process app, ASGI client; each figure is the client-side wall time of the whole request.

    .venv/bin/python bench/metrics_scrape.py [--database-url postgresql://...] [--lines 10000] [--batches 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import orjson
from inprocess import in_process_server, submit_batch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.core.runtime.simulated import SimulatedRuntime  # noqa: E402


def jsonl(batch: int, lines: int) -> bytes:
    system = f"You are assistant number {batch}. Answer briefly. " * 8
    rows = (
        {
            "custom_id": f"b{batch}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "simulated",
                "max_tokens": 64,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": f"Question {i}?"}],
            },
        }
        for i in range(lines)
    )
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


async def timed(client: httpx.AsyncClient, path: str, n: int) -> tuple[list[float], httpx.Response]:
    times, resp = [], None
    for _ in range(n):
        t = time.perf_counter()
        resp = await client.get(path)
        times.append(time.perf_counter() - t)
        assert resp.status_code == 200, resp.text
        await asyncio.sleep(1.1)  # past the plan cache: every scrape replays the queue
    assert resp is not None
    return times, resp


def line(name: str, times: list[float]) -> str:
    ms = sorted(1000 * t for t in times)
    return f"{name:22s} first {1000 * times[0]:7.1f} ms  median {statistics.median(ms):7.1f} ms  max {ms[-1]:7.1f} ms"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--scrapes", type=int, default=10)
    args = ap.parse_args()
    total = args.lines * args.batches
    runtime = SimulatedRuntime(time_scale=1000.0)  # ~10 s a line: the queue barely moves during the bench
    async with in_process_server(runtime, database_url=args.database_url, max_inflight=4) as (client, dispatcher):
        ids = [await submit_batch(client, f"b{b}.jsonl", jsonl(b, args.lines)) for b in range(args.batches)]
        t0 = time.perf_counter()
        while len(dispatcher.pending) + len(dispatcher.runner) + dispatcher.stats.succeeded < total:
            await asyncio.sleep(0.5)
        print(f"queue      : {len(dispatcher.pending)} lines pending in the tree, {len(dispatcher.runner)} in flight")
        print(f"             (loaded in {time.perf_counter() - t0:.1f} s)")
        metrics, resp = await timed(client, "/metrics", args.scrapes)
        state, _ = await timed(client, "/dashboard/state", args.scrapes)
        plan, _ = await timed(client, f"/v1/batches/{ids[-1]}/plan", args.scrapes)
    print(f"database   : {'postgres' if args.database_url else 'sqlite'}; {args.scrapes} requests each, 1.1 s apart")
    print(line("/metrics", metrics) + f"  ({len(resp.content)} bytes)")
    print(line("/dashboard/state", state))
    print(line("/v1/batches/{id}/plan", plan))


if __name__ == "__main__":
    asyncio.run(main())
