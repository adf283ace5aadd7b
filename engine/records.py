"""Records: frozen attrs classes for every aggregate and row payengine keeps.

A change is `evolve(record, ...)` (this module's `attrs.evolve`, which validates only the changed
fields: see `evolve`); outside data (a database row, a wire body) enters only
through a named constructor (`from_row`), never `Model(**row)`. Validators state the local
invariants and name the field and the value when one is broken. Timestamps are integer
milliseconds since the Unix epoch (`*_at_ms`), taken from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from engine.money import Money, currency_exponent
from engine.states import DisputeStatus, OrderStatus, PaymentStatus, PayoutStatus, RefundStatus


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is int and value >= 0:  # the common case first (bool is not `int`)
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is int and value > 0:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def _currency(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    currency_exponent(value)


def _non_empty(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if type(value) is str and 0 < len(value) <= 128:
        return
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ValueError(f"{attribute.name} must be a string of 1..128 characters, got {value!r}")


R = TypeVar("R")
_MISSING = object()
_evolvers: dict[type, Callable[..., Any]] = {}


def evolve(record: R, **changes: Any) -> R:
    """`attrs.evolve(record, **changes)` that validates only the changed fields.

    Why: records change on every unit of work (a status, a timestamp, the version), and
    `attrs.evolve` rebuilds the whole record through `__init__`, re-running every validator on
    fields that were already validated when the record was built (a record is frozen, so they
    cannot have changed since). Same result, same errors for a bad new value; an unknown field
    name raises TypeError. Classes with converters, `init=False` fields or a post-init hook
    take `attrs.evolve` itself.
    """
    cls = type(record)
    evolver = _evolvers.get(cls)
    if evolver is None:
        evolver = _evolvers[cls] = _make_evolver(cls)
    result: R = evolver(record, **changes)
    return result


def _make_evolver(cls: type) -> Callable[..., Any]:
    fields = attrs.fields(cls)
    if (
        any(f.converter is not None or not f.init or f.alias != f.name for f in fields)
        or hasattr(cls, "__attrs_post_init__")
        or hasattr(cls, "__attrs_pre_init__")
    ):
        return attrs.evolve
    namespace: dict[str, Any] = {"_MISSING": _MISSING, "_new": object.__new__, "_cls": cls}
    namespace["_set"] = object.__setattr__
    params = ", ".join(f"{f.name}=_MISSING" for f in fields)
    lines = [f"def evolve(self, *, {params}):", "    new = _new(_cls)"]
    for f in fields:
        lines.append(f"    if {f.name} is _MISSING:")
        lines.append(f"        {f.name} = self.{f.name}")
        if f.validator is not None:
            namespace[f"_v_{f.name}"] = f.validator
            namespace[f"_a_{f.name}"] = f
            lines.append("    else:")
            lines.append(f"        _v_{f.name}(self, _a_{f.name}, {f.name})")
        lines.append(f"    _set(new, {f.name!r}, {f.name})")
    lines.append("    return new")
    exec("\n".join(lines), namespace)
    evolver: Callable[..., Any] = namespace["evolve"]
    return evolver


@attrs.frozen
class Payment:
    """A checkout: one buyer's card payment covering orders for several sellers."""

    payment_id: str = attrs.field(validator=_non_empty)
    checkout_id: str = attrs.field(validator=_non_empty)
    buyer_id: str = attrs.field(validator=_non_empty)
    currency: str = attrs.field(validator=_currency)
    amount_minor: int = attrs.field(validator=_positive)
    status: PaymentStatus
    created_at_ms: int = attrs.field(validator=_non_negative)
    updated_at_ms: int = attrs.field(validator=_non_negative)
    expires_at_ms: int = attrs.field(validator=_non_negative)
    return_url: str | None = None
    psp_session_id: str | None = None
    hosted_url: str | None = None
    failure_reason: str | None = None
    version: int = attrs.field(default=0, validator=_non_negative)

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Payment:
        return cls(
            payment_id=row["payment_id"],
            checkout_id=row["checkout_id"],
            buyer_id=row["buyer_id"],
            currency=row["currency"],
            amount_minor=int(row["amount_minor"]),
            status=PaymentStatus(row["status"]),
            created_at_ms=int(row["created_at_ms"]),
            updated_at_ms=int(row["updated_at_ms"]),
            expires_at_ms=int(row["expires_at_ms"]),
            return_url=row["return_url"],
            psp_session_id=row["psp_session_id"],
            hosted_url=row["hosted_url"],
            failure_reason=row["failure_reason"],
            version=int(row["version"]),
        )


