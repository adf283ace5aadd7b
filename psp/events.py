"""The fake PSP's webhook events on the wire: Stripe's event envelope, signed as Stripe signs.

Envelope: `{"id": "evt_...", "object": "event", "api_version", "created": <unix s>, "livemode":
false, "type": <kind>, "data": {"object": {"object", "reference", "capture_id", "reason",
"refund_id"}}}`, so `stripe.Webhook.construct_event` accepts it and payengine's receiver
(web/psp_wire.py, which ignores the fields it does not read) decodes it. `type` is one of
`engine.gateway.PspEventKind` (`session.authorized`, `capture.succeeded`, ...): the events
payengine's receiver understands; `reference` is the session's nonce (the Idempotency-Key it
was created with), the capture's or the refund's idempotency key.

Signature: `Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "t.body")>`, one v1 per
secret while a secret rotates (simulator/signing.py computes each).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from engine.gateway import DISPUTE_EVENTS, REFUND_EVENTS, SESSION_EVENTS, PspNotification
from psp.objects import API_VERSION
from simulator.signing import sign_webhook


def encode_event(event: PspNotification) -> bytes:
    if event.kind in SESSION_EVENTS:
        kind = "checkout.session"
    elif event.kind in REFUND_EVENTS:
        kind = "refund"
    elif event.kind in DISPUTE_EVENTS:
        kind = "dispute"
    else:
        kind = "charge"
    obj: dict[str, object] = {
        "object": kind,
        "reference": event.reference,
        "capture_id": event.capture_id,
        "reason": event.reason,
    }
    if event.refund_id is not None:
        obj["refund_id"] = event.refund_id
    if event.dispute_id is not None:  # Stripe's Dispute object, with our reference
        obj.update(dispute_object(event))
    body = {
        "id": event.event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": event.occurred_at_ms // 1000,
        "livemode": False,
        "type": event.kind.value,
        "data": {"object": obj},
    }
    return msgspec.json.encode(body)


def dispute_object(event: PspNotification) -> dict[str, object]:
    """The fields of Stripe's Dispute object a `charge.dispute.*` event carries."""
    return {
        "id": event.dispute_id,
        "amount": event.amount_minor,
        "currency": None if event.currency is None else event.currency.lower(),
        "status": event.dispute_status,
        "charge": event.capture_id,
    }


def sign_header(secrets: Sequence[str], timestamp_s: int, body: bytes) -> str:
    """The `Stripe-Signature` value: `t=...` and one `v1=...` per secret."""
    signatures = [
        sign_webhook(secret.encode("utf-8"), timestamp_s, body).partition(",")[2]
        for secret in secrets
    ]
    return ",".join([f"t={timestamp_s}", *signatures])
