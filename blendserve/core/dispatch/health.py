"""Runtime health: a probe and a circuit breaker that pause dispatch while the runtime is down.

STARTING: until the runtime's health() first says READY (a model loading, SGLang not up yet), nothing is loaded
or sent; it is asked every `probe_interval_s`. CLOSED: dispatch runs. Consecutive retryable failures
(`failure_threshold` of them, with no success between) open the breaker. OPEN: no wave is sent and no page is
loaded; health() is asked first after `probe_interval_s`, then with doubling waits up to `max_probe_interval_s`.
READY moves to HALF_OPEN: `trial_lines` lines go out; the first success closes the breaker, a failure opens it
again. A runtime without a health check (`check` None) is probed by the trial lines alone.

While the breaker is open, a line that fails with a retryable error goes back to pending without spending an
attempt (`should_refund`): a one-minute runtime restart costs lines nothing. The caller bounds the refunds per
line, so a line that fails the same way on a healthy runtime still ends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from blendserve.core.runtime.base import Health, HealthState, Runtime

log = logging.getLogger("blendserve.dispatch")
HealthCheck = Callable[[], Awaitable[Health]]


class BreakerState(StrEnum):
    STARTING = "starting"
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class HealthConfig:
    failure_threshold: int = 3
    probe_interval_s: float = 1.0
    max_probe_interval_s: float = 5.0
    probe_timeout_s: float = 5.0  # health() answers within ~2 s by contract; a hung one counts as down
    trial_lines: int = 1


def health_check_of(runtime: Runtime) -> HealthCheck | None:
    """The runtime's health(), or None when it has none (then trial lines are the probe)."""
    check = getattr(runtime, "health", None)
    return check if callable(check) else None


class RuntimeHealth:
    """The breaker's state machine. Not thread-safe: the dispatcher's event loop is its only caller."""

    def __init__(self, check: HealthCheck | None, config: HealthConfig, clock: Callable[[], float] = time.monotonic):
        self.check, self.config, self.clock = check, config, clock
        self.state = BreakerState.STARTING if check is not None else BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None
        self.outages = 0
        self._probe_wait = config.probe_interval_s
        self._next_probe = 0.0
        self._trials_out = 0

    @property
    def is_open(self) -> bool:
        """Nothing may be loaded or sent (open, or still starting)."""
        return self.state in (BreakerState.OPEN, BreakerState.STARTING)

    @property
    def is_trial(self) -> bool:
        """Half-open: only trial lines go out (they need not wait for a full wave)."""
        return self.state == BreakerState.HALF_OPEN

    def record_success(self) -> None:
        """A line got an answer: the runtime serves."""
        self.consecutive_failures = 0
        if self.state in (BreakerState.OPEN, BreakerState.HALF_OPEN):
            down_s = self.clock() - (self.opened_at or self.clock())
            log.info("runtime healthy again after %.1f s; dispatch resumes", down_s)
        self.state, self.opened_at, self._trials_out = BreakerState.CLOSED, None, 0
        self._probe_wait = self.config.probe_interval_s

    def record_failure(self, error: BaseException | str) -> None:
        """A line failed with a retryable runtime error (transport, 5xx, timeout, unavailable)."""
        self.consecutive_failures += 1
        self.last_error = _describe(error)
        if self.state == BreakerState.HALF_OPEN or (
            self.state == BreakerState.CLOSED and self.consecutive_failures >= self.config.failure_threshold
        ):
            self._open()

    def should_refund(self) -> bool:
        """True when a retryable failure happened because the runtime is down: requeue it for free."""
        return self.is_open

    def dispatch_room(self, room: int) -> int:
        """How many lines may go out now: all of `room` when closed, the trial budget when half-open."""
        if self.state == BreakerState.CLOSED:
            return room
        if self.state == BreakerState.HALF_OPEN:
            return max(0, min(room, self.config.trial_lines - self._trials_out))
        return 0

    def dispatched(self, count: int) -> None:
        if self.state == BreakerState.HALF_OPEN:
            self._trials_out += count

    async def probe_if_due(self) -> None:
        """While starting or open, ask the runtime whether it can serve (at most once per probe interval)."""
        if not self.is_open or self.clock() < self._next_probe:
            return
        if self.check is not None:
            health = await self._ask()
            if not health.ready:
                self.last_error = f"health: {health.state}" + (f" ({health.detail})" if health.detail else "")
                if self.state == BreakerState.OPEN:
                    self._probe_wait = min(self._probe_wait * 2, self.config.max_probe_interval_s)
                self._next_probe = self.clock() + self._probe_wait
                return
        if self.state == BreakerState.STARTING:
            log.info("runtime ready; dispatch starts")
            self.state = BreakerState.CLOSED
            return
        log.info("runtime probe passed; sending %d trial line(s)", self.config.trial_lines)
        self.state, self._trials_out = BreakerState.HALF_OPEN, 0
        # a trial line that never comes back (a hang) keeps the breaker half-open until its deadline ends it

    def describe(self) -> dict[str, object]:
        """For /health: {"state": starting|closed|open|half_open, "down_for_s", "last_error", ...}."""
        down_for = None if self.opened_at is None else round(self.clock() - self.opened_at, 3)
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "down_for_s": down_for,
            "last_error": self.last_error,
            "outages": self.outages,
            "probe": "health_check" if self.check is not None else "trial_lines",
        }

    async def _ask(self) -> Health:
        assert self.check is not None
        try:
            return await asyncio.wait_for(self.check(), self.config.probe_timeout_s)
        except Exception as exc:  # the contract says health() never raises; a broken one means "down"
            return Health(HealthState.DOWN, _describe(exc))

    def _open(self) -> None:
        if self.opened_at is None:
            self.opened_at = self.clock()
            self.outages += 1
            log.warning("runtime unhealthy (%s); dispatch paused", self.last_error)
        else:
            self._probe_wait = min(self._probe_wait * 2, self.config.max_probe_interval_s)
        self.state, self._trials_out = BreakerState.OPEN, 0
        self._next_probe = self.clock() + self._probe_wait


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
