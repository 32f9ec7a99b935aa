"""Fault injection for the stand-in, driven over HTTP so that tests in other processes can use it too.

Control route (not part of SGLang):
  POST /_faults  {"generate": MODE, "tokenize": MODE, "info": MODE, "down": true, "times": N, "slow_s": S}
  GET  /_faults  -> the faults in force;  DELETE /_faults -> clear all (and release every hung request)
MODE, per route family:
  "500"        answer HTTP 500 {"error": {"message": "injected fault"}}
  "hang"       never answer (until the faults are cleared or the server stops)
  "slow"       answer normally after slow_s seconds (default 2)
  "close"      start a response and drop the connection mid-body (the client sees a protocol error)
  "malformed"  answer 200 with a body that is not JSON
Families: "generate" (/generate), "tokenize" (/v1/tokenize), "info" (/model_info, /server_info, their aliases,
/v1/models). "down": true makes every SGLang route (not /_faults) answer 503, as a server still loading does
on /ready. "times": N applies the faults to the next N matching calls only, then clears them. For a real
outage (refused connections), stop the server: StandinServer.down()/up(), or kill the process."""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse, Response

FAMILIES = ("generate", "tokenize", "info")
MODES = ("500", "hang", "slow", "close", "malformed")


class Faults:
    def __init__(self) -> None:
        self.modes: dict[str, str] = {}
        self.down = False
        self.times: int | None = None
        self.slow_s = 2.0
        self.released = asyncio.Event()
        self.injected = 0

    def set(self, spec: dict) -> str | None:
        for family in FAMILIES:
            mode = spec.get(family)
            if mode is not None and mode not in MODES:
                return f"{family}: mode must be one of {MODES}"
        self.clear()
        self.modes = {f: spec[f] for f in FAMILIES if spec.get(f)}
        self.down = bool(spec.get("down"))
        self.times = spec.get("times")
        self.slow_s = float(spec.get("slow_s", 2.0))
        return None

    def clear(self) -> None:
        self.modes, self.down, self.times = {}, False, None
        self.released.set()
        self.released = asyncio.Event()

    def describe(self) -> dict:
        return {**self.modes, "down": self.down, "times": self.times, "slow_s": self.slow_s, "injected": self.injected}

    def _take(self, family: str) -> str | None:
        mode = "down" if self.down else self.modes.get(family)
        if mode is None:
            return None
        self.injected += 1
        if self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.modes, self.down, self.times = {}, False, None
        return mode

    async def apply(self, family: str) -> Response | None:
        """A fault response for this call, or None to answer normally (after a delay for "slow")."""
        mode = self._take(family)
        if mode is None:
            return None
        if mode == "down":
            return JSONResponse({"error": {"message": "server is not ready"}}, status_code=503)
        if mode == "500":
            return JSONResponse({"error": {"message": "injected fault"}}, status_code=500)
        if mode == "malformed":
            return Response(b'{"text": "trunc', media_type="application/json")
        if mode == "close":
            return _Dropped()
        if mode == "hang":
            await self.released.wait()
            return JSONResponse({"error": {"message": "released hang"}}, status_code=503)
        await asyncio.sleep(self.slow_s)
        return None


class _Dropped(Response):
    """Declares a body it never sends: the server closes the connection mid-response."""

    async def __call__(self, scope, receive, send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"partial', "more_body": False})
