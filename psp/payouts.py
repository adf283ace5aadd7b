"""The fake PSP's payouts on its Stripe face: `POST /v1/payouts`, `GET /v1/payouts/{id}` and
`GET /v1/payouts` (newest first; `status` filters, as Stripe's list does).

Form-encoded like the rest of psp/: `amount` (minor units), `currency`, `destination` (the
seller's account), `metadata[...]`; `Idempotency-Key` is the caller's payout id. The same key
and the same body replay the first answer (psp/idempotency.py); the same key and another body
is Stripe's 400 `idempotency_error`. A payout is looked up by the caller's key as refunds are:
the caller tags it `metadata[payengine_payout]=<key>` and scans the list (Stripe has no search
for payouts). The desk (psp/payout_desk.py) keeps the books and sends the events; when it
loses an answer after accepting, psp/app.py answers 503 `api_error` as for any fault.
"""

from __future__ import annotations

from typing import Any

from engine.money import Money
from psp import wire
from psp.objects import StripeBooks
from psp.payout_desk import PayoutDesk, payout_json
from psp.resources import Answer, Handler, _page
from psp.wire import StripeError

#: Stripe's Payout statuses the list's `status` filter accepts.
PAYOUT_STATUSES = frozenset({"pending", "in_transit", "paid", "failed", "canceled"})


def desk_of(books: StripeBooks) -> PayoutDesk:
    desk = books.payouts
    assert isinstance(desk, PayoutDesk), "the face starts a payouts desk"
    return desk


async def create_payout(books: StripeBooks, params: dict[str, Any], key: str | None) -> Answer:
    minor = wire.integer(params.get("amount"), "amount")
    assert minor is not None
    if minor < 1:
        raise StripeError(400, "Amount must be at least 1.", "amount", "amount_too_small")
    if "currency" not in params:
        raise StripeError(400, "Missing required param: currency.", "currency", "parameter_missing")
    currency = wire.currency(params.get("currency"), "currency")
    destination = wire.text(params, "destination")
    metadata = wire.metadata(params)
    desk = desk_of(books)
    payout_key = key or books.new_key("pokey")
    try:
        payout = await desk.create(payout_key, Money(minor, currency), destination, metadata)
    except ValueError as exc:  # the key was first used with another payout (its answer lost)
        raise StripeError(
            400,
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{payout_key}' if you meant to "
            f"execute a different request. ({exc})",
            type="idempotency_error",
        ) from None
    except OverflowError as exc:
        raise StripeError(429, str(exc), code="rate_limit", type="api_error") from None
    return 200, payout_json(payout)


async def get_payout(
    books: StripeBooks, params: dict[str, Any], key: str | None, payout_id: str
) -> Answer:
    payout = desk_of(books).payouts.get(payout_id)
    if payout is None:
        raise wire.missing("payout", payout_id)
    return 200, payout_json(payout)


async def list_payouts(books: StripeBooks, params: dict[str, Any], key: str | None) -> Answer:
    status = wire.text(params, "status")
    if status is not None and status not in PAYOUT_STATUSES:
        raise StripeError(400, f"Invalid status: {status}", "status")
    payouts = [
        payout_json(p)
        for p in desk_of(books).newest_first()
        if status is None or p.status == status
    ]
    return 200, _page("/v1/payouts", payouts, params)


PAYOUT_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/v1/payouts", create_payout),
    ("GET", "/v1/payouts/<payout_id>", get_payout),
    ("GET", "/v1/payouts", list_payouts),
)
