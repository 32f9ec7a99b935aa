"""What the dispatcher did since it started: counters (read by /metrics and /health) and a per-line event that
observers (Prometheus histograms, the throughput meter that calibrates the plan estimates) subscribe to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("blendserve.dispatch")


@dataclass(frozen=True)
class LineEvent:
    """One line left the runtime. outcome: "succeeded", "failed" (per-line error) or "retried" (runtime error,
    back to pending). seconds: wall time on the runtime; work_s: the perf model's estimate of its GPU time."""

    outcome: str
    seconds: float
    work_s: float
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    worker: str = "0"


LineObserver = Callable[[LineEvent], None]
WaveObserver = Callable[[int, float], None]  # (lines dispatched, seconds the wave took to pick and mark)


@dataclass
class DispatchStats:
    dispatched: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    finalized: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    line_observers: list[LineObserver] = field(default_factory=list, repr=False)
    wave_observers: list[WaveObserver] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {
            "dispatched": self.dispatched,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "finalized": self.finalized,
        }

    def line_done(self, event: LineEvent) -> None:
        """Count a line's outcome and tokens, then tell the observers (an observer's error never stops a line)."""
        if event.outcome == "succeeded":
            self.succeeded += 1
        elif event.outcome == "failed":
            self.failed += 1
        elif event.outcome == "retried":
            self.retried += 1
        self.prompt_tokens += event.prompt_tokens
        self.cached_tokens += event.cached_tokens
        self.completion_tokens += event.completion_tokens
        for observer in self.line_observers:
            _safely(observer, event)

    def wave_done(self, lines: int, seconds: float) -> None:
        for observer in self.wave_observers:
            _safely(observer, lines, seconds)


def _safely(fn: Callable[..., None], *args: object) -> None:
    try:
        fn(*args)
    except Exception:  # observability must never break dispatch
        log.exception("stats observer failed")
