"""Memory and speed of the dispatcher's pending set at scale: N pending requests (prompt = a shared job prefix +
a unique tail) loaded into the ONE global tree through PendingSet.add (what the loader calls), then dispatched in
waves (next_wave -> started -> finished -> drop, what the loop and the line runner call), with no model and no
database. Prints RSS per pending prompt token and per pending request, load time and dispatch rate.

Scope: the dispatcher's in-memory state only (the part that grows with pending work); the API, the store and a
runtime are not in the loop (bench/dispatcher_bench.py measures the dispatcher with its database).

    .venv/bin/python bench/scale_bench.py --requests 50000 --tail-tokens 2000 [--jobs 20] [--waves 200]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.core.dispatch.pending import PendingSet  # noqa: E402
from blendserve.core.runtime.base import SamplingParams  # noqa: E402
from blendserve.core.sched.perf_model import PerfModel  # noqa: E402
from blendserve.store.dispatch_queries import PendingRow  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--tail-tokens", type=int, default=2_000, help="unique prompt tokens per request")
    ap.add_argument("--prefix-tokens", type=int, default=1_000, help="shared prompt tokens per job")
    ap.add_argument("--jobs", type=int, default=20, help="batches (shared-prefix groups)")
    ap.add_argument("--waves", type=int, default=200, help="dispatch waves to time")
    ap.add_argument("--wave-size", type=int, default=256)
    args = ap.parse_args()
    rng = random.Random(0)
    prefixes = [array("i", os.urandom(4 * args.prefix_tokens)) for _ in range(args.jobs)]
    params = SamplingParams(max_new_tokens=256)
    body = "x" * 4000  # a request body as the store holds it; the pending set must not keep it
    pending = PendingSet(PerfModel.preset())
    gc.collect()
    base = rss_bytes()
    start = time.perf_counter()
    prompt_tokens = 0
    for i in range(args.requests):
        job = i % args.jobs
        tail = array("i", os.urandom(4 * max(1, int(args.tail_tokens * rng.uniform(0.5, 1.5)))))
        tokens = prefixes[job] + tail
        prompt_tokens += len(tokens)
        row = PendingRow(i + 1, f"batch_{job:032d}", body, "/v1/chat/completions", 0)
        pending.add(row, tokens, params)
    load_s = time.perf_counter() - start
    gc.collect()
    held = rss_bytes() - base
    start = time.perf_counter()
    dispatched = 0
    for _ in range(args.waves):
        wave = pending.next_wave(args.wave_size, 1e12)
        if not wave:
            break
        for entry, side in wave:
            pending.started(entry, side)
        for entry, _side in wave:
            pending.finished(entry)
            pending.drop(entry.row.id)
        dispatched += len(wave)
    dispatch_s = time.perf_counter() - start
    per_request_allowance = 1024 * args.requests
    print(
        f"requests={args.requests} prompt_tokens={prompt_tokens} load_s={load_s:.1f} "
        f"load_rate={args.requests / load_s:.0f}/s rss_held={held / 1e6:.0f}MB "
        f"bytes_per_token={held / prompt_tokens:.2f} "
        f"bytes_per_token_after_1KiB_per_request={(held - per_request_allowance) / prompt_tokens:.2f} "
        f"dispatched={dispatched} dispatch_rate={dispatched / dispatch_s:.0f}/s "
        f"peak_rss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f}MB"
    )


if __name__ == "__main__":
    main()
