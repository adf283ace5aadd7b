"""POST /v1/payouts, GET /v1/payouts/{id}, GET /v1/merchants/{id}/payouts and
PUT /v1/merchants/{id}/payout-schedule: sellers' payouts (actors/merchant.py).

A thin adapter, like refunds.py: parse -> the engine's `PayoutService` with a deadline -> map
the reply. Creating needs an Idempotency-Key (idempotency.py), and the engine is idempotent on
it as well (the payout's creation key is the API key's id plus the header), so a retry never
pays twice; two different requests racing for one balance are decided one after the other by
the merchant's actor, so they never overdraw it.

Who may: an admin key any merchant's payouts (naming the merchant); a `merchant:<id>` key only
its own (another merchant's payout reads as not found; asking to pay another merchant is
forbidden). Storefront keys have no business with payouts.

Every refusal is a problem+json of its own type and writes nothing: body rules are checked
before the idempotency claim, and an engine refusal (more than available, wrong currency) is
raised, which releases the claim (the engine wrote nothing either).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from quart import Blueprint, Response, g, request
from quart_schema import document_querystring, document_request, document_response, tag

from engine.errors import InvalidInput, UnknownCurrency
from engine.money import format_amount, parse_amount
from engine.payouts import PayoutSchedule, ScheduleInterval
from engine.records import Payout
from web import logs
from web.auth import guarded
from web.bodies import decode_as, raw_body
from web.creation import create_through_engine
from web.forward_api import forwarding
from web.idempotency import check_key, fingerprint, run_idempotent
from web.problems import (
    FORBIDDEN,
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

bp = Blueprint("payouts", __name__)

PAYOUT_MERCHANT_NOT_FOUND = ProblemType(
    "payout-merchant-not-found", 422, "The merchant to pay out does not exist"
)
PAYOUT_CURRENCY_MISMATCH = ProblemType(
    "payout-currency-mismatch", 422, "The merchant has no balance in that currency"
)
PAYOUT_AMOUNT_NOT_POSITIVE = ProblemType(
    "payout-amount-not-positive", 422, "A payout amount must be positive"
)
PAYOUT_EXCEEDS_AVAILABLE = ProblemType(
    "payout-exceeds-available", 409, "The payout is more than the merchant may be paid now"
)
PAYOUT_KEY_REUSED = ProblemType(
    "idempotency-key-reused", 422, "The Idempotency-Key was used with a different request"
)
PAYOUTS_UNAVAILABLE = ProblemType(
    "payouts-unavailable", 503, "This server has no payout provider configured"
)

#: The engine's rejection reasons (actors/merchant.py, actors/payout_service.py) -> problems.
_REJECTIONS = {
    "merchant_not_found": PAYOUT_MERCHANT_NOT_FOUND,
    "payout_currency_mismatch": PAYOUT_CURRENCY_MISMATCH,
    "payout_amount_not_positive": PAYOUT_AMOUNT_NOT_POSITIVE,
    "payout_exceeds_available": PAYOUT_EXCEEDS_AVAILABLE,
    "payout_below_minimum": PAYOUT_EXCEEDS_AVAILABLE,
    "creation_key_reused": PAYOUT_KEY_REUSED,
    "payouts_not_configured": PAYOUTS_UNAVAILABLE,
}

MerchantId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern="^[^\x00]+$")]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", examples=["EUR"])]
#: A sign is allowed so that a negative amount gets payout-amount-not-positive, not a pattern.
SignedAmount = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,4})?$",
        max_length=40,
        description="A decimal string in major units; never a JSON number.",
        examples=["12.34"],
    ),
]
Amount = Annotated[
    str,
    msgspec.Meta(pattern=r"^(0|[1-9][0-9]{0,20})(\.[0-9]{1,4})?$", max_length=40),
]
DelayDays = Annotated[int, msgspec.Meta(ge=0, le=365)]


class CreatePayoutIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: SignedAmount
    currency: Currency
    #: Required with an admin key; with a merchant key, optional and its own id.
    merchant_id: MerchantId | None = None


class PutScheduleIn(msgspec.Struct, forbid_unknown_fields=True):
    interval: Literal["manual", "daily", "weekly"]
    #: Days captured money stays pending before a payout may take it.
    delay_days: DelayDays = 0
    #: The smallest scheduled payout per currency, e.g. {"EUR": "10.00"}.
    minimum_amounts: dict[Currency, Amount] = msgspec.field(default_factory=dict)


class PayoutsQuery(msgspec.Struct):
    limit: PageLimit | None = None
    starting_after: Cursor | None = None


class PayoutOut(msgspec.Struct):
    id: str
    merchant_id: str
    amount: str
    currency: str
    status: str
    trigger: str
    provider_ref: str | None
    failure_reason: str | None
    created_at_ms: int
    updated_at_ms: int
    object: Literal["payout"] = "payout"


class PayoutListOut(msgspec.Struct):
    data: list[PayoutOut]
    has_more: bool
    object: Literal["list"] = "list"


class ScheduleOut(msgspec.Struct):
    merchant_id: str
    interval: str
    delay_days: int
    minimum_amounts: dict[str, str]
    updated_at_ms: int
    object: Literal["payout_schedule"] = "payout_schedule"


def payout_out(payout: Payout) -> PayoutOut:
    return PayoutOut(
        id=payout.payout_id,
        merchant_id=payout.merchant_id,
        amount=format_amount(payout.amount_minor, payout.currency),
        currency=payout.currency,
        status=payout.status.value.lower(),
        trigger=payout.trigger,
        provider_ref=payout.provider_ref,
        failure_reason=payout.failure_reason,
        created_at_ms=payout.created_at_ms,
        updated_at_ms=payout.updated_at_ms,
    )


def schedule_out(schedule: PayoutSchedule) -> ScheduleOut:
    return ScheduleOut(
        merchant_id=schedule.merchant_id,
        interval=schedule.interval.value,
        delay_days=schedule.delay_days,
        minimum_amounts={c: format_amount(m, c) for c, m in schedule.minimums},
        updated_at_ms=schedule.updated_at_ms,
    )


guarded_payouts = guarded("admin", "any_merchant")
guarded_merchant = guarded("admin", "merchant")


def _merchant_of_request(body: CreatePayoutIn) -> str:
    """The merchant to pay: a merchant key's own (naming another is forbidden); an admin
    key's named one."""
    own = g.api_key.merchant_id
    if own is not None:
        if body.merchant_id is not None and body.merchant_id != own:
            raise ApiProblem(FORBIDDEN, "a merchant key may pay out only its own merchant")
        return str(own)
    if body.merchant_id is None:
        detail = "merchant_id is required with an admin key"
        raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/merchant_id", detail)])
    return body.merchant_id


