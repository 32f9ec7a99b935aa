"""Webhook delivery latency after a batch finishes, on a real `blendserve serve` process.

For each of N one-line batches (simulated runtime, a receiver on 127.0.0.1): latency = the receiver's arrival
time - the outbox row's created_at, which is stamped inside the transaction that moves the batch to
`completed`. Both clocks are this machine's. Prints p50 / p95 / max.

    PYTHONPATH=. python bench/webhook_latency.py --batches 30 [--poll 0.5] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.e2e.server import ServerProcess
from tests.helpers import chat_line, to_jsonl
from tests.webhook_receiver import Receiver, new_secret

KEY = {"Authorization": "Bearer sk-bench"}


def _run(url: str, rx: Receiver, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        file = httpx.post(
            f"{url}/v1/files",
            files={"file": ("in.jsonl", to_jsonl([chat_line(i)]))},
            data={"purpose": "batch"},
            headers=KEY,
        ).json()
        spec = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        batch = httpx.post(f"{url}/v1/batches", json=spec, headers=KEY).json()
        arrival = rx.wait_for(i + 1)[i].arrived
        row = httpx.get(f"{url}/v1/batches/{batch['id']}/webhook_deliveries", headers=KEY).json()["data"][0]
        latencies.append(arrival - row["created_at"])
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--poll", type=float, default=0.2, help="BLENDSERVE_WEBHOOK_POLL_S")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    secret = new_secret()
    with tempfile.TemporaryDirectory() as tmp, Receiver() as rx:
        env = {
            "BLENDSERVE_API_KEYS": "sk-bench",
            "BLENDSERVE_WEBHOOKS": json.dumps({"sk-bench": [{"url": rx.url, "secret": secret}]}),
            "BLENDSERVE_WEBHOOK_POLL_S": str(args.poll),
        }
        if args.database_url:
            env["BLENDSERVE_DATABASE_URL"] = args.database_url
        server = ServerProcess(Path(tmp) / "data", runtime="simulated", env=env)
        try:
            server.start()
            started = time.time()
            lat = sorted(_run(server.url, rx, args.batches))
        finally:
            server.stop()
    ms = [x * 1000 for x in lat]
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    print(
        f"webhook latency after completion, {len(ms)} batches, poll {args.poll} s: "
        f"p50 {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms "
        f"(run {time.time() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
