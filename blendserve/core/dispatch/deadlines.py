"""Per-request deadlines from max_tokens and the throughput measured on this runtime (not a flat timeout).

deadline = clamp(floor_s + multiplier * max_output_tokens / rate, floor_s, ceiling_s), where `rate` is the
output tokens per second one line has been seen to get, end to end (queueing in the runtime included), as a
running mean that leans to the slow side (lines slow down when the runtime gets busier; see `observe`). Until
`min_observations` lines have finished, the ceiling applies: nothing is known yet."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeadlineConfig:
    floor_s: float = 30.0
    ceiling_s: float = 600.0
    multiplier: float = 4.0
    min_observations: int = 8
    smoothing: float = 0.1  # weight of each new observation in the running mean


class DeadlineEstimator:
    def __init__(self, config: DeadlineConfig) -> None:
        self.config = config
        self.observations = 0
        self.rate: float | None = None  # output tokens per second for one line, on the low side

    def observe(self, output_tokens: int, elapsed_s: float) -> None:
        """A line finished: `output_tokens` came back after `elapsed_s`. Slower lines pull the rate down at
        full weight, faster ones push it up at `smoothing` weight, so the estimate leans to the slow side."""
        if output_tokens <= 0 or elapsed_s <= 0:
            return
        seen = output_tokens / elapsed_s
        self.observations += 1
        if self.rate is None:
            self.rate = seen
        elif seen < self.rate:
            self.rate = 0.5 * self.rate + 0.5 * seen
        else:
            self.rate += self.config.smoothing * (seen - self.rate)

    def deadline_s(self, max_output_tokens: int) -> float:
        """Seconds to wait for a line that may produce up to `max_output_tokens` tokens."""
        c = self.config
        if self.rate is None or self.observations < c.min_observations:
            return c.ceiling_s
        wanted = c.floor_s + c.multiplier * max_output_tokens / self.rate
        return max(c.floor_s, min(c.ceiling_s, wanted))

    def describe(self) -> dict[str, object]:
        return {
            "tokens_per_s_per_line": None if self.rate is None else round(self.rate, 2),
            "observations": self.observations,
            "floor_s": self.config.floor_s,
            "ceiling_s": self.config.ceiling_s,
        }
