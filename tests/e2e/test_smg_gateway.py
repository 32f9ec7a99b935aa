"""Many workers through the real SGLang Model Gateway (smg 1.13.0) in front of 3 stand-in SGLang worker
processes, each with its own LRU prefix cache and KV capacity: the prefix-cache hit ratio of our subtree
affinity against smg's own cache_aware and round_robin policies on a multi-job trace; a worker killed
mid-batch (the batch completes, each line once); a worker added mid-batch (it gets work). `pytest -k smg`."""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import pytest

from blendserve.core.dispatch.config import DispatchConfig
from blendserve.core.dispatch.loop import Dispatcher
from blendserve.core.runtime.gateway import GatewayRuntime
from blendserve.core.sched.perf_model import PerfModel
from blendserve.store.migrate import upgrade
from tests.e2e.smg_fleet import SmgFleet
from tests.helpers import upload_batch
from tests.support import make_settings, running_client

pytestmark = pytest.mark.anyio
JOBS, PER_JOB, KV = 6, 24, 1500
DECODE_S = 0.001  # the stand-in's fake seconds per output token
LANE_WINDOW = 8
LANE_POLICY = "consistent_hashing"  # each lane's routing key is minted for its worker on smg's ring (smg_ring.py)


def trace(jobs: int = JOBS, per_job: int = PER_JOB, seed: int = 7) -> list[tuple[int, dict]]:
    """(job, line) in submission order: jobs interleaved, each job its own long system prompt."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "lambda", "zeta"]
    systems = [f"Job {j}. " + " ".join(rng.choice(words) for _ in range(300)) for j in range(jobs)]
    out = []
    for i in range(per_job):
        for j in range(jobs):
            question = f"Question {i} of job {j}: " + " ".join(rng.choice(words) for _ in range(8))
            body = {
                "model": "standin-model",
                "messages": [{"role": "system", "content": systems[j]}, {"role": "user", "content": question}],
                "max_tokens": 8,
            }
            out.append((j, {"custom_id": f"j{j}-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
    return out


def standin_tokens(worker: str, lines: list[dict]) -> list[list[int]]:
    """Each line's prompt as the workers' own /v1/tokenize renders it: the tokens the dispatcher sends too."""
    return [
        httpx.post(worker + "/v1/tokenize", json={"messages": line["body"]["messages"]}, timeout=30).json()["tokens"]
        for line in lines
    ]


def hit_ratio(fleet: SmgFleet, before: dict[str, dict]) -> float:
    """Cached prompt tokens / prompt tokens over every worker, since `before` (fleet.flush())."""
    now = {url: fleet.stats(url) for url in before}
    cached = sum(now[u]["cached_tokens"] - before[u]["cached_tokens"] for u in before)
    return cached / max(1, sum(now[u]["prompt_tokens"] - before[u]["prompt_tokens"] for u in before))


async def send_in_order(gateway: str, prompts: list[list[int]], concurrency: int) -> None:
    """A plain client: submission order, `concurrency` requests in flight, smg's policy picks the worker."""
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:

        async def sender() -> None:
            while not queue.empty():
                payload = {"input_ids": queue.get_nowait(), "sampling_params": {"max_new_tokens": 8}}
                (await client.post("/generate", json=payload)).raise_for_status()

        await asyncio.gather(*(sender() for _ in range(concurrency)))


def blendserve_app(tmp_path, gateway: str, holder: list):
    from blendserve.api.app import create_app

    url = f"sqlite:///{tmp_path / 'bs.db'}"
    upgrade(url)
    settings = make_settings(url, tmp_path / "data", dispatcher=True, retry_backoff_s=0.2, max_inflight=LANE_WINDOW)
    config = DispatchConfig.from_settings(settings)

    def factory(db, blobs):
        holder.append(Dispatcher(db, blobs, config, GatewayRuntime(gateway, PerfModel.preset(), timeout_s=60)))
        return holder[-1]

    return create_app(settings, factory)


