"""The batch status machine: every status change goes through transition(), so illegal moves cannot happen."""

from __future__ import annotations

from typing import Protocol

from blendserve.core.errors import InvalidState
from blendserve.store.statuses import BatchStatus

TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.VALIDATING: frozenset({BatchStatus.FAILED, BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING}),
    BatchStatus.IN_PROGRESS: frozenset({BatchStatus.FINALIZING, BatchStatus.CANCELLING, BatchStatus.EXPIRED}),
    BatchStatus.FINALIZING: frozenset({BatchStatus.COMPLETED}),
    BatchStatus.CANCELLING: frozenset({BatchStatus.CANCELLED}),
    BatchStatus.FAILED: frozenset(),
    BatchStatus.COMPLETED: frozenset(),
    BatchStatus.EXPIRED: frozenset(),
    BatchStatus.CANCELLED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE = frozenset(
    {BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING, BatchStatus.FINALIZING}
)  # statuses the dispatcher works on
CANCELLABLE = frozenset({BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS})


class HasStatus(Protocol):
    status: str


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(BatchStatus(current), frozenset())


def transition(batch: HasStatus, target: str, now: int) -> None:
    """Move `batch` to `target` and stamp `<target>_at`; raise InvalidState for a move the machine forbids."""
    if not can_transition(batch.status, target):
        raise InvalidState(f"Batch cannot go from status '{batch.status}' to '{target}'.", code="invalid_state")
    batch.status = target
    setattr(batch, f"{target}_at", now)
