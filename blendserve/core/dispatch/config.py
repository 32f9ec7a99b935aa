"""The dispatcher's narrow, frozen slice of Settings (read once at the edge, passed down)."""

from __future__ import annotations

from dataclasses import dataclass, field

from blendserve.config import Settings
from blendserve.core.dispatch.health import HealthConfig


@dataclass(frozen=True)
class DispatchConfig:
    lease_seconds: float = 15.0
    request_timeout_s: float = 600.0  # embeddings' deadline; generation's comes from Runtime.deadline_s
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    max_inflight: int | None = None  # cap on requests in flight on the runtime (None: the runtime's own)
    pace_decode: bool = True  # core/sched/pacing.py
    max_free_requeues: int = 20  # per line: failures while the runtime is down that cost no attempt
    health: HealthConfig = field(default_factory=HealthConfig)

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchConfig:
        return cls(
            lease_seconds=settings.lease_seconds,
            request_timeout_s=settings.request_timeout_s,
            max_attempts=settings.max_attempts,
            retry_backoff_s=settings.retry_backoff_s,
            max_inflight=settings.max_inflight,
            pace_decode=settings.pace_decode,
            health=HealthConfig(
                failure_threshold=settings.breaker_failure_threshold,
                probe_interval_s=settings.probe_interval_s,
                max_probe_interval_s=settings.max_probe_interval_s,
            ),
        )
