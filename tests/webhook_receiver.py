"""A webhook receiver on 127.0.0.1 for tests: records every delivery (headers, body, arrival time) and answers
with the next status of a script (then 200). Verification is left to the test (the openai SDK's helper)."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    arrived: float


class Receiver:
    def __init__(self, statuses: list[int] | None = None, port: int = 0) -> None:
        self.statuses = list(statuses or [])
        self.deliveries: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    async def arrivals(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        """wait_for for async tests: the sender runs on the test's event loop, so never block it."""
        import asyncio

        deadline = time.time() + timeout
        while len(self.deliveries) < count:
            assert time.time() < deadline, f"{len(self.deliveries)} of {count} webhook deliveries arrived"
            await asyncio.sleep(0.02)
        return self.deliveries

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        deadline = time.time() + timeout
        while len(self.deliveries) < count:
            assert time.time() < deadline, f"{len(self.deliveries)} of {count} webhook deliveries arrived"
            time.sleep(0.02)
        return self.deliveries