@attrs.frozen
class PaymentOrder:
    """One seller's share of a checkout. Its id is also the PSP idempotency key for capture."""

    order_id: str = attrs.field(validator=_non_empty)
    payment_id: str = attrs.field(validator=_non_empty)
    seller_id: str = attrs.field(validator=_non_empty)
    currency: str = attrs.field(validator=_currency)
    amount_minor: int = attrs.field(validator=_positive)
    status: OrderStatus
    created_at_ms: int = attrs.field(validator=_non_negative)
    updated_at_ms: int = attrs.field(validator=_non_negative)
    ledger_booked: bool = False
    wallet_booked: bool = False
    attempts: int = attrs.field(default=0, validator=_non_negative)
    psp_capture_id: str | None = None
    failure_reason: str | None = None
    version: int = attrs.field(default=0, validator=_non_negative)

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def booked(self) -> bool:
        return self.ledger_booked and self.wallet_booked

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PaymentOrder:
        return cls(
            order_id=row["order_id"],
            payment_id=row["payment_id"],
            seller_id=row["seller_id"],
            currency=row["currency"],
            amount_minor=int(row["amount_minor"]),
            status=OrderStatus(row["status"]),
            created_at_ms=int(row["created_at_ms"]),
            updated_at_ms=int(row["updated_at_ms"]),
            ledger_booked=bool(row["ledger_booked"]),
            wallet_booked=bool(row["wallet_booked"]),
            attempts=int(row["attempts"]),
            psp_capture_id=row["psp_capture_id"],
            failure_reason=row["failure_reason"],
            version=int(row["version"]),
        )


@attrs.frozen
class Payout:
    """Money leaving a seller's wallet for its bank account (actors/merchant.py).

    `payout_id` is also the payout provider's idempotency key. `creation_key` makes creation
    idempotent (the API's Idempotency-Key, or the schedule's period); `attempts` counts provider
    calls whose outcome was unknown. `provider_ref` is the provider's own payout id.
    """

    payout_id: str = attrs.field(validator=_non_empty)
    merchant_id: str = attrs.field(validator=_non_empty)
    currency: str = attrs.field(validator=_currency)
    amount_minor: int = attrs.field(validator=_positive)
    status: PayoutStatus
    created_at_ms: int = attrs.field(validator=_non_negative)
    updated_at_ms: int = attrs.field(validator=_non_negative)
    provider_ref: str | None = None
    failure_reason: str | None = None
    version: int = attrs.field(default=0, validator=_non_negative)
    creation_key: str = attrs.field(default="-", validator=_non_empty)
    attempts: int = attrs.field(default=0, validator=_non_negative)
    #: "manual" (asked through the API) or "scheduled" (the merchant's payout schedule).
    trigger: str = "manual"

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Payout:
        return cls(
            payout_id=row["payout_id"],
            merchant_id=row["merchant_id"],
            currency=row["currency"],
            amount_minor=int(row["amount_minor"]),
            status=PayoutStatus(row["status"]),
            created_at_ms=int(row["created_at_ms"]),
            updated_at_ms=int(row["updated_at_ms"]),
            provider_ref=row["provider_ref"],
            failure_reason=row["failure_reason"],
            version=int(row["version"]),
            creation_key=row["creation_key"],
            attempts=int(row["attempts"]),
            trigger=row["trigger"],
        )


