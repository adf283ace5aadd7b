"""The PSP webhook wire format, shared by the receiver (web/webhooks.py) and the fake PSP's HTTP
face (psp/), so both ends agree by construction.

Stripe-shaped envelope: `{"id": "evt_...", "object": "event", "type": "<kind>", "created":
<unix seconds>, "data": {"object": {"reference": ..., "capture_id": ..., "reason": ...,
"refund_id": ...}}}` (`refund_id` set on refund events only).
`type` is one of `engine.gateway.PspEventKind`. `created` is in seconds (as Stripe's), which
also keeps 13-digit millisecond stamps out of bodies that the card-number guard scans.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.gateway import PspEventKind, PspNotification


class EventObject(msgspec.Struct):
    reference: str
    capture_id: str | None = None
    reason: str | None = None
    refund_id: str | None = None  # refund events only


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
        ),
    )
    return msgspec.json.encode(body)


def decode_event(body: bytes) -> PspNotification:
    """Raises msgspec errors for a malformed body, UnknownEventType for an unhandled type."""
    event = msgspec.json.decode(body, type=PspEventIn)
    try:
        kind = PspEventKind(event.type)
    except ValueError:
        raise UnknownEventType(event.type) from None
    raw: dict[str, Any] = msgspec.to_builtins(event)
    return PspNotification(
        event_id=event.id,
        kind=kind,
        reference=event.data.object.reference,
        occurred_at_ms=event.created * 1000,
        capture_id=event.data.object.capture_id,
        reason=event.data.object.reason,
        refund_id=event.data.object.refund_id,
        raw=raw,
    )
