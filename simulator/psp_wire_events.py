"""The simulator's PSP webhooks on the wire: a `PspNotification` as the JSON body the fake PSP
signs and posts (simulator/fake_psp.py), and back. Keys are sorted so the bytes, and so the
signature and the run's trace, are stable; fields that only some events carry are written
only on those, so older events' bytes never change."""

from __future__ import annotations

import json

from engine.gateway import PspEventKind, PspNotification


def wire_event(event: PspNotification) -> bytes:
    """The JSON body of a webhook, keys sorted so the bytes (and the signature) are stable.
    `refund_id` is present only on refund events (other events' bytes are as before)."""
    body: dict[str, object] = {
        "id": event.event_id,
        "type": event.kind.value,
        "reference": event.reference,
        "created_ms": event.occurred_at_ms,
        "capture_id": event.capture_id,
        "reason": event.reason,
    }
    if event.refund_id is not None:
        body["refund_id"] = event.refund_id
    if event.dispute_id is not None:  # dispute events only (others' bytes are as before)
        body["dispute_id"] = event.dispute_id
        body["amount_minor"] = event.amount_minor
        body["currency"] = event.currency
        body["dispute_status"] = event.dispute_status
    return json.dumps(
        body,
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def parse_event(body: bytes) -> PspNotification:
    """A webhook body (already verified) as a `PspNotification`; ValueError if malformed."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("webhook body must be a JSON object")
    return PspNotification(
        event_id=str(data["id"]),
        kind=PspEventKind(data["type"]),
        reference=str(data["reference"]),
        occurred_at_ms=int(data["created_ms"]),
        capture_id=data.get("capture_id"),
        reason=data.get("reason"),
        refund_id=data.get("refund_id"),
        raw={"type": data["type"], "reference": data["reference"]},
        dispute_id=data.get("dispute_id"),
        amount_minor=data.get("amount_minor"),
        currency=data.get("currency"),
        dispute_status=data.get("dispute_status"),
    )
