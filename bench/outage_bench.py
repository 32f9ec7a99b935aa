"""A runtime outage in the middle of a batch: failed lines (target 0), attempts spent, and the time to finish after
the runtime is back. In-process app and dispatcher over the outage-injectable simulated runtime
(tests/fakes/outage_runtime.py: refused while down, in-flight requests reset when the outage begins).

    .venv/bin/python bench/outage_bench.py [--outage-s 60] [--lines 2000] [--database-url postgresql://...]

The batch's no-outage pace is measured before the outage, so "after recovery" can be compared with the time
the remaining lines would have taken anyway."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
from inprocess import in_process_server, submit_batch
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.store.models import BatchRequest  # noqa: E402
from tests.fakes.outage_runtime import OutageRuntime  # noqa: E402
from tests.helpers import chat_line, to_jsonl  # noqa: E402


async def _counts(client: httpx.AsyncClient, batch_id: str) -> dict:
    return (await client.get(f"/v1/batches/{batch_id}")).json()


async def _wait(predicate, every: float = 0.05):
    while not (value := await predicate()):
        await asyncio.sleep(every)
    return value


async def run(args: argparse.Namespace) -> dict:
    runtime = OutageRuntime(per_request_s=args.per_request_s, max_concurrency=args.concurrency)
    async with in_process_server(runtime, database_url=args.database_url) as (client, dispatcher):
        batch_id = await submit_batch(client, "in.jsonl", to_jsonl([chat_line(i) for i in range(args.lines)]))
        t0 = time.monotonic()

        async def done_at_least(n):
            return (await _counts(client, batch_id))["request_counts"]["completed"] >= n

        await _wait(lambda: done_at_least(args.lines // 4))
        before = (await _counts(client, batch_id))["request_counts"]["completed"]
        pace = before / (time.monotonic() - t0)  # lines/s without an outage
        runtime.go_down()
        down_at = time.monotonic()

        async def breaker_open():
            return (await client.get("/health")).json()["dispatcher"]["runtime"]["state"] == "open"

        await _wait(breaker_open)
        detected_s = time.monotonic() - down_at
        await asyncio.sleep(max(0.0, args.outage_s - detected_s))
        at_recovery = (await _counts(client, batch_id))["request_counts"]
        runtime.come_up()
        up_at = time.monotonic()

        async def finished():
            batch = await _counts(client, batch_id)
            return batch if batch["status"] in ("completed", "failed", "expired", "cancelled") else None

        final = await _wait(finished)
        after_s = time.monotonic() - up_at
        with dispatcher.dbw.db.transaction() as s:  # the batch has ended: nothing writes its lines any more
            attempts = dict(
                s.execute(select(BatchRequest.attempts, func.count()).group_by(BatchRequest.attempts)).all()
            )
    remaining = args.lines - at_recovery["completed"] - at_recovery["failed"]
    return {
        "database": "postgres" if args.database_url else "sqlite",
        "lines": args.lines,
        "outage_s": round(up_at - down_at, 1),
        "breaker_open_after_s": round(detected_s, 2),
        "failed_lines": final["request_counts"]["failed"],
        "completed_lines": final["request_counts"]["completed"],
        "status": final["status"],
        "generate_calls_while_down": runtime.generate_calls_while_down,
        "health_probes": runtime.health_calls,
        "attempts_histogram": attempts,
        "remaining_at_recovery": remaining,
        "finish_after_recovery_s": round(after_s, 2),
        "same_lines_without_outage_s": round(remaining / pace, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--per-request-s", type=float, default=0.05, help="simulated service time per request")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    for key, value in asyncio.run(run(args)).items():
        print(f"{key:28s}: {value}")


if __name__ == "__main__":
    main()
