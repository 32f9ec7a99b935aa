"""Observed throughput, fed by the line runner's LineEvents: a time series for the dashboard and the online
calibration of the perf model that the plan estimates use.

The perf model (core/sched/perf_model.py) says how much GPU time a line's work is (`work_s`); the runtime says
how long it really took. Two ratios calibrate it: the work rate (model-seconds of work finished per wall second
while the runtime is busy, which folds in concurrency and the runtime's real speed) and the latency ratio (wall
seconds a line spends on the runtime per model-second of its own work)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from blendserve.core import ids
from blendserve.core.dispatch.stats import LineEvent

BUCKET_S = 5.0
SERIES_BUCKETS = 120  # ten minutes of history on the dashboard
RATE_WINDOW_S = 60.0
IDLE_GAP_S = 10.0  # a longer pause between results is idle time, not slowness: the rate window restarts
MIN_CALIBRATION_LINES = 8
LATENCY_EWMA = 0.05


@dataclass
class Bucket:
    start: float
    lines: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Calibration:
    work_rate: float | None  # model-seconds of work finished per wall second; None until observed
    latency_ratio: float | None  # wall seconds per model-second of a line's own work (window, else EWMA)
    lines: int  # results the rate is measured over


class ThroughputMeter:
    def __init__(self, clock: Callable[[], float] = ids.now_precise) -> None:
        self.clock = clock
        self.buckets: deque[Bucket] = deque(maxlen=SERIES_BUCKETS)
        self._done: deque[tuple[float, float, float]] = deque()  # (wall time, work_s, seconds) of recent successes
        self._latency_ratio: float | None = None

    def record(self, event: LineEvent) -> None:
        """A LineEvent observer: count successes into the series and the calibration window."""
        if event.outcome != "succeeded":
            return
        now = self.clock()
        bucket = self._bucket(now)
        bucket.lines += 1
        bucket.prompt_tokens += event.prompt_tokens
        bucket.cached_tokens += event.cached_tokens
        bucket.completion_tokens += event.completion_tokens
        if event.work_s > 0:
            if self._done and now - self._done[-1][0] > IDLE_GAP_S:
                self._done.clear()
            self._done.append((now, event.work_s, event.seconds))
            ratio = event.seconds / event.work_s
            prev = self._latency_ratio
            self._latency_ratio = ratio if prev is None else prev + LATENCY_EWMA * (ratio - prev)
        while self._done and now - self._done[0][0] > RATE_WINDOW_S:
            self._done.popleft()

    def _bucket(self, now: float) -> Bucket:
        start = now - now % BUCKET_S
        if not self.buckets or self.buckets[-1].start < start:
            self.buckets.append(Bucket(start))
        return self.buckets[-1]

    def calibration(self) -> Calibration:
        done = self._done
        if len(done) < MIN_CALIBRATION_LINES or done[-1][0] <= done[0][0]:
            return Calibration(None, self._latency_ratio, len(done))
        work = sum(w for _, w, _ in done)
        # a ratio of sums over the window (not a mean of per-line ratios, which short lines' fixed overheads
        # inflate); the first result only marks the window's start for the rate
        ratio = sum(s for _, _, s in done) / work
        return Calibration((work - done[0][1]) / (done[-1][0] - done[0][0]), ratio, len(done))

    def series(self) -> list[dict[str, float]]:
        """Per-bucket rates, oldest first, with empty buckets filled in (unix time of the bucket's start)."""
        if not self.buckets:
            return []
        by_start = {b.start: b for b in self.buckets}
        last = self._bucket_start(self.clock())
        first = max(self.buckets[0].start, last - (SERIES_BUCKETS - 1) * BUCKET_S)
        out, start = [], first
        while start <= last:
            b = by_start.get(start, Bucket(start))
            out.append(
                {
                    "t": start,
                    "lines_per_s": b.lines / BUCKET_S,
                    "completion_tokens_per_s": b.completion_tokens / BUCKET_S,
                    "cached_share": b.cached_tokens / b.prompt_tokens if b.prompt_tokens else 0.0,
                }
            )
            start += BUCKET_S
        return out

    @staticmethod
    def _bucket_start(now: float) -> float:
        return now - now % BUCKET_S
