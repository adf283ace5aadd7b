"""POST /v1/refunds, GET /v1/refunds/{id}, GET /v1/refunds?order_id=: refunds of captured orders.

A thin adapter, like payments.py: parse -> the engine's `PaymentService.create_refund` with a
deadline -> map the reply. Creating needs an Idempotency-Key (idempotency.py), and the engine
is idempotent on it as well (the refund's creation key is the API key's id plus the header),
so a retry never refunds twice. (This is our API; web/psp_face/ has the FAKE PSP's
/v1/refunds, a different server.)

Who may: a storefront or admin key any order's refunds; a `merchant:<id>` key only the
refunds of that merchant's own orders (another merchant's order reads as not found).

Every refusal is a problem+json of its own type and writes nothing: body and money rules are
checked before the idempotency claim, and an engine refusal (over-refund, uncaptured order)
is raised, which releases the claim (the engine wrote nothing either).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from quart import Blueprint, Response, g, request
from quart_schema import document_querystring, document_request, document_response, tag

from engine.access import ApiKey
from engine.errors import InvalidInput
from engine.money import format_amount, parse_amount
from engine.records import PaymentOrder, Refund
from web import logs
from web.auth import guarded
from web.bodies import decode_as, raw_body
from web.creation import create_through_engine
from web.forward_api import forwarding
from web.idempotency import check_key, fingerprint, run_idempotent
from web.problems import (
    NOT_FOUND,
    VALIDATION_FAILED,
    ApiProblem,
    FieldError,
    Problem,
    ProblemType,
)
from web.responses import cursor, json_response, page_limit
from web.runtime import current
from web.wire import Cursor, PageLimit

bp = Blueprint("refunds", __name__)


REFUND_ORDER_NOT_FOUND = ProblemType(
    "refund-order-not-found", 422, "The order to refund does not exist"
)
REFUND_ORDER_NOT_CAPTURED = ProblemType(
    "refund-order-not-captured", 409, "The order was not captured, so it cannot be refunded"
)
REFUND_EXCEEDS_CAPTURED = ProblemType(
    "refund-exceeds-captured", 409, "The refund is more than is left to refund of the order"
)
REFUND_CURRENCY_MISMATCH = ProblemType(
    "refund-currency-mismatch", 422, "The refund's currency is not the order's"
)
REFUND_AMOUNT_NOT_POSITIVE = ProblemType(
    "refund-amount-not-positive", 422, "A refund amount must be positive"
)
REFUNDS_PER_ORDER_EXCEEDED = ProblemType(
    "refunds-per-order-exceeded", 409, "The order has as many refunds as it may have"
)
REFUND_ORDER_DISPUTED = ProblemType(
    "refund-order-disputed", 409, "The order is disputed (a chargeback), so it cannot be refunded"
)
REFUND_KEY_REUSED = ProblemType(
    "idempotency-key-reused", 422, "The Idempotency-Key was used with a different request"
)

#: The engine's rejection reasons (actors/refund.py) -> their problem types.
_REJECTIONS = {
    "order_not_found": REFUND_ORDER_NOT_FOUND,
    "order_not_captured": REFUND_ORDER_NOT_CAPTURED,
    "refund_exceeds_captured": REFUND_EXCEEDS_CAPTURED,
    "order_fully_refunded": REFUND_EXCEEDS_CAPTURED,
    "refund_currency_mismatch": REFUND_CURRENCY_MISMATCH,
    "refund_amount_not_positive": REFUND_AMOUNT_NOT_POSITIVE,
    "refunds_per_order_exceeded": REFUNDS_PER_ORDER_EXCEEDED,
    "creation_key_reused": REFUND_KEY_REUSED,
    "order_disputed": REFUND_ORDER_DISPUTED,
}

#: PostgreSQL cannot store a NUL (web/boundary.py refuses it), so the schema says so too.
OrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern="^[^\x00]+$")]
QueryOrderId = OrderId
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", examples=["EUR"])]
#: A sign is allowed so that a negative amount gets refund-amount-not-positive, not a pattern.
SignedAmount = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,4})?$",
        max_length=40,
        description="A decimal string in major units; never a JSON number. Default: all left.",
        examples=["12.34"],
    ),
]
Reason = Annotated[str, msgspec.Meta(max_length=500, pattern="^[^\\x00]*$")]


class CreateRefundIn(msgspec.Struct, forbid_unknown_fields=True):
    order_id: OrderId
    amount: SignedAmount | None = None
    #: Optional; when given it must be the order's currency.
    currency: Currency | None = None
    reason: Reason | None = None


class RefundsQuery(msgspec.Struct):
    order_id: QueryOrderId
    limit: PageLimit | None = None
    starting_after: Cursor | None = None


class RefundOut(msgspec.Struct):
    id: str
    order_id: str
    amount: str
    currency: str
    status: str
    reason: str | None
    psp_refund_id: str | None
    failure_reason: str | None
    created_at_ms: int
    updated_at_ms: int
    object: Literal["refund"] = "refund"


class RefundListOut(msgspec.Struct):
    data: list[RefundOut]
    has_more: bool
    object: Literal["list"] = "list"


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        id=refund.refund_id,
        order_id=refund.order_id,
        amount=format_amount(refund.amount_minor, refund.currency),
        currency=refund.currency,
        status=refund.status.value.lower(),
        reason=refund.reason,
        psp_refund_id=refund.psp_refund_id,
        failure_reason=refund.failure_reason,
        created_at_ms=refund.created_at_ms,
        updated_at_ms=refund.updated_at_ms,
    )


#: Storefront, admin and every merchant key may call (a merchant key's orders are filtered by
#: `_sees`, as the route names no merchant); then the per-key rate limit, before idempotency.
guarded_refunds = guarded("storefront", "admin", "any_merchant")


def _sees(key: ApiKey, order: PaymentOrder | None) -> bool:
    """Whether `key` may see `order`'s refunds: any order for storefront and admin keys, its
    own orders for a merchant key."""
    if order is None:
        return False
    return key.merchant_id is None or key.merchant_id == order.seller_id


async def _visible_order(order_id: str) -> PaymentOrder | None:
    order = await current().store.get_order(order_id)
    return order if _sees(g.api_key, order) else None


def _amount_minor(body: CreateRefundIn, order: PaymentOrder) -> int | None:
    """The amount in the order's currency's minor units; problems for a bad one."""
    if body.currency is not None and body.currency != order.currency:
        detail = f"the order was captured in {order.currency}, not {body.currency}"
        raise ApiProblem(REFUND_CURRENCY_MISMATCH, detail, [FieldError("/currency", detail)])
    if body.amount is None:
        return None
    text = body.amount
    negative = text.startswith("-")
    try:
        money = parse_amount(text.removeprefix("-"), order.currency, allow_zero=True)
    except InvalidInput as exc:
        raise ApiProblem(VALIDATION_FAILED, str(exc), [FieldError("/amount", str(exc))]) from None
    if negative or money.minor <= 0:
        detail = f"amount must be positive, got {text}"
        raise ApiProblem(REFUND_AMOUNT_NOT_POSITIVE, detail, [FieldError("/amount", detail)])
    return money.minor


@bp.post("/v1/refunds")
@tag(["refunds"])
@document_request(CreateRefundIn)
@document_response(RefundOut, 201)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 409)
@document_response(Problem, 413)
@document_response(Problem, 422)
@document_response(Problem, 429)
@guarded_refunds
async def create_refund() -> Response:
    """Refund part (`amount`) or all that is left of a captured order; needs an
    Idempotency-Key. 201 with the refund (status `requested`); it settles asynchronously."""
    runtime = current()
    key = check_key(
        request.headers.get("Idempotency-Key"), runtime.settings.idempotency_key_length_max
    )
    logs.bind(idempotency_key=key)
    body_bytes = await raw_body()
    body = decode_as(body_bytes, CreateRefundIn)
    order = await _visible_order(body.order_id)
    if order is None:
        detail = f"no order {body.order_id}"
        raise ApiProblem(REFUND_ORDER_NOT_FOUND, detail, [FieldError("/order_id", detail)])
    amount_minor = _amount_minor(body, order)
    scope = str(g.api_key.key_id)

    async def execute() -> Response:
        result = await create_through_engine(
            runtime,
            lambda: runtime.engine.service.create_refund(
                order.order_id,
                amount_minor,
                body.reason,
                idempotency_key=f"{scope}:{key}",
                currency=body.currency,
            ),
            _REJECTIONS,
        )
        logs.bind(refund_id=result.refund_id)
        return json_response(
            refund_out(result), 201, {"Location": f"/v1/refunds/{result.refund_id}"}
        )

    return await forwarding(  # another process drives the order: its answer (forward_api.py)
        runtime,
        body_bytes,
        lambda: run_idempotent(
            runtime, scope, key, fingerprint("POST", request.path, body_bytes), execute
        ),
    )


@bp.get("/v1/refunds/<refund_id>")
@tag(["refunds"])
@document_response(RefundOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 404)
@guarded_refunds
async def get_refund(refund_id: str) -> Response:
    refund = await current().engine.service.get_refund(refund_id)
    if refund is None or await _visible_order(refund.order_id) is None:
        raise ApiProblem(NOT_FOUND, f"no refund {refund_id}")
    return json_response(refund_out(refund))


@bp.get("/v1/refunds")
@tag(["refunds"])
@document_querystring(RefundsQuery)
@document_response(RefundListOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@guarded_refunds
async def list_refunds() -> Response:
    """One order's refunds, oldest first; page with `starting_after` (the last id seen)."""
    runtime = current()
    order_id = request.args.get("order_id")
    if not order_id or len(order_id) > 128:
        detail = "order_id must be an order id of 1..128 characters"
        raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/order_id", detail)])
    limit = page_limit(runtime.settings)
    after = cursor()
    if await _visible_order(order_id) is None:
        return json_response(RefundListOut(data=[], has_more=False))
    refunds = await runtime.engine.service.list_refunds(order_id, limit + 1, after)
    return json_response(
        RefundListOut(data=[refund_out(r) for r in refunds[:limit]], has_more=len(refunds) > limit)
    )
