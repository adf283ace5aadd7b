"""The payouts desk's events on the wire: Stripe's event envelope around Stripe's Payout object.

`{"id": "evt_...", "object": "event", "api_version", "created": <unix s>, "livemode": false,
"type": "payout.paid" | "payout.failed", "data": {"object": <the payout, as it was then>}}`,
signed by the webhook pump as every other event (psp/events.py `sign_header`). The payout's
`metadata[payengine_payout]` names the caller's payout (its idempotency key), and `returned`
(the fake's one addition to Stripe's object, psp/payout_desk.py) tells a bank return from a
failure. Apart from psp/events.py because those are `PspNotification`s, the engine's own type.
"""

from __future__ import annotations

import msgspec

from psp.objects import API_VERSION
from psp.payout_desk import PayoutEvent


def encode_payout_event(event: PayoutEvent) -> bytes:
    body = {
        "id": event.event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": event.occurred_at_ms // 1000,
        "livemode": False,
        "type": event.type,
        "data": {"object": event.payout},
    }
    return msgspec.json.encode(body)
