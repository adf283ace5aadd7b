"""The `Gateway` port: how payengine talks to a PSP, and the events a PSP tells us.

Outcomes a PSP returns are values (`CaptureResult` with a status); a call whose outcome is
unknown (timeout, connection reset, 5xx) raises `GatewayUnavailable` and the caller must not
assume anything: it retries with the same idempotency key or asks `query_capture`. A PSP
adapter (in-process fake, HTTP) maps its wire format onto these types; the core never sees it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from engine.money import Money


class GatewayUnavailable(Exception):
    """The call's outcome is unknown (timeout, 5xx, connection lost). Retry with the same key."""


class IdempotencyKeyReused(Exception):
    """The key was used before with other parameters (a real PSP's 400 idempotency error).

    A bug in the caller, never an outcome to retry: the PSP acted on the first request only.
    """


class SessionStatus(enum.StrEnum):
    OPEN = "open"  # the buyer has not paid (yet)
    REVIEW = "review"  # the PSP's risk team holds it; may take hours
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    EXPIRED = "expired"


class CaptureStatus(enum.StrEnum):
    CAPTURED = "captured"
    DECLINED = "declined"
    NOT_FOUND = "not_found"  # the PSP never received a capture with this key


@attrs.frozen
class Registration:
    """The PSP's answer to registering a checkout: where to send the buyer."""

    session_id: str
    hosted_url: str


@attrs.frozen
class CaptureResult:
    status: CaptureStatus
    capture_id: str | None = None
    reason: str | None = None


class PspRefundStatus(enum.StrEnum):
    """What the PSP says of a refund (named apart from `engine.states.RefundStatus`, the state
    of our own refund aggregate)."""

    PENDING = "pending"  # accepted; the outcome comes later, by webhook or query
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # refused when asked (see `RefundRefusal`) or failed later
    NOT_FOUND = "not_found"  # the PSP never received a refund with this key


class RefundRefusal(enum.StrEnum):
    """Why the PSP refused a refund outright: no refund exists, no money moved."""

    CAPTURE_NOT_FOUND = "capture_not_found"
    CAPTURE_NOT_CAPTURED = "capture_not_captured"  # the capture was declined
    CURRENCY_MISMATCH = "refund_currency_mismatch"
    AMOUNT_NOT_POSITIVE = "refund_amount_not_positive"
    #: More than the captured amount minus the earlier (succeeded or pending) refunds.
    EXCEEDS_CAPTURED = "refund_exceeds_captured"
    #: The capture is disputed (a chargeback took it back): Stripe's `charge_disputed`.
    CAPTURE_DISPUTED = "charge_disputed"


@attrs.frozen
class RefundResult:
    """The PSP's word on a refund. `refund_id` is None when it was refused (nothing exists)."""

    status: PspRefundStatus
    refund_id: str | None = None
    reason: str | None = None


class PspEventKind(enum.StrEnum):
    """What a PSP webhook can tell us, after the adapter has verified and parsed it."""

    SESSION_AUTHORIZED = "session.authorized"
    SESSION_DECLINED = "session.declined"
    SESSION_EXPIRED = "session.expired"
    SESSION_REVIEW = "session.review"
    CAPTURE_SUCCEEDED = "capture.succeeded"
    CAPTURE_FAILED = "capture.failed"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    # Disputes (chargebacks), named as Stripe names them: the PSP opens one on a captured
    # order, withdraws its amount, and closes it won (the funds are reinstated) or lost.
    DISPUTE_CREATED = "charge.dispute.created"
    DISPUTE_FUNDS_WITHDRAWN = "charge.dispute.funds_withdrawn"
    DISPUTE_CLOSED = "charge.dispute.closed"
    DISPUTE_FUNDS_REINSTATED = "charge.dispute.funds_reinstated"


SESSION_EVENTS = frozenset(
    {
        PspEventKind.SESSION_AUTHORIZED,
        PspEventKind.SESSION_DECLINED,
        PspEventKind.SESSION_EXPIRED,
        PspEventKind.SESSION_REVIEW,
    }
)

REFUND_EVENTS = frozenset({PspEventKind.REFUND_SUCCEEDED, PspEventKind.REFUND_FAILED})

DISPUTE_EVENTS = frozenset(
    {
        PspEventKind.DISPUTE_CREATED,
        PspEventKind.DISPUTE_FUNDS_WITHDRAWN,
        PspEventKind.DISPUTE_CLOSED,
        PspEventKind.DISPUTE_FUNDS_REINSTATED,
    }
)


class PspDisputeStatus(enum.StrEnum):
    """What the PSP says of a dispute (Stripe's values; `engine.states.DisputeStatus` is ours).
    Every status but WON and LOST is open: the funds stay withdrawn."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"
    NOT_FOUND = "not_found"  # the PSP knows no dispute with this id


@attrs.frozen
class DisputeResult:
    """The PSP's word on a dispute: its status, and (when found) what it withdrew from which
    capture."""

    status: PspDisputeStatus
    dispute_id: str
    capture_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    reason: str | None = None


@attrs.frozen
class PspNotification:
    """A verified PSP event. `reference` is the payment id (session events), the order id
    (capture events and dispute events: the disputed capture's key) or the refund's
    idempotency key (refund events). Dispute events carry the dispute's id, amount, currency
    and status (the PSP's, `PspDisputeStatus`)."""

    event_id: str
    kind: PspEventKind
    reference: str
    occurred_at_ms: int
    capture_id: str | None = None
    reason: str | None = None
    refund_id: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict)
    dispute_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    dispute_status: str | None = None


class Gateway(Protocol):
    """A PSP. Every call may raise GatewayUnavailable; none may be assumed to have failed."""

    async def register_checkout(
        self, nonce: str, amount: Money, return_url: str | None
    ) -> Registration:
        """Create a hosted-page session. Idempotent on `nonce` (the payment id)."""
        ...

    async def session_status(self, session_id: str) -> SessionStatus: ...

    async def expire_session(self, session_id: str) -> SessionStatus:
        """Close the session to the buyer; returns its final status (may be AUTHORIZED)."""
        ...

    async def capture(self, idempotency_key: str, session_id: str, amount: Money) -> CaptureResult:
        """Capture one order. Idempotent on `idempotency_key` (the order id)."""
        ...

    async def query_capture(self, idempotency_key: str) -> CaptureResult:
        """What the PSP knows of the capture with this key (NOT_FOUND if it never arrived)."""
        ...

    async def refund(self, idempotency_key: str, capture_id: str, amount: Money) -> RefundResult:
        """Refund part or all of a capture. Idempotent on `idempotency_key` (our refund id):
        the same key returns the first result; with another capture or amount it raises
        `IdempotencyKeyReused`. A refusal is a FAILED result with a `RefundRefusal` reason."""
        ...

    async def query_refund(self, idempotency_key: str) -> RefundResult:
        """What the PSP knows of the refund with this key (NOT_FOUND if it never arrived)."""
        ...

    async def query_dispute(self, dispute_id: str) -> DisputeResult:
        """What the PSP says of the dispute with its id (NOT_FOUND if it knows none)."""
        ...