def _amount_minor(text: str, currency: str, pointer: str) -> int:
    negative = text.startswith("-")
    try:
        money = parse_amount(text.removeprefix("-"), currency, allow_zero=True)
    except (InvalidInput, UnknownCurrency) as exc:
        raise ApiProblem(VALIDATION_FAILED, str(exc), [FieldError(pointer, str(exc))]) from None
    if negative or money.minor <= 0:
        detail = f"amount must be positive, got {text}"
        raise ApiProblem(PAYOUT_AMOUNT_NOT_POSITIVE, detail, [FieldError(pointer, detail)])
    return money.minor


@bp.post("/v1/payouts")
@tag(["payouts"])
@document_request(CreatePayoutIn)
@document_response(PayoutOut, 201)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 409)
@document_response(Problem, 413)
@document_response(Problem, 422)
@document_response(Problem, 429)
@document_response(Problem, 503)
@guarded_payouts
async def create_payout() -> Response:
    """Pay `amount` of the merchant's wallet in `currency` to its bank account now (a manual
    payout); needs an Idempotency-Key. 201 with the payout (status `funds_reserved`: the money
    is reserved); it is paid asynchronously. At most what is available and past the payout
    delay may be paid (409 payout-exceeds-available)."""
    runtime = current()
    key = check_key(
        request.headers.get("Idempotency-Key"), runtime.settings.idempotency_key_length_max
    )
    logs.bind(idempotency_key=key)
    body_bytes = await raw_body()
    body = decode_as(body_bytes, CreatePayoutIn)
    merchant_id = _merchant_of_request(body)
    amount_minor = _amount_minor(body.amount, body.currency, "/amount")
    scope = str(g.api_key.key_id)

    async def execute() -> Response:
        result = await create_through_engine(
            runtime,
            lambda: runtime.engine.payouts.create_payout(
                merchant_id, body.currency, amount_minor, idempotency_key=f"{scope}:{key}"
            ),
            _REJECTIONS,
        )
        logs.bind(payout_id=result.payout_id)
        return json_response(
            payout_out(result), 201, {"Location": f"/v1/payouts/{result.payout_id}"}
        )

    return await forwarding(  # another process drives the merchant: its answer (forward_api.py)
        runtime,
        body_bytes,
        lambda: run_idempotent(
            runtime, scope, key, fingerprint("POST", request.path, body_bytes), execute
        ),
    )


@bp.get("/v1/payouts/<payout_id>")
@tag(["payouts"])
@document_response(PayoutOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 404)
@guarded_payouts
async def get_payout(payout_id: str) -> Response:
    payout = await current().engine.payouts.get_payout(payout_id)
    own = g.api_key.merchant_id
    if payout is None or (own is not None and own != payout.merchant_id):
        raise ApiProblem(NOT_FOUND, f"no payout {payout_id}")
    return json_response(payout_out(payout))


@bp.get("/v1/merchants/<merchant_id>/payouts")
@tag(["payouts"])
@document_querystring(PayoutsQuery)
@document_response(PayoutListOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@guarded_merchant
async def list_payouts(merchant_id: str) -> Response:
    """The merchant's payouts, oldest first; page with `starting_after` (the last id seen).
    Query: `limit` (1..page_size_max), `starting_after`."""
    runtime = current()
    limit = page_limit(runtime.settings)
    after = cursor()
    payouts = await runtime.engine.payouts.list_payouts(merchant_id, limit + 1, after)
    return json_response(
        PayoutListOut(data=[payout_out(p) for p in payouts[:limit]], has_more=len(payouts) > limit)
    )


@bp.put("/v1/merchants/<merchant_id>/payout-schedule")
@tag(["payouts"])
@document_request(PutScheduleIn)
@document_response(ScheduleOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@document_response(Problem, 503)
@guarded_merchant
async def put_schedule(merchant_id: str) -> Response:
    """Set how the merchant is paid: `manual` (only when it asks), `daily` or `weekly` (UTC;
    weeks start on Monday), each scheduled payout paying all that is available past the
    `delay_days` payout delay, when at least the currency's minimum."""
    runtime = current()
    if len(merchant_id) > 128 or "\x00" in merchant_id:
        raise ApiProblem(VALIDATION_FAILED, "merchant_id must be 1..128 characters")
    body = decode_as(await raw_body(), PutScheduleIn)
    minimums = {
        c: _amount_minor(text, c, f"/minimum_amounts/{c}")
        for c, text in body.minimum_amounts.items()
    }
    interval = ScheduleInterval(body.interval)
    schedule = await create_through_engine(  # the engine's deadline and refusals, as creating
        runtime,
        lambda: runtime.engine.payouts.put_schedule(
            merchant_id, interval, body.delay_days, minimums
        ),
        {},
    )
    return json_response(schedule_out(schedule))
