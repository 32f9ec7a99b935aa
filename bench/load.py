"""API latency under load: C concurrent clients for D seconds against a real `blendserve serve` on loopback;
prints p50/p99/max and errors per operation (retrieve, list, create).

    .venv/bin/python bench/load.py [--clients 200] [--duration 60] [--database-url postgresql://...]
                                   [--workers 1] [--url http://127.0.0.1:8000] [--procs 2] [--think-s 0]

Without --url it starts its own server (API only, `--runtime none`, so the numbers are the API and the database,
not a model) on a free loopback port and stops it at the end. Each client is a closed loop (next request when
the last one answered, after --think-s): retrieve a batch, list batches (limit 20), or create a batch from a
small uploaded file, by --mix weights. Bounded: every request has a timeout (counted as an error), the run
stops at --duration, and --max-requests caps the total. Clients are spread over --procs processes (uvloop when
installed) so the load generator is not one busy event loop; it shares the machine's cores with the server, so
the report says what it cost: the server's CPU (all its worker processes), the clients' CPU, and the load average
before and after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.server import ServerProcess  # noqa: E402
from tests.helpers import chat_line, to_jsonl  # noqa: E402

OPS = ("retrieve", "list", "create")


def _setup(url: str, batches: int) -> tuple[str, list[str]]:
    """A small input file and `batches` batches to retrieve and list."""
    with httpx.Client(base_url=url, timeout=60) as c:
        data = to_jsonl([chat_line(i) for i in range(5)])
        file_id = c.post("/v1/files", files={"file": ("load.jsonl", data)}, data={"purpose": "batch"}).json()["id"]
        ids = [c.post("/v1/batches", json=_create_body(file_id)).json()["id"] for _ in range(batches)]
    return file_id, ids


def _create_body(file_id: str) -> dict:
    return {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}


class Connection:
    """One keep-alive HTTP/1.1 connection, hand-rolled: an httpx client per simulated user costs as much CPU as
    the server it measures, and on a 2-core machine that CPU is taken from the server (and its latency)."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        """The response's status code; raises OSError / TimeoutError / ValueError on a broken exchange."""
        try:
            return await asyncio.wait_for(self._exchange(method, path, body), self.timeout_s)
        except BaseException:
            self.close()  # a half-read response must not be mistaken for the next one
            raise

    async def _exchange(self, method: str, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        assert self.reader is not None
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next((int(v) for k, _, v in (x.partition(b":") for x in lines[1:]) if k.lower() == b"content-length"))
        await self.reader.readexactly(length)
        if any(x.lower() == b"connection: close" for x in lines):
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _client(args, host, port, file_id, ids, stop_at, budget, out, seed) -> None:
    rng = random.Random(seed)
    conn = Connection(host, port, args.timeout_s)
    create = orjson.dumps(_create_body(file_id))
    try:
        while time.monotonic() < stop_at and budget[0] > 0:
            budget[0] -= 1
            op = rng.choices(OPS, weights=args.mix)[0]
            started = time.monotonic()
            try:
                if op == "retrieve":
                    status = await conn.request("GET", f"/v1/batches/{rng.choice(ids)}")
                elif op == "list":
                    status = await conn.request("GET", "/v1/batches?limit=20")
                else:
                    status = await conn.request("POST", "/v1/batches", create)
                ok = status == 200
            except (OSError, TimeoutError, ValueError, StopIteration, asyncio.IncompleteReadError):
                ok = False
            out.append((op, time.monotonic() - started, ok))
            if args.think_s:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * args.think_s)
    finally:
        conn.close()


