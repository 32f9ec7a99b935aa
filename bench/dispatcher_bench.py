"""Dispatcher overhead: requests/s it sustains with 50k pending requests across 5 batches on the instant
`simulated` runtime (so the number is the dispatcher + database, not a model). In-process app, ASGI client.

    .venv/bin/python bench/dispatcher_bench.py [--database-url postgresql://...] [--lines 10000] [--batches 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson
from inprocess import in_process_server, submit_batch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.core.runtime.simulated import SimulatedRuntime  # noqa: E402


def jsonl(batch: int, lines: int) -> bytes:
    system = f"You are assistant number {batch}. Answer briefly. " * 8
    return b"".join(
        orjson.dumps(
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
        )
        + b"\n"
        for i in range(lines)
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=5)
    args = ap.parse_args()
    runtime = SimulatedRuntime()
    async with in_process_server(runtime, database_url=args.database_url) as (client, dispatcher):
        t_setup = time.perf_counter()
        ids = [await submit_batch(client, f"b{b}.jsonl", jsonl(b, args.lines)) for b in range(args.batches)]
        t0 = time.perf_counter()
        while True:
            states = [(await client.get(f"/v1/batches/{i}")).json() for i in ids]
            if all(s["status"] == "completed" for s in states):
                break
            await asyncio.sleep(0.5)
        t1 = time.perf_counter()
    total = args.lines * args.batches
    print(f"database   : {'postgres' if args.database_url else 'sqlite'}")
    print(f"intake     : {total} lines in {args.batches} batches, {t0 - t_setup:.1f} s (upload+validate+persist)")
    print(f"dispatch   : {total} requests to completed in {t1 - t0:.1f} s = {total / (t1 - t0):.0f} requests/s")
    print(f"runtime    : {runtime.calls} generate calls (simulated, instant); dispatcher stats {dispatcher.stats}")


if __name__ == "__main__":
    asyncio.run(main())
