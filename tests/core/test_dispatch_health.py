"""The runtime-health breaker's state machine, on a fake clock."""

from __future__ import annotations

import pytest

from blendserve.core.dispatch.health import BreakerState, HealthConfig, RuntimeHealth
from blendserve.core.runtime.base import Health, HealthState

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Check:
    def __init__(self) -> None:
        self.up, self.calls = False, 0

    async def __call__(self) -> Health:
        self.calls += 1
        return Health(HealthState.READY if self.up else HealthState.DOWN, "" if self.up else "refused")


def _breaker(check=None, **config):
    clock = Clock()
    return RuntimeHealth(check, HealthConfig(**{"probe_interval_s": 1.0, "max_probe_interval_s": 4.0, **config}), clock)


async def test_consecutive_failures_open_and_a_success_resets_the_count():
    health = _breaker(failure_threshold=3)
    health.record_failure(RuntimeError("a"))
    health.record_failure(RuntimeError("b"))
    health.record_success()
    health.record_failure(RuntimeError("c"))
    health.record_failure(RuntimeError("d"))
    assert health.state == BreakerState.CLOSED and not health.should_refund()
    assert health.dispatch_room(10) == 10
    health.record_failure(RuntimeError("e"))
    assert health.state == BreakerState.OPEN and health.should_refund()
    assert health.dispatch_room(10) == 0
    assert health.describe()["last_error"] == "RuntimeError: e" and health.describe()["outages"] == 1


async def test_starting_waits_for_ready_then_dispatch_starts_closed():
    check = Check()
    health = _breaker(check)
    assert health.state == BreakerState.STARTING and health.is_open and health.dispatch_room(5) == 0
    for _ in range(3):
        await health.probe_if_due()
        health.clock.now += 1.0
    assert check.calls == 3 and health.state == BreakerState.STARTING  # every probe interval, no backoff
    assert health.describe()["last_error"] == "health: down (refused)"
    check.up = True
    await health.probe_if_due()
    assert health.state == BreakerState.CLOSED and health.describe()["outages"] == 0


async def test_a_probe_that_raises_or_hangs_means_down():
    async def broken() -> Health:
        raise OSError("boom")

    health = _breaker(broken)
    await health.probe_if_due()
    assert health.state == BreakerState.STARTING and "boom" in health.describe()["last_error"]


async def test_probe_backs_off_while_down_then_half_open_trial_closes():
    check = Check()
    health = _breaker(check, failure_threshold=1, trial_lines=2)
    check.up = True
    await health.probe_if_due()  # started
    check.up, check.calls = False, 0
    health.record_failure("down")
    await health.probe_if_due()
    assert check.calls == 0  # not due before probe_interval_s
    waits: list[float] = []
    for _ in range(4):
        before = health.clock.now
        while check.calls == len(waits):
            health.clock.now += 0.25
            await health.probe_if_due()
        waits.append(health.clock.now - before)
    assert waits == [1.0, 2.0, 4.0, 4.0]  # doubling, capped
    assert health.state == BreakerState.OPEN
    check.up = True
    health.clock.now += 4.0
    await health.probe_if_due()
    assert health.state == BreakerState.HALF_OPEN and health.dispatch_room(10) == 2
    health.dispatched(2)
    assert health.dispatch_room(10) == 0  # the trials are out; wait for them
    health.record_success()
    assert health.state == BreakerState.CLOSED and health.describe()["down_for_s"] is None


async def test_a_failed_trial_opens_again_and_without_a_check_trials_are_the_probe():
    health = _breaker(None, failure_threshold=2)
    health.record_failure("x")
    health.record_failure("y")
    health.clock.now += 1.0
    await health.probe_if_due()
    assert health.state == BreakerState.HALF_OPEN and health.describe()["probe"] == "trial_lines"
    health.record_failure("trial failed")
    assert health.state == BreakerState.OPEN and health.describe()["outages"] == 1  # the same outage
