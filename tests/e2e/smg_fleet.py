"""The real smg gateway (PyPI smg==1.13.0) in front of stand-in SGLang worker processes, on loopback ports.
Every process started here is stopped by close() (tests call it in `finally`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SMG = shutil.which("smg", path=str(Path(sys.executable).parent)) or shutil.which("smg")
HEALTH_FLAGS = [  # notice a dead worker within ~2 s (smg's defaults take much longer)
    "--health-check-interval-secs", "1", "--health-failure-threshold", "1", "--health-check-timeout-secs", "1",
    "--cb-failure-threshold", "2",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class SmgFleet:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.workers: dict[str, subprocess.Popen] = {}
        self.gateway: subprocess.Popen | None = None
        self.url = ""

    def start_worker(self, kv_capacity: int, decode_s: float) -> str:
        """A faithful SGLang stand-in process (tests/fakes/sglang): its own LRU radix cache under its KV cap."""
        port = free_port()
        log = open(self.tmp / f"worker-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.sglang_standin", "--port", str(port),
             "--kv-capacity", str(kv_capacity), "--decode-s", str(decode_s)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        self.workers[url] = proc
        wait_until(lambda: httpx.get(url + "/health", timeout=1).status_code == 200, 120, f"worker {url}")
        return url

    def start_gateway(self, policy: str, extra: tuple[str, ...] = ()) -> str:
        assert SMG, "smg is not installed (pip install smg==1.13.0; it is in the test extra)"
        port, metrics = free_port(), free_port()
        log = open(self.tmp / f"smg-{policy}.log", "wb")  # noqa: SIM115
        urls = list(self.workers)
        self.gateway = subprocess.Popen(
            [SMG, "launch", "--host", "127.0.0.1", "--port", str(port), "--worker-urls", *urls, "--policy", policy,
             "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics), "--log-level", "warn",
             *HEALTH_FLAGS, *extra],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: self.healthy_count() == len(urls), 60, f"smg to register {len(urls)} workers")
        return self.url

    def healthy_count(self) -> int:
        workers = httpx.get(self.url + "/workers", timeout=2).json()["workers"]
        return sum(1 for w in workers if w.get("is_healthy"))

    def register(self, url: str) -> None:
        """Add a worker to the running gateway (smg's POST /workers)."""
        before = self.healthy_count()
        httpx.post(self.url + "/workers", json={"url": url}, timeout=10).raise_for_status()
        wait_until(lambda: self.healthy_count() > before, 60, f"smg to register {url}")

    def stats(self, url: str) -> dict:
        """The stand-in's counters (requests, prompt_tokens, cached_tokens, ...) since it started."""
        return httpx.get(url + "/_stats", timeout=5).json()

    def flush(self) -> dict[str, dict]:
        """Empty every live worker's prefix cache (they are idle); returns their counters at this point."""
        for url in self.live():
            httpx.post(url + "/flush_cache", timeout=5).raise_for_status()
        return {url: self.stats(url) for url in self.live()}

    def live(self) -> list[str]:
        return [url for url, proc in self.workers.items() if proc.poll() is None]

    def kill_worker(self, url: str) -> None:
        self.workers[url].send_signal(signal.SIGKILL)
        self.workers[url].wait(timeout=10)

    def pause_worker(self, url: str) -> None:
        """Hang the worker (SIGSTOP): it keeps its sockets but answers nothing, health checks included."""
        self.workers[url].send_signal(signal.SIGSTOP)

    def stop_gateway(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.terminate()
            try:
                self.gateway.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
        self.gateway = None

    def close(self) -> None:
        self.stop_gateway()
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused worker cannot act on SIGTERM until it runs again
                proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
