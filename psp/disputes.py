"""The fake PSP's disputes on its Stripe face: `GET /v1/disputes/{id}` and `GET /v1/disputes`.

Stripe's Dispute object: `id` (dp_...), `amount` in minor units, lowercase `currency`,
`charge` (the disputed capture), `payment_intent`, `status` (`needs_response` while open,
`won` or `lost` once closed), `reason`, `created`, `metadata`, and `balance_transactions`
(the withdrawal, and the reinstatement of a won dispute). Disputes are opened by the PSP
(simulator/psp_disputes.py), never created through the API; a query applies the plan's fault
for `query_dispute` like any other call.
"""

from __future__ import annotations

from typing import Any

from engine.gateway import PspDisputeStatus
from psp import wire
from psp.objects import StripeBooks, pi_of
from psp.resources import Answer, Handler, _page
from simulator.psp_disputes import PspDispute


def dispute_json(books: StripeBooks, dispute: PspDispute) -> dict[str, Any]:
    capture = books.psp.captures_by_id.get(dispute.capture_id)
    transactions = [f"txn_{dispute.dispute_id}_withdrawn"]
    if dispute.status is PspDisputeStatus.WON:
        transactions.append(f"txn_{dispute.dispute_id}_reinstated")
    return {
        "id": dispute.dispute_id,
        "object": "dispute",
        "amount": dispute.amount.minor,
        "currency": dispute.amount.currency.lower(),
        "charge": dispute.capture_id,
        "payment_intent": None if capture is None else pi_of(capture.session_id),
        "status": dispute.status.value,
        "reason": dispute.reason,
        "balance_transactions": transactions,
        "is_charge_refundable": False,
        "metadata": {},
        "created": dispute.created_at_ms // 1000,
        "livemode": False,
    }


async def get_dispute(
    books: StripeBooks, params: dict[str, Any], key: str | None, dispute_id: str
) -> Answer:
    await books.psp.query_dispute(dispute_id)  # the call's fault, if the plan has one
    dispute = books.psp.disputes.get(dispute_id)
    if dispute is None:
        raise wire.missing("dispute", dispute_id)
    return 200, dispute_json(books, dispute)


async def list_disputes(books: StripeBooks, params: dict[str, Any], key: str | None) -> Answer:
    """Newest first, Stripe's list order."""
    await books.psp.query_dispute("")  # a dispute query: that call's fault, if any
    disputes = [dispute_json(books, d) for d in list(books.psp.disputes.values())[::-1]]
    return 200, _page("/v1/disputes", disputes, params)


DISPUTE_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/v1/disputes/<dispute_id>", get_dispute),
    ("GET", "/v1/disputes", list_disputes),
)
