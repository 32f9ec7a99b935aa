"""Counters of what the dispatcher did since it started (exposed by /metrics and /health)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class DispatchStats:
    dispatched: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    finalized: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
