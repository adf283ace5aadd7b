"""The Stripe resources the fake PSP serves: each endpoint as a function of the PSP's books and
the request's decoded parameters, answering (status, body) or raising `StripeError`.

Why apart from the app (psp/app.py): the app does what every endpoint shares (the API key,
form decoding, Idempotency-Key, fault and error mapping); these say what each endpoint means.
A raised `StripeError` is a refusal before the PSP acted (not saved under the Idempotency-Key);
a returned error body is the PSP's answer after it acted (saved, replayed), as at Stripe.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from engine.gateway import CaptureStatus, IdempotencyKeyReused, RefundRefusal, SessionStatus
from engine.money import Money
from psp import wire
from psp.objects import RefundExtra, SessionExtra, StripeBooks, session_of
from psp.wire import StripeError
from simulator.fake_psp import Capture, Session

#: A Checkout Session's lifetime, as Stripe's default (the fake does not expire it by itself).
SESSION_TTL_S = 24 * 3600
#: The largest page of a list endpoint (Stripe's `limit` maximum).
LIST_LIMIT_MAX = 100

Answer = tuple[int, dict[str, Any]]
Handler = Callable[..., Awaitable[Answer]]

_SEARCH_RE = re.compile(r"^\s*metadata\['([^'\\]{1,40})'\]\s*:\s*'([^'\\]{0,500})'\s*$")


# --- checkout sessions ---------------------------------------------------------------------
def session_or_404(books: StripeBooks, session_id: str) -> Session:
    session = books.session(session_id)
    if session is None:
        raise wire.missing("checkout.session", session_id, "session")
    return session


async def create_session(books: StripeBooks, params: dict[str, Any], key: str | None) -> Answer:
    mode = wire.text(params, "mode", required=True)
    if mode != "payment":
        raise StripeError(400, "This fake PSP supports mode=payment only.", "mode")
    amount = _line_items_total(params.get("line_items"))
    intent = params.get("payment_intent_data") or {}
    if not isinstance(intent, dict):
        raise StripeError(400, "Invalid payment_intent_data", "payment_intent_data")
    if intent.get("capture_method") != "manual":
        raise StripeError(
            400,
            "This fake PSP supports manual capture only: pass "
            "payment_intent_data[capture_method]=manual.",
            "payment_intent_data[capture_method]",
        )
    pi_metadata = wire.metadata(intent, "metadata")
    metadata = wire.metadata(params)
    success_url = wire.text(params, "success_url")
    cancel_url = wire.text(params, "cancel_url")
    reference = wire.text(params, "client_reference_id")
    nonce = key or books.new_key("nonce")  # the webhook's reference
    registration = await books.psp.register_checkout(nonce, amount, success_url)
    session_id = registration.session_id
    if session_id not in books.sessions:
        created_s = books.now_s()
        books.sessions[session_id] = SessionExtra(
            success_url,
            cancel_url,
            reference,
            metadata,
            created_s,
            created_s + SESSION_TTL_S,
            pi_metadata,
        )
    return 200, books.session_json(books.psp.sessions[session_id], wire.expand(params))


async def get_session(
    books: StripeBooks, params: dict[str, Any], key: str | None, session_id: str
) -> Answer:
    session = session_or_404(books, session_id)
    await books.psp.session_status(session_id)  # the call's fault, if the plan has one
    return 200, books.session_json(session, wire.expand(params))


async def expire_session(
    books: StripeBooks, params: dict[str, Any], key: str | None, session_id: str
) -> Answer:
    session = session_or_404(books, session_id)
    if session.status is not SessionStatus.OPEN:
        return 400, StripeError(
            400,
            'Only Checkout Sessions with a status in ["open"] can be expired.',
            code="checkout_session_not_open",
        ).body()
    await books.psp.expire_session(session_id)
    return 200, books.session_json(session, wire.expand(params))


# --- payment intents -----------------------------------------------------------------------
def intent_or_404(books: StripeBooks, pi_id: str) -> Session:
    session = books.session(session_of(pi_id)) if pi_id.startswith("pi_") else None
    if session is None:
        raise wire.missing("payment_intent", pi_id, "intent")
    return session


async def get_intent(
    books: StripeBooks, params: dict[str, Any], key: str | None, pi_id: str
) -> Answer:
    session = intent_or_404(books, pi_id)
    return 200, books.intent_json(session, wire.expand(params))


async def capture(
    books: StripeBooks, params: dict[str, Any], key: str | None, pi_id: str
) -> Answer:
    session = intent_or_404(books, pi_id)
    requested = wire.integer(params.get("amount_to_capture"), "amount_to_capture", required=False)
    final = wire.boolean(params, "final_capture", default=True)
    metadata = wire.metadata(params)
    extra = books.sessions[session.session_id]
    state = books.intent_status(session)
    minor = requested if requested is not None else books.capturable_minor(session)
    capture_key = key or books.new_key("capkey")
    if capture_key not in books.psp.captures and (extra.final or minor < 1):
        return 400, _not_capturable(pi_id, state).body()
    result = await books.psp.capture(
        capture_key, session.session_id, Money(minor, session.amount.currency)
    )
    if result.status is CaptureStatus.DECLINED:
        if state != "requires_capture":
            return 400, _not_capturable(pi_id, state).body()
        if minor > books.capturable_minor(session):
            return 400, StripeError(
                400,
                "The amount to capture must be less than or equal to the amount capturable.",
                "amount_to_capture",
                "amount_too_large",
            ).body()
        return 402, StripeError(
            402,
            "Your card was declined.",
            code="card_declined",
            type="card_error",
            extra=(("decline_code", "generic_decline"), ("payment_intent", pi_id)),
        ).body()
    assert result.capture_id is not None, result
    if result.capture_id not in books.charge_metadata:
        books.charge_metadata[result.capture_id] = metadata
        extra.pi_metadata.update(metadata)
        extra.final = extra.final or final
    return 200, books.intent_json(session, wire.expand(params), latest=result.capture_id)


async def search_intents(books: StripeBooks, params: dict[str, Any], key: str | None) -> Answer:
    query = wire.text(params, "query", required=True) or ""
    match = _SEARCH_RE.match(query)
    if match is None:
        raise StripeError(
            400, "This fake PSP searches by one metadata['key']:'value' clause only.", "query"
        )
    name, value = match.groups()
    await books.psp.query_capture("")  # a capture query: that call's fault, if any
    found = [
        books.intent_json(books.psp.sessions[sid], frozenset())
        for sid, extra in books.sessions.items()
        if extra.pi_metadata.get(name) == value
    ]
    return 200, {
        "object": "search_result",
        "url": "/v1/payment_intents/search",
        "data": found[:LIST_LIMIT_MAX],
        "has_more": len(found) > LIST_LIMIT_MAX,
        "next_page": None,
    }


# --- charges ---------------------------------------------------------------------------------
async def get_charge(
    books: StripeBooks, params: dict[str, Any], key: str | None, charge_id: str
) -> Answer:
    capture = books.psp.captures_by_id.get(charge_id)
    if capture is None or capture.status is not CaptureStatus.CAPTURED:
        raise wire.missing("charge", charge_id, "charge")
    return 200, books.charge_json(capture)


async def list_charges(books: StripeBooks, params: dict[str, Any], key: str | None) -> Answer:
    pi_id = wire.text(params, "payment_intent", required=True) or ""
    session = intent_or_404(books, pi_id)
    charges = [books.charge_json(c) for c in books.captures_of(session.session_id)][::-1]
    return 200, _page("/v1/charges", charges, params)


# --- refunds ---------------------------------------------------------------------------------
async def create_refund(books: StripeBooks, params: dict[str, Any], key: str | None) -> Answer:
    charge_id = wire.text(params, "charge")
    pi_id = wire.text(params, "payment_intent")
    if charge_id is None and pi_id is None:
        raise StripeError(400, "Missing required param: charge.", "charge", "parameter_missing")
    if charge_id is None:
        assert pi_id is not None
        charges = books.captures_of(intent_or_404(books, pi_id).session_id)
        if len(charges) != 1:
            raise StripeError(
                400,
                f"PaymentIntent {pi_id} has {len(charges)} charges here (one per capture): "
                "refund one by its charge.",
                "payment_intent",
            )
        charge_id = charges[0].capture_id
    capture = books.psp.captures_by_id.get(charge_id)
    if capture is None:
        raise wire.missing("charge", charge_id, "charge")
    minor = wire.integer(params.get("amount"), "amount", required=False)
    if minor is None:
        minor = capture.amount.minor - capture.refunded_minor
    metadata = wire.metadata(params)
    refund_key = key or books.new_key("rekey")
    try:
        result = await books.psp.refund(
            refund_key, charge_id, Money(minor, capture.amount.currency)
        )
    except IdempotencyKeyReused as exc:
        return 400, StripeError(400, str(exc), type="idempotency_error").body()
    refund = books.psp.refunds[refund_key]
    if result.refund_id is None:
        return 400, _refusal(result.reason, refund.amount, capture).body()
    if result.refund_id not in books.refunds:
        books.refunds[result.refund_id] = RefundExtra(metadata, books.now_s())
        books.refund_keys[result.refund_id] = refund_key
    return 200, books.refund_json(refund)


async def get_refund(
    books: StripeBooks, params: dict[str, Any], key: str | None, refund_id: str
) -> Answer:
    refund_key = books.refund_keys.get(refund_id)
    if refund_key is None:
        raise wire.missing("refund", refund_id, "refund")
    await books.psp.query_refund(refund_key)  # the call's fault, if the plan has one
    return 200, books.refund_json(books.psp.refunds[refund_key])


async def list_refunds(books: StripeBooks, params: dict[str, Any], key: str | None) -> Answer:
    charge_id = wire.text(params, "charge")
    await books.psp.query_refund("")  # a refund query: that call's fault, if any
    refunds = [
        books.refund_json(r)
        for r in books.listed_refunds()
        if charge_id is None or r.capture_id == charge_id
    ]
    return 200, _page("/v1/refunds", refunds, params)


def _line_items_total(items: object) -> Money:
    """The amount of a session: the sum of its line items, all in one currency."""
    if items is None or items == "":
        raise StripeError(
            400, "Missing required param: line_items.", "line_items", "parameter_missing"
        )
    if not isinstance(items, list) or not items:
        raise StripeError(400, "Invalid array: line_items", "line_items")
    total, code = 0, None
    for index, item in enumerate(items):
        where = f"line_items[{index}]"
        if not isinstance(item, dict):
            raise StripeError(400, f"Invalid hash: {where}", where)
        price = item.get("price_data")
        if not isinstance(price, dict):
            raise StripeError(
                400,
                "This fake PSP takes line items with price_data only (no Price objects).",
                f"{where}[price_data]",
                "parameter_missing",
            )
        if "currency" not in price:
            raise StripeError(
                400,
                f"Missing required param: {where}[price_data][currency].",
                f"{where}[price_data][currency]",
                "parameter_missing",
            )
        item_code = wire.currency(price.get("currency"), f"{where}[price_data][currency]")
        if code is not None and item_code != code:
            raise StripeError(
                400, "All line items must be in one currency.", f"{where}[price_data][currency]"
            )
        code = item_code
        unit = wire.integer(price.get("unit_amount"), f"{where}[price_data][unit_amount]")
        quantity = wire.integer(item.get("quantity"), f"{where}[quantity]")
        assert unit is not None and quantity is not None
        total += unit * quantity
    if total > wire.AMOUNT_MINOR_MAX:
        message = f"The total may be no more than {wire.AMOUNT_MINOR_MAX}"
        raise StripeError(400, message, "line_items", "amount_too_large")
    assert code is not None
    return Money(total, code)


def _not_capturable(pi_id: str, state: str) -> StripeError:
    return StripeError(
        400,
        f"This PaymentIntent could not be captured because it has a status of {state}. Only a "
        "PaymentIntent with one of the following statuses may be captured: requires_capture.",
        code="payment_intent_unexpected_state",
        extra=(("payment_intent", pi_id),),
    )


def _refusal(reason: str | None, amount: Money, capture: Capture) -> StripeError:
    if reason == RefundRefusal.EXCEEDS_CAPTURED:
        left = capture.amount.minor - capture.refunded_minor
        return StripeError(
            400,
            f"Refund amount ({amount.minor}) is greater than unrefunded amount on charge ({left}).",
            "amount",
            "amount_too_large",
        )
    if reason == RefundRefusal.CAPTURE_NOT_CAPTURED:
        return StripeError(400, "This charge was not captured.", "charge", "charge_not_refundable")
    return StripeError(400, f"The refund was refused: {reason}.", "amount", str(reason))


def _page(url: str, items: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Stripe's list object: `limit` (1..100, default 10) items after `starting_after`."""
    limit = wire.integer(params.get("limit"), "limit", required=False) or 10
    if limit > LIST_LIMIT_MAX:
        raise StripeError(400, f"limit must be at most {LIST_LIMIT_MAX}", "limit")
    after = wire.text(params, "starting_after")
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise wire.missing("object", after, "starting_after")
        items = items[ids.index(after) + 1 :]
    return {"object": "list", "url": url, "data": items[:limit], "has_more": len(items) > limit}


#: (method, URL rule, handler): what psp/app.py serves. Werkzeug matches the fixed
#: `/v1/payment_intents/search` before the `<pi_id>` rule.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/v1/checkout/sessions", create_session),
    ("GET", "/v1/checkout/sessions/<session_id>", get_session),
    ("POST", "/v1/checkout/sessions/<session_id>/expire", expire_session),
    ("GET", "/v1/payment_intents/search", search_intents),
    ("GET", "/v1/payment_intents/<pi_id>", get_intent),
    ("POST", "/v1/payment_intents/<pi_id>/capture", capture),
    ("GET", "/v1/charges/<charge_id>", get_charge),
    ("GET", "/v1/charges", list_charges),
    ("POST", "/v1/refunds", create_refund),
    ("GET", "/v1/refunds/<refund_id>", get_refund),
    ("GET", "/v1/refunds", list_refunds),
)
