"""State enums and transition tables: the single place that says which move is legal.

One table per aggregate (DESIGN.md §3). `transition(current, target)` is the only way a status
changes; the teaching mode draws its diagrams from the same `TRANSITIONS` tables.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from engine.errors import IllegalTransition


class PaymentStatus(enum.StrEnum):
    """A checkout: one buyer, one card payment, several orders."""

    CREATED = "CREATED"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    AUTHORIZED = "AUTHORIZED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    REJECTED_BY_RISK = "REJECTED_BY_RISK"


class OrderStatus(enum.StrEnum):
    """A payment order: one seller's share of a checkout, captured separately."""

    NOT_STARTED = "NOT_STARTED"
    EXECUTING = "EXECUTING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


class PayoutStatus(enum.StrEnum):
    REQUESTED = "REQUESTED"
    FUNDS_RESERVED = "FUNDS_RESERVED"
    SUBMITTED = "SUBMITTED"
    PAID = "PAID"
    FAILED = "FAILED"
    RETURNED = "RETURNED"


class RefundStatus(enum.StrEnum):
    """A refund of one captured order (its amount is held against the order until FAILED)."""

    REQUESTED = "REQUESTED"
    SUBMITTED = "SUBMITTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class DisputeStatus(enum.StrEnum):
    """A chargeback the PSP opened on one captured order (actors/dispute.py).

    It exists from the PSP's first word about it, and the PSP has withdrawn its amount by
    then (the chargeback is posted when it is recorded): OPEN until the PSP closes it, WON
    (the funds come back) or LOST (they are recovered from the seller).
    """

    OPEN = "OPEN"
    WON = "WON"
    LOST = "LOST"


Status = PaymentStatus | OrderStatus | PayoutStatus | RefundStatus | DisputeStatus

P, OS, PO, R = PaymentStatus, OrderStatus, PayoutStatus, RefundStatus

TRANSITIONS: Mapping[type[enum.Enum], Mapping[enum.Enum, frozenset[enum.Enum]]] = {
    PaymentStatus: {
        # FAILED from CREATED: the PSP refused to register the checkout.
        P.CREATED: frozenset({P.AWAITING_PAYMENT, P.REJECTED_BY_RISK, P.FAILED}),
        # AWAITING -> FAILED: the buyer's card was declined; -> EXPIRED: the buyer never paid.
        P.AWAITING_PAYMENT: frozenset({P.AUTHORIZED, P.FAILED, P.EXPIRED}),
        # AUTHORIZED -> FAILED only when every order failed to capture.
        P.AUTHORIZED: frozenset({P.COMPLETED, P.FAILED}),
        P.COMPLETED: frozenset(),
        P.FAILED: frozenset(),
        P.EXPIRED: frozenset(),
        P.REJECTED_BY_RISK: frozenset(),
    },
    OrderStatus: {
        # NOT_STARTED -> FAILED: the checkout failed or expired before capture began.
        OS.NOT_STARTED: frozenset({OS.EXECUTING, OS.FAILED}),
        # A timeout keeps the order EXECUTING: the outcome is unknown until the PSP says.
        OS.EXECUTING: frozenset({OS.SUCCESS, OS.FAILED}),
        OS.SUCCESS: frozenset(),
        OS.FAILED: frozenset(),
    },
    PayoutStatus: {
        PO.REQUESTED: frozenset({PO.FUNDS_RESERVED, PO.FAILED}),
        PO.FUNDS_RESERVED: frozenset({PO.SUBMITTED, PO.FAILED}),
        PO.SUBMITTED: frozenset({PO.PAID, PO.FAILED}),
        # A bank may return a payout days after it was paid (closed account, wrong IBAN).
        PO.PAID: frozenset({PO.RETURNED}),
        PO.FAILED: frozenset(),
        PO.RETURNED: frozenset(),
    },
    RefundStatus: {
        # REQUESTED -> SUCCEEDED | FAILED: the PSP's answer (or its webhook) was final at once;
        # -> SUBMITTED: the PSP accepted it as pending. A timeout keeps it REQUESTED.
        R.REQUESTED: frozenset({R.SUBMITTED, R.SUCCEEDED, R.FAILED}),
        R.SUBMITTED: frozenset({R.SUCCEEDED, R.FAILED}),
        R.SUCCEEDED: frozenset(),
        R.FAILED: frozenset(),
    },
    DisputeStatus: {
        # The PSP's close says won or lost; nothing reopens a closed dispute.
        DisputeStatus.OPEN: frozenset({DisputeStatus.WON, DisputeStatus.LOST}),
        DisputeStatus.WON: frozenset(),
        DisputeStatus.LOST: frozenset(),
    },
}

_AGGREGATE_NAMES: Mapping[type[enum.Enum], str] = {
    PaymentStatus: "payment",
    OrderStatus: "payment order",
    PayoutStatus: "payout",
    RefundStatus: "refund",
    DisputeStatus: "dispute",
}


def allowed(current: enum.Enum) -> frozenset[enum.Enum]:
    """The statuses `current` may move to."""
    return TRANSITIONS[type(current)][current]


def is_terminal(status: enum.Enum) -> bool:
    return not allowed(status)


def can_transition(current: enum.Enum, target: enum.Enum) -> bool:
    return type(current) is type(target) and target in allowed(current)


S = TypeVar("S", bound=enum.Enum)


def transition(current: S, target: S) -> S:
    """Return `target` if the move is legal, else raise IllegalTransition naming it."""
    if type(current) is not type(target):
        raise IllegalTransition(
            _AGGREGATE_NAMES.get(type(current), type(current).__name__), str(current), str(target)
        )
    if target not in allowed(current):
        raise IllegalTransition(_AGGREGATE_NAMES[type(current)], current.value, target.value)
    return target
