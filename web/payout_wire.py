"""Payout events on POST /v1/psp/webhooks: Stripe's `payout.paid` and `payout.failed`, whose
object is Stripe's Payout, read into the engine's `PayoutNotification` and applied.

Why apart from web/psp_wire.py: those are the PSP's payment events (`PspNotification`); these
go to the payouts (`engine.payouts.apply_notice`), which records each by event id in the unit of
work of its effect: a duplicate changes nothing, and events in any order walk the payout to the
provider's latest word (engine/payouts.py `steps_to`).

The reference is the payout's `metadata[payengine_payout]` (our payout id, set by
web/http_payout_gateway.py); a payout without it is not ours (acknowledged, not applied). A
`payout.failed` is a bank return (RETURNED: the money comes back to the seller's wallet) when
its object says `returned` (the fake PSP's field) or, as Stripe only shows it, when our books
already have the payout PAID; otherwise it failed (FAILED: the reserve is voided).
"""

from __future__ import annotations

import msgspec

from engine.payout_gateway import PayoutEventKind, PayoutNotification
from engine.states import PayoutStatus
from engine.store.port import Store
from web.http_payout_gateway import PAYOUT_METADATA_KEY
from web.psp_wire import UnknownEventType

#: The event types read as payout events; other `payout.*` types (created, updated,
#: canceled...) are acknowledged without effect.
PAYOUT_EVENT_TYPES = {"payout.paid": PayoutEventKind.PAID, "payout.failed": PayoutEventKind.FAILED}
#: Our payouts' statuses after which a `payout.failed` can only be a return.
_PAID = frozenset({PayoutStatus.PAID, PayoutStatus.RETURNED})


class StripePayout(msgspec.Struct):
    id: str
    status: str
    metadata: dict[str, str] = {}
    failure_code: str | None = None
    returned: bool = False


class _PayoutData(msgspec.Struct):
    object: StripePayout


class PayoutEventIn(msgspec.Struct):
    id: str
    type: str
    created: int
    data: _PayoutData


class _EventType(msgspec.Struct):
    type: str


def is_payout_event(body: bytes) -> bool:
    """Raises msgspec errors for a body that is not an event."""
    return msgspec.json.decode(body, type=_EventType).type.startswith("payout.")


def decode_payout_event(body: bytes) -> PayoutNotification:
    """Raises msgspec errors for a malformed body, UnknownEventType for one not to apply."""
    event = msgspec.json.decode(body, type=PayoutEventIn)
    kind = PAYOUT_EVENT_TYPES.get(event.type)
    if kind is None:
        raise UnknownEventType(event.type)
    payout = event.data.object
    reference = payout.metadata.get(PAYOUT_METADATA_KEY)
    if not reference:
        raise UnknownEventType(f"{event.type} of a payout that is not ours")
    if kind is PayoutEventKind.FAILED and payout.returned:
        kind = PayoutEventKind.RETURNED
    return PayoutNotification(
        event_id=event.id,
        kind=kind,
        reference=reference,
        payout_id=payout.id,
        occurred_at_ms=event.created * 1000,
        reason=payout.failure_code,
    )


async def as_return_if_paid(store: Store, notice: PayoutNotification) -> PayoutNotification:
    """A `payout.failed` of a payout our books have paid is its bank return (Stripe's way)."""
    if notice.kind is not PayoutEventKind.FAILED:
        return notice
    payout = await store.get_payout(notice.reference)
    if payout is None or payout.status not in _PAID:
        return notice
    return PayoutNotification(
        notice.event_id,
        PayoutEventKind.RETURNED,
        notice.reference,
        notice.payout_id,
        notice.occurred_at_ms,
        notice.reason,
    )
