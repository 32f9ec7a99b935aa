"""The statuses a batch and a request line are stored with. StrEnums, so they compare and persist as strings.

They live in store/ because they are column values that queries filter on; core's lifecycle owns the rules of
moving between them."""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class RequestStatus(StrEnum):
    """One input line: PENDING -> IN_FLIGHT -> SUCCEEDED | FAILED; CANCELLED / EXPIRED when its batch ends first."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class WebhookStatus(StrEnum):
    """One webhook delivery: PENDING (due at next_attempt_at) -> DELIVERED | FAILED (gave up after the window)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
