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
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.api.app import create_app  # noqa: E402
from blendserve.config import Settings  # noqa: E402
from blendserve.core.dispatch.config import DispatchConfig  # noqa: E402
from blendserve.core.dispatch.loop import Dispatcher  # noqa: E402
from blendserve.store.db import Database  # noqa: E402
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
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=args.database_url, runtime="simulated")
        runtime = OutageRuntime(per_request_s=args.per_request_s, max_concurrency=args.concurrency)
        app = create_app(
            settings, lambda db, blobs: Dispatcher(db, blobs, DispatchConfig.from_settings(settings), runtime)
        )
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x", timeout=600)
            data = to_jsonl([chat_line(i) for i in range(args.lines)])
            file = (
                await client.post("/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})
            ).json()
            body = {"input_file_id": file["id"], "completion_window": "24h", "endpoint": "/v1/chat/completions"}
            batch_id = (await client.post("/v1/batches", json=body)).json()["id"]
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
            await client.aclose()
        db = Database(settings.resolved_database_url())
        with db.transaction() as s:
            attempts = dict(
                s.execute(select(BatchRequest.attempts, func.count()).group_by(BatchRequest.attempts)).all()
            )
        db.dispose()
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