async def run_batches(client, groups: list[list[dict]], timeout: float = 120.0) -> list[dict]:
    """Upload each group as its own batch, wait for all to finish; returns every output line."""
    ids = [(await upload_batch(client, lines)).json()["id"] for lines in groups]
    out = []
    for batch_id in ids:
        deadline = time.monotonic() + timeout
        while (batch := (await client.get(f"/v1/batches/{batch_id}")).json())["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, f"batch stuck: {batch}"
            await asyncio.sleep(0.1)
        assert batch["status"] == "completed", batch
        out += await batch_lines(client, batch)
    return out


async def batch_lines(client, batch: dict) -> list[dict]:
    """Every line of a finished batch: its output file and its error file."""
    out = []
    for key in ("output_file_id", "error_file_id"):
        if batch.get(key):
            text = (await client.get(f"/v1/files/{batch[key]}/content")).text
            out += [json.loads(x) for x in text.splitlines()]
    return out


def assert_each_line_once(out: list[dict], lines: list[dict]) -> None:
    ids = [o["custom_id"] for o in out]
    assert sorted(ids) == sorted(line["custom_id"] for line in lines), "a line is missing or doubled"
    failed = [o for o in out if (o.get("response") or {}).get("status_code") != 200]
    assert not failed, failed[:3]


async def test_smg_affinity_hit_ratio_beats_cache_aware_and_round_robin(tmp_path):
    fleet = SmgFleet(tmp_path)
    lines = [line for _, line in trace()]
    ratios: dict[str, float] = {}
    try:
        for _ in range(3):
            fleet.start_worker(kv_capacity=KV, decode_s=DECODE_S)
        prompts = standin_tokens(fleet.live()[0], lines)
        for policy in ("round_robin", "cache_aware"):
            fleet.start_gateway(policy)
            before = fleet.flush()
            await send_in_order(fleet.url, prompts, concurrency=3 * LANE_WINDOW)
            ratios[policy] = hit_ratio(fleet, before)
            fleet.stop_gateway()
        gateway = fleet.start_gateway(LANE_POLICY)
        before = fleet.flush()
        holder: list[Dispatcher] = []
        async with running_client(blendserve_app(tmp_path, gateway, holder)) as client:
            out = await run_batches(client, [lines])  # the jobs' lines interleaved in one file, as submitted
        assert_each_line_once(out, lines)
        ratios["affinity"] = hit_ratio(fleet, before)
        lanes_state = holder[0].fleet.describe()["lanes"]
        served = [fleet.stats(u)["requests"] - before[u]["requests"] for u in before]
        print(f"\nsmg hit ratio over 3 stand-ins (kv {KV} tokens each, {JOBS} jobs x {PER_JOB}): {ratios}; "
              f"affinity lines per worker: {served}")  # fmt: skip
        assert sum(served) >= len(lines)  # every line reached a worker (a retried one may count twice)
        # Each lane's key is minted on smg's ring for its own worker: every worker has a lane and gets work.
        assert sorted(lane["worker"] for lane in lanes_state) == sorted(before), lanes_state
        assert all(n > 0 for n in served), f"a worker got no lane: {served}"
        assert ratios["affinity"] > ratios["round_robin"] + 0.1
        assert ratios["affinity"] >= ratios["cache_aware"] - 0.05
    finally:
        fleet.close()


def _three_workers_behind_smg(fleet: SmgFleet) -> str:
    for _ in range(3):
        fleet.start_worker(kv_capacity=KV, decode_s=0.005)
    return fleet.start_gateway(LANE_POLICY)


async def _busy_worker_at_a_quarter(client, fleet: SmgFleet, batch_id: str, total: int) -> str:
    """A worker with requests on it, once a quarter of the batch has completed."""
    while True:
        batch = (await client.get(f"/v1/batches/{batch_id}")).json()
        busy = [u for u in fleet.live() if fleet.stats(u)["requests"] > 0]
        if batch["request_counts"]["completed"] >= total // 4 and busy:
            return busy[0]
        await asyncio.sleep(0.05)


async def _until_lost(dispatcher: Dispatcher, timeout: float) -> dict:
    """The fleet's state once it recorded a lost worker, or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    state = dispatcher.fleet.describe()
    while not any(e["kind"] == "lost" for e in state["events"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        state = dispatcher.fleet.describe()
    return state


async def test_smg_worker_killed_mid_batch_completes_each_line_once(tmp_path):
    fleet = SmgFleet(tmp_path)
    lines = [line for _, line in trace(per_job=40)]
    try:
        gateway = _three_workers_behind_smg(fleet)
        holder: list[Dispatcher] = []
        async with running_client(blendserve_app(tmp_path, gateway, holder)) as client:
            batch_id = (await upload_batch(client, lines)).json()["id"]
            victim = await _busy_worker_at_a_quarter(client, fleet, batch_id, len(lines))
            fleet.kill_worker(victim)
            killed_at = time.time()
            deadline = time.monotonic() + 120
            while (batch := (await client.get(f"/v1/batches/{batch_id}")).json())["status"] != "completed":
                assert batch["status"] in ("in_progress", "finalizing") and time.monotonic() < deadline, batch
                await asyncio.sleep(0.1)
            done_at = time.time()
            out = await batch_lines(client, batch)
            # the batch may finish on retries before the gateway's health checks mark the worker lost: wait
            fleet_state = await _until_lost(holder[0], timeout=30.0)
        assert_each_line_once(out, lines)
        lost = [e for e in fleet_state["events"] if e["kind"] == "lost"]
        assert lost and lost[0]["urls"] == [victim], fleet_state
        print(f"\nworker killed: re-laned {lost[0]['at'] - killed_at:.2f} s after the kill; batch done "
              f"{done_at - killed_at:.2f} s after it; retried lines: {holder[0].stats.retried}")  # fmt: skip
    finally:
        fleet.close()


async def test_smg_hung_worker_lines_run_elsewhere_before_their_deadline(tmp_path):
    fleet = SmgFleet(tmp_path)
    lines = [line for _, line in trace(per_job=40)]
    try:
        gateway = _three_workers_behind_smg(fleet)
        holder: list[Dispatcher] = []
        async with running_client(blendserve_app(tmp_path, gateway, holder)) as client:
            batch_id = (await upload_batch(client, lines)).json()["id"]
            victim = await _busy_worker_at_a_quarter(client, fleet, batch_id, len(lines))
            fleet.pause_worker(victim)
            paused_at = time.monotonic()
            while (batch := (await client.get(f"/v1/batches/{batch_id}")).json())["status"] != "completed":
                # a line's deadline is at least 30 s (runtime/deadline.py): done well before that means the hung
                # worker's lines were taken back when smg marked it unhealthy, not when their deadlines passed
                assert batch["status"] in ("in_progress", "finalizing") and time.monotonic() - paused_at < 25, batch
                await asyncio.sleep(0.1)
            done_s = time.monotonic() - paused_at
            out = await batch_lines(client, batch)
            fleet_state = holder[0].fleet.describe()
        assert_each_line_once(out, lines)
        assert any(e["kind"] == "lost" and e["urls"] == [victim] for e in fleet_state["events"]), fleet_state
        print(f"\nworker hung (SIGSTOP): batch done {done_s:.2f} s after it")
    finally:
        fleet.close()


async def test_smg_worker_added_mid_batch_gets_work(tmp_path):
    fleet = SmgFleet(tmp_path)
    lines = [line for _, line in trace(per_job=100)]
    try:
        for _ in range(2):
            fleet.start_worker(kv_capacity=KV, decode_s=0.05)
        gateway = fleet.start_gateway(LANE_POLICY)
        newcomer = fleet.start_worker(kv_capacity=KV, decode_s=0.05)  # up, but the gateway does not know it yet
        holder: list[Dispatcher] = []
        async with running_client(blendserve_app(tmp_path, gateway, holder)) as client:
            batch_id = (await upload_batch(client, lines)).json()["id"]
            while (await client.get(f"/v1/batches/{batch_id}")).json()["request_counts"]["completed"] < 20:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(fleet.register, newcomer)
            at_add = (await client.get(f"/v1/batches/{batch_id}")).json()["request_counts"]
            deadline = time.monotonic() + 120
            while (batch := (await client.get(f"/v1/batches/{batch_id}")).json())["status"] != "completed":
                assert batch["status"] in ("in_progress", "finalizing") and time.monotonic() < deadline, batch
                await asyncio.sleep(0.1)
            out = await batch_lines(client, batch)
            fleet_state = holder[0].fleet.describe()
        assert_each_line_once(out, lines)
        assert any(e["kind"] == "added" and e["urls"] == [newcomer] for e in fleet_state["events"]), fleet_state
        assert fleet.stats(newcomer)["requests"] > 0, f"the added worker got no work ({at_add}, {fleet_state})"
        print(f"\nworker added: it served {fleet.stats(newcomer)['requests']} of {len(lines)} lines")
    finally:
        fleet.close()
