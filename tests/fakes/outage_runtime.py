"""A simulated runtime whose outages and hangs can be switched on: the runtime side of the reliability tests
and of bench/outage_bench.py.

While down, generate() and the tokenizer fail at once with RuntimeFailure (as a refused connection does; the
SGLang adapter would say RuntimeUnavailable, which the dispatcher refunds on its own: this fake leaves the
breaker to do it) and health() says DOWN; a request that was running when the outage began fails when it would
have finished (as a reset connection does). Prompts that contain `hang_marker` never get an answer.
`per_request_s` is a fixed service time per request. Deadlines come from the measured rate (runtime/deadline.py),
as the SGLang adapters' do."""

from __future__ import annotations

import asyncio
import time

from blendserve.core.runtime.base import GenerateRequest, GenerateResult, Health, HealthState, RuntimeFailure
from blendserve.core.runtime.deadline import DeadlineEstimator
from blendserve.core.runtime.simulated import SimulatedRuntime


class OutageTokenizer:
    """The simulated byte tokenizer, refusing (retryably) while its runtime is down."""

    def __init__(self, runtime: OutageRuntime, inner) -> None:
        self.runtime, self.inner = runtime, inner

    def _check(self) -> None:
        if self.runtime.down:
            raise RuntimeFailure("tokenizer: connection refused (simulated outage)")

    def encode_text(self, text: str) -> list[int]:
        self._check()
        return self.inner.encode_text(text)

    def encode_chat(self, messages: list[dict]) -> list[int]:
        self._check()
        return self.inner.encode_chat(messages)


class OutageRuntime(SimulatedRuntime):
    def __init__(
        self,
        per_request_s: float = 0.0,
        with_health_check: bool = True,
        hang_marker: bytes | None = None,
        deadline_floor_s: float = 30.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.deadlines = DeadlineEstimator(self.timeout_s, floor_s=deadline_floor_s)
        self.per_request_s = per_request_s
        self.hang_marker = hang_marker
        self.down = False
        self.outages = 0  # how many outages began (a request spanning one fails)
        self.generate_calls_while_down = 0
        self.health_calls = 0
        self.tokenizer = OutageTokenizer(self, self.tokenizer)
        if not with_health_check:
            self.health = None  # the dispatcher then probes with trial lines

    def go_down(self) -> None:
        self.down = True
        self.outages += 1

    def come_up(self) -> None:
        self.down = False

    async def outage(self, seconds: float) -> None:
        self.go_down()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.come_up()

    async def health(self) -> Health:
        self.health_calls += 1
        return (
            Health(HealthState.DOWN, "connection refused (simulated outage)")
            if self.down
            else Health(HealthState.READY)
        )

    def deadline_s(self, request: GenerateRequest) -> float:
        return self.deadlines.deadline_s(request.params.max_new_tokens)

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self.down:
            self.generate_calls_while_down += 1
            raise RuntimeFailure("connection refused (simulated outage)")
        if self.hang_marker is not None and self.hang_marker in bytes(list(request.input_ids)):
            await asyncio.Event().wait()  # never answers; the dispatcher's deadline ends it
        outages_before, started = self.outages, time.monotonic()
        if self.per_request_s:
            await asyncio.sleep(self.per_request_s)
        if self.outages != outages_before:
            raise RuntimeFailure(f"connection reset after {time.monotonic() - started:.2f} s (simulated outage)")
        result = await super().generate(request)
        self.deadlines.observe(result.completion_tokens, time.monotonic() - started)
        return result
