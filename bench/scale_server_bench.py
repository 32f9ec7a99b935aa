"""The whole server at scale: accept B batches x L chat lines (~3.8k tokens each with the simulated runtime's byte
tokenizer: a 3,000-character system prompt per batch plus a ~1,000-character unique question), let the
dispatcher load every pending line into the tree while the runtime is held shut (so all of them are pending at
once), print RSS, then open the runtime (instant answers) and print the dispatch rate over a fixed window.
Accept and load times leave out the bench's own JSONL generation.

    .venv/bin/python bench/scale_server_bench.py --batches 1 --lines 50000 [--dispatch-seconds 60]
    .venv/bin/python bench/scale_server_bench.py --batches 20 --lines 50000       # 1M pending (long)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import random
import sys
import time
from pathlib import Path

import orjson
from inprocess import in_process_server, submit_batch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.core.runtime.simulated import SimulatedRuntime  # noqa: E402

LETTERS = (b"abcdefghijklmnopqrstuvwxyz " * 10)[:256]  # a byte -> letter table: random text at memcpy speed
WORDS = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega rho tau phi chi psi".split()  # noqa: SIM905


class GatedRuntime(SimulatedRuntime):
    """The simulated runtime behind a gate: nothing finishes until the bench opens it."""

    def __init__(self) -> None:
        super().__init__(model_name="m")
        self.gate = asyncio.Event()

    async def generate(self, request):
        await self.gate.wait()
        return await super().generate(request)


def rss() -> int:
    """Resident set size after a full collection, with freed heap given back to the OS (glibc malloc_trim)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def jsonl(batch: int, lines: int) -> bytes:
    rng = random.Random(batch)
    system = f"Batch {batch}. " + " ".join(rng.choice(WORDS) for _ in range(500))[:3000]
    out = bytearray()
    for i in range(lines):
        # the generator must not be the bench: one random.choice per character took 2 ms a line (100 s at 50k)
        question = f"Question {i}: " + rng.randbytes(1000).translate(LETTERS).decode()
        body = {"model": "m", "max_tokens": 64, "messages": [{"role": "system", "content": system},
                                                              {"role": "user", "content": question}]}  # fmt: skip
        out += orjson.dumps({"custom_id": f"b{batch}-{i}", "method": "POST", "url": "/v1/chat/completions",
                             "body": body}) + b"\n"  # fmt: skip
    return bytes(out)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--dispatch-seconds", type=float, default=60.0)
    args = ap.parse_args()
    total = args.batches * args.lines
    runtime = GatedRuntime()
    async with in_process_server(runtime, timeout_s=3600, database_url=args.database_url) as (client, d):
        t0, generating = time.perf_counter(), 0.0
        for b in range(args.batches):
            g = time.perf_counter()
            data = jsonl(b, args.lines)
            generating += time.perf_counter() - g  # the bench's own work, not the server's
            await submit_batch(client, f"b{b}.jsonl", data)
        t_accepted = time.perf_counter() - generating
        while len(d.pending) + len(d.runner) < total:
            await asyncio.sleep(0.5)
        t_loaded = time.perf_counter() - generating
        loaded = rss()
        tokens = d.pending.tree.prompt_tokens + sum(len(e.tokens) for e in d.pending.entries.values()
                                                    if e.treq.node is None)  # fmt: skip
        print(f"pending    : {total} requests, {tokens} prompt tokens ({tokens / total:.0f} per request)")
        print(f"accept     : {t_accepted - t0:.1f} s (upload + validate + persist, {args.batches} batch(es))")
        print(f"load       : all pending in the tree {t_loaded - t0:.1f} s after the first upload")
        done0, t1 = d.stats.succeeded, time.perf_counter()
        runtime.gate.set()
        slices, mark, done = [], t1, done0  # per 30 s: re-layouts make the first minute the slow one
        while (now := time.perf_counter()) - t1 < args.dispatch_seconds:
            await asyncio.sleep(min(30.0, args.dispatch_seconds - (now - t1)))
            slices.append(f"{(d.stats.succeeded - done) / (time.perf_counter() - mark):.0f}")
            mark, done = time.perf_counter(), d.stats.succeeded
        rate = (d.stats.succeeded - done0) / (time.perf_counter() - t1)
        print(
            f"dispatch   : {rate:.0f} results/s landed over {args.dispatch_seconds:.0f} s "
            f"({'postgres' if args.database_url else 'sqlite'}, instant simulated runtime; per 30 s: "
            f"{', '.join(slices)})"
        )
        left = len(d.pending)
        runtime.gate.clear()
        d.pending.__init__(d.pending.tree.perf)  # what the pending set held, measured by letting it go
        held = loaded - rss()
        print(f"rss        : pending set {held / 1e6:.0f} MB = {held / tokens:.2f} bytes per pending prompt token "
              f"({(held - 1024 * total) / tokens:.2f} after 1 KiB per request; {total - left} of {total} had "
              f"left by then); process {loaded / 1e6:.0f} MB loaded")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
