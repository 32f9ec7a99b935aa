"""Upload + validate + persist of a 50,000-line (~100 MB) chat JSONL through a real server process, next to
only parsing the same file with orjson. Prints seconds, the server's peak RSS, and the ratio.

    .venv/bin/python bench/upload_bench.py [--lines 50000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.server import ServerProcess  # noqa: E402


def make_file(path: Path, lines: int, target_bytes: int) -> None:
    filler = "lorem ipsum dolor sit amet " * max(1, (target_bytes // lines - 300) // 27)
    with path.open("wb") as fh:
        for i in range(lines):
            body = {
                "model": "smollm2",
                "max_tokens": 64,
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": f"Question {i}: {filler}"},
                ],
            }
            fh.write(
                orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
                + b"\n"
            )


def parse_only(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb") as fh:
        for line in fh:
            orjson.loads(line)
    return time.perf_counter() - start


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--megabytes", type=int, default=100)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        make_file(path, args.lines, args.megabytes * 1024 * 1024)
        env = {"BLENDSERVE_DATABASE_URL": args.database_url} if args.database_url else {}
        server = ServerProcess(Path(tmp) / "data", runtime="none", env=env).start()
        try:
            idle_rss = peak_rss_mib(server.proc.pid)
            with httpx.Client(base_url=server.url, timeout=600) as client:
                t0 = time.perf_counter()
                with path.open("rb") as fh:
                    file = client.post("/v1/files", files={"file": ("big.jsonl", fh)}, data={"purpose": "batch"})
                file.raise_for_status()
                t1 = time.perf_counter()
                batch = client.post(
                    "/v1/batches",
                    json={
                        "input_file_id": file.json()["id"],
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "24h",
                    },
                ).json()
                t2 = time.perf_counter()
            assert batch["status"] == "in_progress", batch
            rss = peak_rss_mib(server.proc.pid)
        finally:
            server.stop()
        parse = parse_only(path)
    size = path.stat().st_size if path.exists() else args.megabytes * 2**20
    print(f"database            : {'postgres' if args.database_url else 'sqlite'}")
    print(f"file                : {args.lines} lines, {size / 2**20:.1f} MiB")
    print(f"upload (stream)     : {t1 - t0:.2f} s")
    print(f"validate + persist  : {t2 - t1:.2f} s  ({batch['request_counts']['total']} rows)")
    print(f"total               : {t2 - t0:.2f} s")
    print(f"orjson parse only   : {parse:.2f} s")
    print(f"ratio total / parse : {(t2 - t0) / parse:.1f}x")
    print(f"server peak RSS     : {rss:.0f} MiB (idle after start: {idle_rss:.0f} MiB)")


if __name__ == "__main__":
    main()
