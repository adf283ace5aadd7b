"""The PSP webhook wire format, shared by the receiver (web/webhooks.py) and the fake PSP's HTTP
face (psp/), so both ends agree by construction.

Stripe-shaped envelope: `{"id": "evt_...", "object": "event", "type": "<kind>", "created":
<unix seconds>, "data": {"object": {"reference": ..., "capture_id": ..., "reason": ...,
"refund_id": ...}}}` (`refund_id` set on refund events only). A dispute event's object
is Stripe's Dispute (`id`, `amount`, `currency`, `status`, `charge`) with our `reference`.
`type` is one of `engine.gateway.PspEventKind`. `created` is in seconds (as Stripe's), which
also keeps 13-digit millisecond stamps out of bodies that the card-number guard scans.

A real Stripe account sends Stripe's own types instead; the buyer's outcome is what the engine
cannot learn otherwise before the checkout expires, so Stripe's Checkout Session events are
read too (`STRIPE_SESSION_EVENTS`): their object is the Checkout Session, whose
`client_reference_id` is our payment id (web/http_gateway.py sets it). Capture and refund
outcomes the engine learns from its own calls (and queries by key), so Stripe's charge and
refund events are acknowledged without effect.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.gateway import DISPUTE_EVENTS, PspEventKind, PspNotification


class EventObject(msgspec.Struct):
    reference: str
    capture_id: str | None = None
    reason: str | None = None
    refund_id: str | None = None  # refund events only
    # Dispute events (`charge.dispute.*`) only: the object is Stripe's Dispute (`id`, `amount`
    # in minor units, lowercase `currency`, `status`, `charge`) plus our `reference`.
    id: str | None = None
    amount: int | None = None
    currency: str | None = None
    status: str | None = None
    charge: str | None = None


class EventData(msgspec.Struct):
    object: EventObject


class PspEventIn(msgspec.Struct):
    """What /v1/psp/webhooks accepts (after the signature has been verified)."""

    id: str
    type: str
    created: int
    data: EventData
    object: str = "event"


class UnknownEventType(ValueError):
    """A well-formed event whose type the engine does not handle (acknowledged, not applied)."""


def encode_event(event: PspNotification) -> bytes:
    body = PspEventIn(
        id=event.event_id,
        type=event.kind.value,
        created=event.occurred_at_ms // 1000,
        data=EventData(
            EventObject(event.reference, event.capture_id, event.reason, event.refund_id)
            if event.dispute_id is None
            else EventObject(
                event.reference,
                event.capture_id,
                event.reason,
                None,
                event.dispute_id,
                event.amount_minor,
                None if event.currency is None else event.currency.lower(),
                event.dispute_status,
                event.capture_id,
            )
        ),
    )
    return msgspec.json.encode(body)


#: Stripe's Checkout Session event types and what each says of the buyer. With manual capture
#: `checkout.session.completed` means the card was authorized (payment_status "unpaid" until
#: captured); the async pair is for payment methods that settle later.
STRIPE_SESSION_EVENTS: dict[str, PspEventKind] = {
    "checkout.session.completed": PspEventKind.SESSION_AUTHORIZED,
    "checkout.session.async_payment_succeeded": PspEventKind.SESSION_AUTHORIZED,
    "checkout.session.async_payment_failed": PspEventKind.SESSION_DECLINED,
    "checkout.session.expired": PspEventKind.SESSION_EXPIRED,
}


class StripeSession(msgspec.Struct):
    id: str
    client_reference_id: str | None = None


class StripeSessionData(msgspec.Struct):
    object: StripeSession


class StripeSessionEventIn(msgspec.Struct):
    id: str
    type: str
    created: int
    data: StripeSessionData


class _EventType(msgspec.Struct):
    type: str


def decode_event(body: bytes) -> PspNotification:
    """Raises msgspec errors for a malformed body, UnknownEventType for an unhandled type."""
    kind_of = msgspec.json.decode(body, type=_EventType).type
    if kind_of in STRIPE_SESSION_EVENTS:
        return _decode_stripe_session(body, STRIPE_SESSION_EVENTS[kind_of])
    event = msgspec.json.decode(body, type=PspEventIn)
    try:
        kind = PspEventKind(event.type)
    except ValueError:
        raise UnknownEventType(event.type) from None
    raw: dict[str, Any] = msgspec.to_builtins(event)
    obj = event.data.object
    disputed = kind in DISPUTE_EVENTS
    return PspNotification(
        event_id=event.id,
        kind=kind,
        reference=obj.reference,
        occurred_at_ms=event.created * 1000,
        capture_id=(obj.charge or obj.capture_id) if disputed else obj.capture_id,
        reason=obj.reason,
        refund_id=obj.refund_id,
        raw=raw,
        dispute_id=obj.id if disputed else None,
        amount_minor=obj.amount if disputed else None,
        currency=obj.currency.upper() if disputed and obj.currency else None,
        dispute_status=obj.status if disputed else None,
    )


def _decode_stripe_session(body: bytes, kind: PspEventKind) -> PspNotification:
    event = msgspec.json.decode(body, type=StripeSessionEventIn)
    session = event.data.object
    if not session.client_reference_id:
        # Not a checkout of ours (created elsewhere on the same account): nothing to apply.
        raise UnknownEventType(f"{event.type} without client_reference_id")
    return PspNotification(
        event_id=event.id,
        kind=kind,
        reference=session.client_reference_id,
        occurred_at_ms=event.created * 1000,
        reason=None if kind is not PspEventKind.SESSION_DECLINED else "async_payment_failed",
        raw={"id": event.id, "type": event.type, "session": session.id},
    )
