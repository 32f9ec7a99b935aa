"""The batch status machine: every status change goes through transition(), so illegal moves cannot happen."""

from __future__ import annotations

from typing import Protocol

from blendserve.core.errors import InvalidState

TRANSITIONS: dict[str, frozenset[str]] = {
    "validating": frozenset({"failed", "in_progress", "cancelling"}),
    "in_progress": frozenset({"finalizing", "cancelling", "expired"}),
    "finalizing": frozenset({"completed"}),
    "cancelling": frozenset({"cancelled"}),
    "failed": frozenset(),
    "completed": frozenset(),
    "expired": frozenset(),
    "cancelled": frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE = frozenset({"in_progress", "cancelling", "finalizing"})  # statuses the dispatcher works on
CANCELLABLE = frozenset({"validating", "in_progress"})


class HasStatus(Protocol):
    status: str


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def transition(batch: HasStatus, target: str, now: int) -> None:
    """Move `batch` to `target` and stamp `<target>_at`; raise InvalidState for a move the machine forbids."""
    if not can_transition(batch.status, target):
        raise InvalidState(f"Batch cannot go from status '{batch.status}' to '{target}'.", code="invalid_state")
    batch.status = target
    setattr(batch, f"{target}_at", now)