@attrs.frozen
class Refund:
    """Money going back to the buyer for part or all of one captured order.

    `refund_id` is also the PSP idempotency key for the refund call. `creation_key` makes
    creation idempotent (a retried request finds the refund it made instead of a second one);
    `attempts` counts PSP calls whose outcome was unknown.
    """

    refund_id: str = attrs.field(validator=_non_empty)
    order_id: str = attrs.field(validator=_non_empty)
    currency: str = attrs.field(validator=_currency)
    amount_minor: int = attrs.field(validator=_positive)
    status: RefundStatus
    created_at_ms: int = attrs.field(validator=_non_negative)
    updated_at_ms: int = attrs.field(validator=_non_negative)
    creation_key: str = attrs.field(validator=_non_empty)
    reason: str | None = None
    attempts: int = attrs.field(default=0, validator=_non_negative)
    psp_refund_id: str | None = None
    failure_reason: str | None = None
    version: int = attrs.field(default=0, validator=_non_negative)

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Refund:
        return cls(
            refund_id=row["refund_id"],
            order_id=row["order_id"],
            currency=row["currency"],
            amount_minor=int(row["amount_minor"]),
            status=RefundStatus(row["status"]),
            created_at_ms=int(row["created_at_ms"]),
            updated_at_ms=int(row["updated_at_ms"]),
            creation_key=row["creation_key"],
            reason=row["reason"],
            attempts=int(row["attempts"]),
            psp_refund_id=row["psp_refund_id"],
            failure_reason=row["failure_reason"],
            version=int(row["version"]),
        )


@attrs.frozen
class Balance:
    """A seller's wallet in one currency: a projection of the ledger kept in the same commit."""

    merchant_id: str
    currency: str
    available_minor: int = 0
    reserved_minor: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Balance:
        return cls(
            merchant_id=row["merchant_id"],
            currency=row["currency"],
            available_minor=int(row["available_minor"]),
            reserved_minor=int(row["reserved_minor"]),
        )


@attrs.frozen
class OutboxMessage:
    """A fact others must hear about, written in the same transaction as the change itself."""

    message_id: str = attrs.field(validator=_non_empty)
    topic: str = attrs.field(validator=_non_empty)
    key: str = attrs.field(validator=_non_empty)
    payload: Mapping[str, Any]
    created_at_ms: int = attrs.field(validator=_non_negative)


@attrs.frozen
class Delivery:
    """One subscriber's pending delivery of one outbox message (its durable cursor entry)."""

    subscriber: str
    message: OutboxMessage
    attempts: int
    next_attempt_at_ms: int
    last_error: str | None = None


@attrs.frozen
class DeadLetter:
    subscriber: str
    message: OutboxMessage
    attempts: int
    last_error: str
    dead_at_ms: int


@attrs.frozen
class IdempotencyRecord:
    """An API request's Idempotency-Key and, once done, its stored response."""

    scope: str
    key: str
    fingerprint: str
    created_at_ms: int
    completed: bool = False
    response_status: int | None = None
    response_body: bytes | None = None
    response_headers: Mapping[str, str] | None = None
    #: The process incarnation that claimed it (its lease says whether it lives); None for
    #: claims written before owners existed, which only the in-flight timeout frees.
    owner: str | None = None


@attrs.frozen
class PspEvent:
    """A PSP webhook event, kept so a duplicate is recognised by its event id."""

    event_id: str = attrs.field(validator=_non_empty)
    kind: str = attrs.field(validator=_non_empty)
    payload: Mapping[str, Any]
    received_at_ms: int = attrs.field(validator=_non_negative)


# --- disputes (issue 11, the chargeback part; actors/dispute.py) ----------------------------
@attrs.frozen
class Dispute:
    """A chargeback the PSP opened on one captured order.

    `dispute_id` is the PSP's own id (disputes are born at the PSP, never asked for by us), so
    every event about one dispute finds the same record. `amount_minor` is what the PSP
    withdrew; `psp_capture_id` the capture (Stripe's charge) it was taken from.
    """

    dispute_id: str = attrs.field(validator=_non_empty)
    order_id: str = attrs.field(validator=_non_empty)
    psp_capture_id: str = attrs.field(validator=_non_empty)
    currency: str = attrs.field(validator=_currency)
    amount_minor: int = attrs.field(validator=_positive)
    status: DisputeStatus
    created_at_ms: int = attrs.field(validator=_non_negative)
    updated_at_ms: int = attrs.field(validator=_non_negative)
    reason: str | None = None
    version: int = attrs.field(default=0, validator=_non_negative)

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Dispute:
        return cls(
            dispute_id=row["dispute_id"],
            order_id=row["order_id"],
            psp_capture_id=row["psp_capture_id"],
            currency=row["currency"],
            amount_minor=int(row["amount_minor"]),
            status=DisputeStatus(row["status"]),
            created_at_ms=int(row["created_at_ms"]),
            updated_at_ms=int(row["updated_at_ms"]),
            reason=row["reason"],
            version=int(row["version"]),
        )
