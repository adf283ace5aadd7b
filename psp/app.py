"""`create_psp_app`: the FakePsp behind Stripe's wire format, for the subset payengine uses.

Why: so that payengine's Stripe adapter (web/http_gateway.py), the official `stripe` library and
any Stripe integration run unchanged against a stateful, fault-injecting test PSP. Endpoints
(form-encoded requests, JSON answers, `Authorization: Bearer sk_test_...` checked):
- `POST /v1/checkout/sessions`, `GET /v1/checkout/sessions/{id}`, `POST .../{id}/expire`;
- `GET /v1/payment_intents/{id}`, `POST .../{id}/capture` (manual capture, in parts with
  `final_capture=false`), `GET /v1/payment_intents/search?query=metadata['k']:'v'`;
- `GET /v1/charges/{id}`, `GET /v1/charges?payment_intent=` (one charge per capture);
- `POST /v1/refunds`, `GET /v1/refunds/{id}`, `GET /v1/refunds`;
- `GET|POST /pay/{session_id}`: the hosted page the buyer clicks through (no API key).
Every refusal is Stripe's error object with Stripe's status code (psp/wire.py); POSTs honour
`Idempotency-Key` as Stripe does (psp/idempotency.py); every outcome is also a signed webhook
(psp/pump.py). A fault of the FakePsp (scripted, or a scenario's plan) is a 503 `api_error`:
an unknown outcome for the caller. docs/psp.md is the reference.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.clock import TrioClock
from engine.gateway import (
    CaptureStatus,
    GatewayUnavailable,
    IdempotencyKeyReused,
    RefundRefusal,
    SessionStatus,
)
from engine.money import Money, format_amount
from psp import wire
from psp.idempotency import IdempotencyCache
from psp.objects import RefundExtra, SessionExtra, StripeBooks, session_of
from psp.page import outcome_for, page
from psp.pump import PumpLimits, WebhookPump
from psp.wire import StripeError
from simulator.fake_psp import FakePsp, process_namespace

PSP_EXTENSION = "fake_psp"
#: The API key the in-process face accepts unless told otherwise (test mode, never secret).
DEFAULT_API_KEY = "sk_test_payengine_fake_psp"
#: A Checkout Session's lifetime, as Stripe's default (the fake does not expire it by itself).
SESSION_TTL_S = 24 * 3600
#: The largest page of a list endpoint (Stripe's `limit` maximum).
LIST_LIMIT_MAX = 100
#: The largest request body read, in bytes.
BODY_BYTES_MAX = 64 * 1024

Handler = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]


def _wall_clock_ms() -> int:
    """The production wall clock (tests and the simulator inject their own)."""
    return int(time.time() * 1000)


def _check_keys(instance: Any, attribute: Any, keys: tuple[str, ...]) -> None:
    if not keys or not all(k.startswith("sk_test_") and len(k) > 8 for k in keys):
        raise ValueError(f"api_keys must be test-mode secret keys (sk_test_...), got {keys!r}")


@attrs.frozen
class PspFaceSettings:
    public_url: str
    #: Where webhooks go; None sends none (events are dropped).
    webhook_url: str | None
    secrets: tuple[str, ...]
    epoch_ms: Callable[[], int] = _wall_clock_ms
    pump: PumpLimits = attrs.Factory(PumpLimits)
    api_keys: tuple[str, ...] = attrs.field(default=(DEFAULT_API_KEY,), validator=_check_keys)
    #: Applied to the FakePsp once it exists (a fault plan: `chooser`, `latency`).
    configure: Callable[[FakePsp], None] | None = None


@attrs.define(eq=False)
class PspFace:
    psp: FakePsp
    pump: WebhookPump
    books: StripeBooks
    idempotency: IdempotencyCache
    #: The webhook sender's scope, cancelled when the face stops serving.
    pumping: trio.CancelScope


def _json(data: dict[str, Any], status: int = 200, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(
        msgspec.json.encode(data), status=status, content_type="application/json", headers=headers
    )


def _api_key(header: str | None, keys: tuple[str, ...]) -> str:
    """The caller's API key (Bearer, or Basic with the key as user name, as Stripe takes)."""
    given = None
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                given = None
    if not given:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise StripeError(401, f"Invalid API Key provided: {given[:8]}****{given[-4:]}")
    return given


_SEARCH_RE = re.compile(r"^\s*metadata\['([^'\\]{1,40})'\]\s*:\s*'([^'\\]{0,500})'\s*$")


