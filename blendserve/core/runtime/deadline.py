"""Per-request deadlines from max_new_tokens and the decode rate measured on the runtime (not a flat timeout).

deadline = floor_s + factor x max_new_tokens / rate, capped at the configured request timeout. `rate` is an
exponential moving average of output tokens per second per request (one copy), measured end to end, so time
spent queued in the runtime is in it. Until a few results are in, a deliberately low initial rate is used.
The factor covers the spread of rates within a run (long prompts, a fuller batch, retractions)."""

from __future__ import annotations

import threading


class DeadlineEstimator:
    def __init__(
        self,
        cap_s: float,
        initial_rate: float = 5.0,
        floor_s: float = 30.0,
        factor: float = 4.0,
        smoothing: float = 0.1,
    ) -> None:
        self.cap_s, self.floor_s, self.factor, self.smoothing = cap_s, floor_s, factor, smoothing
        self.rate = initial_rate
        self.samples = 0
        self._lock = threading.Lock()

    def observe(self, output_tokens: int, seconds: float) -> None:
        """One finished copy: output tokens and its end-to-end seconds. Tiny outputs say little: skipped."""
        if output_tokens < 8 or seconds <= 0:
            return
        rate = output_tokens / seconds
        with self._lock:
            weight = max(self.smoothing, 1.0 / (self.samples + 1))  # the first samples count fully
            self.rate = (1 - weight) * self.rate + weight * rate
            self.samples += 1

    def deadline_s(self, max_new_tokens: int) -> float:
        return min(self.cap_s, self.floor_s + self.factor * max_new_tokens / max(self.rate, 1e-3))