async def _proc_main(args, url, file_id, ids, clients, seed) -> list[tuple[str, float, bool]]:
    out: list[tuple[str, float, bool]] = []
    budget = [args.max_requests // args.procs]
    parsed = httpx.URL(url)
    stop_at = time.monotonic() + args.duration
    await asyncio.gather(
        *(
            _client(args, parsed.host, parsed.port, file_id, ids, stop_at, budget, out, seed * 1000 + i)
            for i in range(clients)
        )
    )
    return out


def _run_proc(payload) -> tuple[list[tuple[str, float, bool]], float]:
    """One client process: its samples and the CPU seconds it used."""
    args, url, file_id, ids, clients, seed = payload
    cpu = time.process_time()
    try:
        import uvloop

        samples = uvloop.run(_proc_main(args, url, file_id, ids, clients, seed))
    except ImportError:
        samples = asyncio.run(_proc_main(args, url, file_id, ids, clients, seed))
    return samples, time.process_time() - cpu


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def report(samples: list[tuple[str, float, bool]], duration: float) -> None:
    print(
        f"{'operation':10s} {'requests':>9s} {'errors':>7s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}"
    )
    for op in OPS:
        lat = [t for o, t, ok in samples if o == op and ok]
        errors = sum(1 for o, _, ok in samples if o == op and not ok)
        n = len(lat) + errors
        if not n:
            continue
        p50, p99 = _percentile(lat, 0.5) * 1000, _percentile(lat, 0.99) * 1000
        mx = max(lat) * 1000 if lat else float("nan")
        print(f"{op:10s} {n:9d} {errors:7d} {n / duration:7.1f} {p50:8.1f} {p99:8.1f} {mx:8.1f}")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its live descendants (the server's worker processes) and its reaped
    children (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):  # exited meanwhile
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += sum(int(x) for x in _stat(current)[11:15])
        except OSError:
            continue
        todo += children.get(current, [])
    return total / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="an already running server (default: start one)")
    ap.add_argument("--database-url", help="for the server started here (default: SQLite in a temp dir)")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="API worker processes of the server started here")
    ap.add_argument("--think-s", type=float, default=0.0, help="mean pause between a client's requests")
    ap.add_argument("--mix", type=float, nargs=3, default=[0.6, 0.35, 0.05], metavar=("RETRIEVE", "LIST", "CREATE"))
    ap.add_argument("--batches", type=int, default=50, help="batches created before the run")
    ap.add_argument("--timeout-s", type=float, default=30.0)
    ap.add_argument("--max-requests", type=int, default=2_000_000)
    ap.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE", help="env for the server started here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        try:
            url = args.url
            if url is None:
                env = {"BLENDSERVE_WORKERS": str(args.workers), **dict(kv.split("=", 1) for kv in args.server_env)}
                if args.database_url:
                    env["BLENDSERVE_DATABASE_URL"] = args.database_url
                server = ServerProcess(Path(tmp) / "data", runtime="none", env=env).start()
                url = server.url
                print(f"server pid {server.proc.pid} at {url}", flush=True)
            file_id, ids = _setup(url, args.batches)
            shares = [args.clients // args.procs + (i < args.clients % args.procs) for i in range(args.procs)]
            payloads = [(args, url, file_id, ids, n, i) for i, n in enumerate(shares)]
            load_before = _load()
            cpu_before = _cpu_seconds(server.proc.pid) if server else None
            started = time.monotonic()
            with mp.get_context("spawn").Pool(args.procs) as pool:
                parts = pool.map(_run_proc, payloads)
            elapsed = time.monotonic() - started
            server_cpu = _cpu_seconds(server.proc.pid) - cpu_before if server else None
            load_after = _load()
            samples = [s for part, _ in parts for s in part]
            client_cpu = sum(cpu for _, cpu in parts)
        finally:
            if server is not None:
                server.stop()
    db = "postgres" if args.database_url and "postgres" in args.database_url else "sqlite"
    workers = f"{args.workers} API worker(s)" if server is not None else args.url
    run = f"{args.clients} clients, {elapsed:.0f} s, {args.procs} client processes, think {args.think_s} s"
    print(f"{run}, {db}, {workers}")
    report(samples, elapsed)
    if server_cpu is not None:  # the server's own cost, which other load on the machine does not inflate much
        print(
            f"server CPU: {server_cpu:.1f} s = {server_cpu / elapsed:.0%} of a core, "
            f"{1000 * server_cpu / len(samples):.2f} ms per request"
        )
    print(
        f"client CPU: {client_cpu:.1f} s = {client_cpu / elapsed:.0%} of a core, "
        f"{1000 * client_cpu / len(samples):.2f} ms per request"
    )
    print(f"machine: {os.cpu_count()} cores; before the run {load_before}; after {load_after}")


if __name__ == "__main__":
    main()
