"""GET /v1/disputes, GET /v1/disputes/{id}: the chargebacks the PSP opened on our orders.

A thin adapter: the engine records disputes from the PSP's webhooks (actors/dispute.py); this
only reads them. Who may: an admin key every dispute; a `merchant:<id>` key only the disputes
of its own orders (another merchant's dispute reads as not found, and its list holds only its
own). Bad paging input is a problem+json (422) and reads nothing.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from quart import Blueprint, Response, g
from quart_schema import document_querystring, document_response, tag

from engine.money import format_amount
from engine.records import Dispute
from web.auth import guarded
from web.problems import NOT_FOUND, ApiProblem, Problem
from web.responses import cursor, json_response, page_limit
from web.runtime import current
from web.wire import Cursor, PageLimit

bp = Blueprint("disputes", __name__)

#: Admin and every merchant key may call; a merchant key sees its own orders' disputes.
guarded_disputes = guarded("admin", "any_merchant")


class DisputesQuery(msgspec.Struct):
    limit: PageLimit | None = None
    starting_after: Cursor | None = None


class DisputeOut(msgspec.Struct):
    id: str
    order_id: str
    psp_capture_id: str
    #: What the PSP withdrew: a decimal string in major units.
    amount: str
    currency: str
    #: `open` (the funds are withdrawn), `won` (reinstated) or `lost` (recovered from the seller).
    status: str
    reason: str | None
    created_at_ms: int
    updated_at_ms: int
    object: Literal["dispute"] = "dispute"


class DisputeListOut(msgspec.Struct):
    data: list[DisputeOut]
    has_more: bool
    object: Literal["list"] = "list"


def dispute_out(dispute: Dispute) -> DisputeOut:
    return DisputeOut(
        id=dispute.dispute_id,
        order_id=dispute.order_id,
        psp_capture_id=dispute.psp_capture_id,
        amount=format_amount(dispute.amount_minor, dispute.currency),
        currency=dispute.currency,
        status=dispute.status.value.lower(),
        reason=dispute.reason,
        created_at_ms=dispute.created_at_ms,
        updated_at_ms=dispute.updated_at_ms,
    )


@bp.get("/v1/disputes/<dispute_id>")
@tag(["disputes"])
@document_response(DisputeOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 404)
@document_response(Problem, 429)
@guarded_disputes
async def get_dispute(dispute_id: str) -> Response:
    """One dispute; a merchant key sees only its own orders' disputes."""
    runtime = current()
    dispute = await runtime.engine.service.get_dispute(dispute_id)
    if dispute is not None and g.api_key.merchant_id is not None:
        order = await runtime.store.get_order(dispute.order_id)
        if order is None or order.seller_id != g.api_key.merchant_id:
            dispute = None
    if dispute is None:
        raise ApiProblem(NOT_FOUND, f"no dispute {dispute_id}")
    return json_response(dispute_out(dispute))


@bp.get("/v1/disputes")
@tag(["disputes"])
@document_querystring(DisputesQuery)
@document_response(DisputeListOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@document_response(Problem, 429)
@guarded_disputes
async def list_disputes() -> Response:
    """Disputes, oldest first (every one for an admin key, its own orders' for a merchant key);
    page with `limit` and `starting_after` (the last id seen)."""
    runtime = current()
    limit = page_limit(runtime.settings)
    after = cursor()
    disputes = await runtime.engine.service.list_disputes(
        limit + 1, after, seller_id=g.api_key.merchant_id
    )
    return json_response(
        DisputeListOut(
            data=[dispute_out(d) for d in disputes[:limit]], has_more=len(disputes) > limit
        )
    )