def create_psp_app(settings: PspFaceSettings) -> QuartTrio:
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = BODY_BYTES_MAX

    @app.before_serving
    async def start() -> None:
        clock = TrioClock(settings.epoch_ms())
        psp = FakePsp(clock, id_namespace=process_namespace(settings.epoch_ms()))
        if settings.configure is not None:
            settings.configure(psp)
        pump = WebhookPump(settings.webhook_url, settings.secrets, clock, settings.pump)
        pumping = trio.CancelScope()

        async def run_pump(*, task_status: trio.TaskStatus[None]) -> None:
            with pumping:
                await pump.run(psp.webhook_receive, task_status=task_status)

        await app.nursery.start(run_pump)
        books = StripeBooks(psp, settings.public_url)
        app.extensions[PSP_EXTENSION] = PspFace(
            psp, pump, books, IdempotencyCache(trio.current_time), pumping
        )

    @app.after_serving
    async def stop() -> None:
        """Webhooks still in flight are dropped, as when a PSP's sender restarts."""
        found = app.extensions.get(PSP_EXTENSION)
        if found is not None:
            found.pumping.cancel()

    def face() -> PspFace:
        found: PspFace = app.extensions[PSP_EXTENSION]
        return found

    def now_s() -> int:
        return face().psp.clock.now_ms() // 1000

    async def answer(handler: Handler, **path: str) -> Response:
        """Authenticate, decode, honour Idempotency-Key, run `handler`, map refusals."""
        try:
            scope = _api_key(request.headers.get("Authorization"), settings.api_keys)
            if request.method == "POST":
                pairs = list((await request.form).items(multi=True))
            else:
                pairs = list(request.args.items(multi=True))
            params = wire.decode_params(pairs)
        except StripeError as exc:
            return _json(exc.body(), exc.status)
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        fingerprint = f"{request.method} {request.path} {sorted(pairs)!r}"
        try:
            saved = None if key is None else face().idempotency.begin(scope, key, fingerprint)
        except StripeError as exc:
            return _json(exc.body(), exc.status)
        if saved is not None:
            return Response(
                saved.body,
                status=saved.status,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            status, body = await handler(params, key, **path)
        except StripeError as exc:
            if key is not None:
                face().idempotency.abandon(scope, key)
            return _json(exc.body(), exc.status)
        except GatewayUnavailable as exc:  # a fault: the PSP may or may not have acted
            if key is not None:
                face().idempotency.abandon(scope, key)
            error = StripeError(503, f"The fake PSP failed: {exc}", type="api_error")
            return _json(error.body(), 503)
        except BaseException:
            if key is not None:
                face().idempotency.abandon(scope, key)
            raise
        encoded = msgspec.json.encode(body)
        if key is not None:
            face().idempotency.finish(scope, key, status, encoded)
        return Response(encoded, status=status, content_type="application/json")

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        message = (
            f"Unrecognized request URL ({request.method}: {request.path})."
            if code in (404, 405)
            else (error.description or "bad request")
        )
        kind = "invalid_request_error" if code < 500 else "api_error"
        return _json(StripeError(code, message, type=kind).body(), code)

    # --- checkout sessions ---------------------------------------------------------------------
    def session_or_404(session_id: str) -> Any:
        session = face().books.session(session_id)
        if session is None:
            raise wire.missing("checkout.session", session_id, "session")
        return session

    async def create_session(params: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
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
        books = face().books
        nonce = key or books.new_key("nonce")  # the webhook's reference
        registration = await books.psp.register_checkout(nonce, amount, success_url)
        session_id = registration.session_id
        if session_id not in books.sessions:
            created_s = now_s()
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

    @app.post("/v1/checkout/sessions")
    async def post_session() -> Response:
        return await answer(create_session)

    async def get_session(
        params: dict[str, Any], key: str | None, session_id: str
    ) -> tuple[int, dict[str, Any]]:
        session = session_or_404(session_id)
        await face().psp.session_status(session_id)  # the call's fault, if the plan has one
        return 200, face().books.session_json(session, wire.expand(params))

    @app.get("/v1/checkout/sessions/<session_id>")
    async def get_session_route(session_id: str) -> Response:
        return await answer(get_session, session_id=session_id)

    async def expire_session(
        params: dict[str, Any], key: str | None, session_id: str
    ) -> tuple[int, dict[str, Any]]:
        session = session_or_404(session_id)
        if session.status is not SessionStatus.OPEN:
            return 400, StripeError(
                400,
                'Only Checkout Sessions with a status in ["open"] can be expired.',
                code="checkout_session_not_open",
            ).body()
        await face().psp.expire_session(session_id)
        return 200, face().books.session_json(session, wire.expand(params))

    @app.post("/v1/checkout/sessions/<session_id>/expire")
    async def expire_route(session_id: str) -> Response:
        return await answer(expire_session, session_id=session_id)

    # --- payment intents -----------------------------------------------------------------------
    def intent_or_404(pi_id: str) -> Any:
        session = face().books.session(session_of(pi_id)) if pi_id.startswith("pi_") else None
        if session is None:
            raise wire.missing("payment_intent", pi_id, "intent")
        return session

    async def get_intent(
        params: dict[str, Any], key: str | None, pi_id: str
    ) -> tuple[int, dict[str, Any]]:
        session = intent_or_404(pi_id)
        return 200, face().books.intent_json(session, wire.expand(params))

    @app.get("/v1/payment_intents/<pi_id>")
    async def get_intent_route(pi_id: str) -> Response:
        if pi_id == "search":
            return await answer(search_intents)
        return await answer(get_intent, pi_id=pi_id)

    async def capture(
        params: dict[str, Any], key: str | None, pi_id: str
    ) -> tuple[int, dict[str, Any]]:
        session = intent_or_404(pi_id)
        books = face().books
        requested = wire.integer(
            params.get("amount_to_capture"), "amount_to_capture", required=False
        )
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

    @app.post("/v1/payment_intents/<pi_id>/capture")
    async def capture_route(pi_id: str) -> Response:
        return await answer(capture, pi_id=pi_id)

    async def search_intents(params: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        query = wire.text(params, "query", required=True) or ""
        match = _SEARCH_RE.match(query)
        if match is None:
            raise StripeError(
                400, "This fake PSP searches by one metadata['key']:'value' clause only.", "query"
            )
        name, value = match.groups()
        books = face().books
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
        params: dict[str, Any], key: str | None, charge_id: str
    ) -> tuple[int, dict[str, Any]]:
        capture = face().psp.captures_by_id.get(charge_id)
        if capture is None or capture.status is not CaptureStatus.CAPTURED:
            raise wire.missing("charge", charge_id, "charge")
        return 200, face().books.charge_json(capture)

    @app.get("/v1/charges/<charge_id>")
    async def get_charge_route(charge_id: str) -> Response:
        return await answer(get_charge, charge_id=charge_id)

    async def list_charges(params: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        pi_id = wire.text(params, "payment_intent", required=True) or ""
        session = intent_or_404(pi_id)
        books = face().books
        charges = [books.charge_json(c) for c in books.captures_of(session.session_id)][::-1]
        return 200, _page("/v1/charges", charges, params)

    @app.get("/v1/charges")
    async def list_charges_route() -> Response:
        return await answer(list_charges)

    # --- refunds ---------------------------------------------------------------------------------
    async def create_refund(params: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        books = face().books
        charge_id = wire.text(params, "charge")
        pi_id = wire.text(params, "payment_intent")
        if charge_id is None and pi_id is None:
            raise StripeError(400, "Missing required param: charge.", "charge", "parameter_missing")
        if charge_id is None:
            assert pi_id is not None
            charges = books.captures_of(intent_or_404(pi_id).session_id)
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
            books.refunds[result.refund_id] = RefundExtra(metadata, now_s())
            books.refund_keys[result.refund_id] = refund_key
        return 200, books.refund_json(refund)

    @app.post("/v1/refunds")
    async def create_refund_route() -> Response:
        return await answer(create_refund)

    async def get_refund(
        params: dict[str, Any], key: str | None, refund_id: str
    ) -> tuple[int, dict[str, Any]]:
        books = face().books
        refund_key = books.refund_keys.get(refund_id)
        if refund_key is None:
            raise wire.missing("refund", refund_id, "refund")
        await books.psp.query_refund(refund_key)  # the call's fault, if the plan has one
        return 200, books.refund_json(books.psp.refunds[refund_key])

    @app.get("/v1/refunds/<refund_id>")
    async def get_refund_route(refund_id: str) -> Response:
        return await answer(get_refund, refund_id=refund_id)

    async def list_refunds(params: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        books = face().books
        charge_id = wire.text(params, "charge")
        await books.psp.query_refund("")  # a refund query: that call's fault, if any
        refunds = [
            books.refund_json(r)
            for r in books.listed_refunds()
            if charge_id is None or r.capture_id == charge_id
        ]
        return 200, _page("/v1/refunds", refunds, params)

    @app.get("/v1/refunds")
    async def list_refunds_route() -> Response:
        return await answer(list_refunds)

    # --- the hosted page -------------------------------------------------------------------------
    @app.get("/pay/<session_id>")
    async def hosted_page(session_id: str) -> Response:
        session = face().books.session(session_id)
        if session is None:
            return Response("no such checkout", 404)
        amount = format_amount(session.amount.minor, session.amount.currency)
        return Response(page(session_id, amount, session.amount.currency, session.status.value))

    @app.post("/pay/<session_id>")
    async def pay(session_id: str) -> Response:
        psp = face().psp
        session = face().books.session(session_id)
        if session is None:
            return Response("no such checkout", 404)
        form = await request.form
        action = outcome_for(form.get("card_number", ""))
        if action == "pay":
            psp.buyer_pays(session_id)
        elif action == "review":
            psp.buyer_in_review(session_id)
        else:
            psp.buyer_declined(session_id)
        await trio.lowlevel.checkpoint()
        if session.status is SessionStatus.AUTHORIZED and session.return_url:
            return Response("", 303, {"Location": session.return_url})
        amount = format_amount(session.amount.minor, session.amount.currency)
        return Response(page(session_id, amount, session.amount.currency, session.status.value))

    return app


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


def _refusal(reason: str | None, amount: Money, capture: Any) -> StripeError:
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
