"""Accuracy of GET /v1/batches/{id}/plan on the simulated runtime slowed to real seconds (time_scale), so the
plan's online calibration has something real to measure. In-process app on SQLite, ASGI client.

A warm-up batch runs first (the calibration window fills); then a mix of batches of different sizes, prompt
lengths, sharing and output lengths is submitted at once. Each batch's predicted finish is read (a) once every
batch is in the tree ("at submit") and (b) when half of all lines have finished ("mid-run"); the actual finish
is when polling first sees the batch completed (0.2 s polls). Error = predicted - actual, in seconds and as a
fraction of the time that was left when the prediction was made.

    .venv/bin/python bench/plan_accuracy.py [--time-scale 100] [--max-inflight 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import httpx
import orjson
from inprocess import in_process_server, submit_batch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blendserve.core.runtime.simulated import SimulatedRuntime  # noqa: E402

# (name, lines, shared system prompt words, user words, max_tokens): sizes and compute/memory mixes differ
MIX = [
    ("small-chat", 20, 0, 30, 64),
    ("shared-long-prompt", 80, 400, 20, 16),
    ("long-outputs", 30, 0, 15, 200),
    ("shared-mid", 60, 150, 40, 100),
    ("unique-long-prompt", 40, 0, 500, 32),
    ("tiny", 8, 50, 5, 8),
]
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


def jsonl(name: str, lines: int, system_words: int, user_words: int, max_tokens: int, rng: random.Random) -> bytes:
    system = " ".join(rng.choice(WORDS) for _ in range(system_words))
    out = []
    for i in range(lines):
        user = " ".join(rng.choice(WORDS) for _ in range(user_words)) + f" #{name}-{i}"
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        body = {"model": "simulated", "max_tokens": max_tokens, "messages": messages}
        out.append(
            orjson.dumps({"custom_id": f"{name}-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
        )
    return b"\n".join(out) + b"\n"


async def plans(client: httpx.AsyncClient, ids: dict[str, str]) -> dict[str, dict]:
    return {name: (await client.get(f"/v1/batches/{bid}/plan")).json() for name, bid in ids.items()}


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    runtime = SimulatedRuntime(time_scale=args.time_scale)
    async with in_process_server(runtime, timeout_s=60, max_inflight=args.max_inflight) as (client, _):
        await run_workload(client, rng, args)


async def run_workload(client: httpx.AsyncClient, rng: random.Random, args: argparse.Namespace) -> None:
    warm = await submit_batch(client, "in.jsonl", jsonl("warmup", 24, 100, 20, 64, rng))
    while (await client.get(f"/v1/batches/{warm}")).json()["status"] != "completed":
        await asyncio.sleep(0.2)
    ids = {name: await submit_batch(client, "in.jsonl", jsonl(name, *spec, rng)) for name, *spec in MIX}
    total = sum(spec[1] for spec in MIX)
    while True:  # every batch loaded into the tree (or already running)
        at_submit = await plans(client, ids)
        if all(
            p.get("lines", {}).get("pending", 0) + p.get("lines", {}).get("in_flight", 0) > 0
            for p in at_submit.values()
        ):
            break
        await asyncio.sleep(0.05)
    t_submit = time.time()
    mid: dict[str, dict] = {}
    t_mid = 0.0
    finished: dict[str, float] = {}
    while len(finished) < len(ids):
        done_lines = 0
        for name, bid in ids.items():
            batch = (await client.get(f"/v1/batches/{bid}")).json()
            done_lines += batch["request_counts"]["completed"] + batch["request_counts"]["failed"]
            if batch["status"] == "completed" and name not in finished:
                finished[name] = time.time()
        if not mid and done_lines >= total / 2:
            mid, t_mid = await plans(client, ids), time.time()
        await asyncio.sleep(0.2)
    report(ids, at_submit, t_submit, mid, t_mid, finished, args)


def report(ids, at_submit, t_submit, mid, t_mid, finished, args) -> None:
    print(f"plan accuracy: simulated runtime, time_scale={args.time_scale}, max_inflight={args.max_inflight}, ", end="")
    print(f"seed={args.seed}; errors are predicted - actual finish")
    head = ("batch", "lines", "actual s", "pred@submit", "err s", "err %", "pred@mid", "err s", "err %")
    print("{:20s} {:>5s} {:>9s} {:>12s} {:>7s} {:>6s}  {:>9s} {:>7s} {:>6s}".format(*head))
    rel_submit, rel_mid, abs_submit, abs_mid = [], [], [], []
    for name, *_ in MIX:
        actual = finished[name] - t_submit
        p0 = at_submit[name]["predicted_finish_at"] - t_submit
        e0 = p0 - actual
        rel_submit.append(abs(e0) / actual)
        abs_submit.append(abs(e0))
        lines = at_submit[name]["lines"]["total"]
        row = f"{name:20s} {lines:5d} {actual:9.1f} {p0:12.1f} {e0:7.1f} {100 * e0 / actual:6.1f}"
        pm = mid.get(name, {})
        if pm.get("predicted_finish_at") is not None and finished[name] > t_mid:
            left = finished[name] - t_mid
            em = pm["predicted_finish_at"] - finished[name]
            rel_mid.append(abs(em) / left)
            abs_mid.append(abs(em))
            row += f"  {pm['predicted_finish_at'] - t_mid:9.1f} {em:7.1f} {100 * em / left:6.1f}"
        else:
            row += "  (finished before mid-run)"
        print(row)
    print(f"calibrated at submit: {at_submit[MIX[0][0]]['calibration']['calibrated']}")
    print(
        f"at submit: mean |error| {statistics.mean(abs_submit):.1f} s, {100 * statistics.mean(rel_submit):.1f}% of "
        f"the time left (max {100 * max(rel_submit):.1f}%)"
    )
    if rel_mid:
        print(
            f"mid-run:   mean |error| {statistics.mean(abs_mid):.1f} s, {100 * statistics.mean(rel_mid):.1f}% of "
            f"the time left (max {100 * max(rel_mid):.1f}%)"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-scale", type=float, default=100.0)
    ap.add_argument("--max-inflight", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    asyncio.run(run(ap.parse_args()))
