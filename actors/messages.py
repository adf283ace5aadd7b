"""Messages between actors: imperative commands (`CaptureOrder`), one record each."""

from __future__ import annotations

import attrs

from engine.gateway import PspNotification
from engine.records import Payment, PaymentOrder

CHECKOUT = "checkout"
ORDER = "order"


@attrs.frozen
class RegisterCheckout:
    """Register the checkout with the PSP (idempotent on the payment id) and get its page.

    `payment`: the payment as its creator just committed it, so a new incarnation of the
    checkout actor starts from it instead of reading it back (a stale copy fails its next
    update on the version, and the actor reloads).
    """

    payment: Payment | None = None
    #: Unanswered registrations so far: a retry brings the count, so an incarnation started
    #: for it (the last one passivated during a long backoff) keeps counting to the limit.
    attempts: int = 0


@attrs.frozen
class ApplyPspEvent:
    """Apply a verified PSP event, recording it in the same unit of work (dedup by event id)."""

    event: PspNotification


@attrs.frozen
class ExpireCheckout:
    """The buyer's time is up: close the PSP session and settle the checkout's fate.

    `attempts`: unanswered closes so far (their retries back off across incarnations)."""

    attempts: int = 0


@attrs.frozen
class CheckCompletion:
    """An order changed: complete the checkout if every order is terminal and booked."""


@attrs.frozen
class ResumeCheckout:
    """Recovery after a restart: take the checkout from wherever it stopped."""


@attrs.frozen
class ExecuteOrder:
    """The checkout is authorized: capture this order.

    `fresh`: the checkout moved the order to EXECUTING in its authorization's unit of work and
    no capture was attempted yet, so the order captures at once. Otherwise (recovery) an
    EXECUTING order's earlier outcome is unknown and it asks the PSP first.
    """

    session_id: str
    fresh: bool = False
    #: The order as the checkout's authorization just committed it (with `fresh`), so a new
    #: incarnation of the order actor starts from it instead of reading it back.
    order: PaymentOrder | None = None


@attrs.frozen
class AttemptCapture:
    """Call the PSP's capture with the order id as idempotency key."""


@attrs.frozen
class QueryCapture:
    """Ask the PSP what it knows of this order's capture (after an unknown outcome)."""


@attrs.frozen
class FailOrder:
    """The checkout failed or expired before this order started."""

    reason: str


# --- refunds (actors/refund.py: one actor per ORDER, keyed by the order id) ----------------
REFUND = "refund"


@attrs.frozen
class CreateRefund:
    """Refund `amount_minor` (None: all that is left) of the actor's order, once per
    `creation_key`; replies with the `Refund` or a `Rejection`."""

    creation_key: str
    amount_minor: int | None = None
    currency: str | None = None
    reason: str | None = None


@attrs.frozen
class AttemptRefund:
    """Call the PSP's refund with the refund id as idempotency key."""

    refund_id: str


@attrs.frozen
class QueryRefund:
    """Ask the PSP what it knows of this refund (after an unknown outcome, or while pending)."""

    refund_id: str


@attrs.frozen
class ApplyRefundEvent:
    """Apply a verified PSP refund event, recording it in the same unit of work."""

    event: PspNotification


# --- disputes (actors/dispute.py: handled by the order's refund actor) ---------------------
@attrs.frozen
class ApplyDisputeEvent:
    """Apply a verified PSP dispute event (`charge.dispute.*`), recording it in the same unit
    of work; sent to the refund actor of the disputed order."""

    event: PspNotification


@attrs.frozen
class QueryDispute:
    """Ask the PSP what it says of this open dispute (in case its close webhook is lost)."""

    dispute_id: str
