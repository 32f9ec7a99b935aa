"""Start `blendserve serve` as a real uvicorn process on a free port, and stop (or kill -9) it; `poll` waits for
a condition instead of sleeping a fixed time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


def poll(condition: Callable[[], T], timeout: float, every: float = 0.1, what: str = "condition") -> T:
    """condition()'s first truthy value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        runtime: str = "none",
        env: dict | None = None,
        port: int | None = None,
        log_level: str = "warning",
    ):
        self.log_level = log_level
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.runtime = runtime
        self.env = {**os.environ, "BLENDSERVE_DATA_DIR": str(data_dir), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / f"server-{self.port}.log"

    def start(self, timeout: float = 120.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "blendserve.cli",
            "serve",
            "--port",
            str(self.port),
            "--runtime",
            self.runtime,
            "--log-level",
            self.log_level,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-4000:]}")

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
