"""`create_psp_app`: the FakePsp behind Stripe's wire format, for the subset payengine uses.
This module does what every endpoint shares; psp/resources.py says what each one means.

Why: so that payengine's Stripe adapter (web/http_gateway.py), the official `stripe` library and
any Stripe integration run unchanged against a stateful, fault-injecting test PSP. Endpoints
(form-encoded requests, JSON answers, `Authorization: Bearer sk_test_...` checked):
- `POST /v1/checkout/sessions`, `GET /v1/checkout/sessions/{id}`, `POST .../{id}/expire`;
- `GET /v1/payment_intents/{id}`, `POST .../{id}/capture` (manual capture, in parts with
  `final_capture=false`), `GET /v1/payment_intents/search?query=metadata['k']:'v'`;
- `GET /v1/charges/{id}`, `GET /v1/charges?payment_intent=` (one charge per capture);
- `POST /v1/refunds`, `GET /v1/refunds/{id}`, `GET /v1/refunds`;
- `GET /v1/disputes/{id}`, `GET /v1/disputes` (psp/disputes.py);
- `POST /v1/payouts`, `GET /v1/payouts/{id}`, `GET /v1/payouts` (psp/payouts.py: the PSP is
  also the payout provider, as Stripe and Adyen are; `payout.*` webhooks);
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
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.clock import TrioClock
from engine.gateway import GatewayUnavailable, PspNotification, SessionStatus
from engine.money import format_amount
from psp import wire
from psp.disputes import DISPUTE_ROUTES
from psp.idempotency import IdempotencyCache
from psp.objects import StripeBooks
from psp.page import outcome_for, page
from psp.payout_desk import PayoutDesk, PayoutEvent, PayoutKnobs
from psp.payouts import PAYOUT_ROUTES
from psp.pump import Delivery, PumpLimits, WebhookPump
from psp.resources import ROUTES, Handler
from psp.wire import StripeError
from simulator.fake_psp import FakePsp, process_namespace

PSP_EXTENSION = "fake_psp"
#: The API key the in-process face accepts unless told otherwise (test mode, never secret).
DEFAULT_API_KEY = "sk_test_payengine_fake_psp"
#: The largest request body read, in bytes.
BODY_BYTES_MAX = 64 * 1024


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
    #: How each webhook is delivered (a fault plan's `deliveries`); None: once, at once.
    webhook_plan: Callable[[PspNotification], Sequence[Delivery]] | None = None
    #: Runs beside the webhook sender while the face serves (a fault plan's `disputes`: the card
    #: networks opening and deciding chargebacks); None: nothing.
    background: Callable[..., Awaitable[None]] | None = None
    #: The payouts desk's delays and fault shares (psp/payout_desk.py); None: the defaults.
    payout_knobs: PayoutKnobs | None = None
    #: How each payout webhook is delivered (a fault plan's `payout_deliveries`); None: once.
    payout_webhook_plan: Callable[[PayoutEvent], Sequence[Delivery]] | None = None


@attrs.define(eq=False)
class PspFace:
    psp: FakePsp
    pump: WebhookPump
    books: StripeBooks
    idempotency: IdempotencyCache
    #: The webhook sender's scope, cancelled when the face stops serving.
    pumping: trio.CancelScope
    #: The payouts (psp/payout_desk.py); its events go through the same pump.
    payouts: PayoutDesk


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


def create_psp_app(settings: PspFaceSettings) -> QuartTrio:
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = BODY_BYTES_MAX

    @app.before_serving
    async def start() -> None:
        clock = TrioClock(settings.epoch_ms())
        psp = FakePsp(clock, id_namespace=process_namespace(settings.epoch_ms()))
        if settings.configure is not None:
            settings.configure(psp)
        pump = WebhookPump(
            settings.webhook_url,
            settings.secrets,
            clock,
            settings.pump,
            plan=settings.webhook_plan,
            payout_plan=settings.payout_webhook_plan,
        )
        pumping = trio.CancelScope()
        desk = PayoutDesk(clock, process_namespace(settings.epoch_ms()), settings.payout_knobs)

        async def run_pump(*, task_status: trio.TaskStatus[None]) -> None:
            with pumping:
                async with trio.open_nursery() as nursery:
                    if settings.background is not None:
                        await nursery.start(settings.background, psp)
                    await nursery.start(desk.run)
                    await nursery.start(pump.run, desk.events_receive)
                    await pump.run(psp.webhook_receive, task_status=task_status)

        await app.nursery.start(run_pump)
        books = StripeBooks(psp, settings.public_url, payouts=desk)
        app.extensions[PSP_EXTENSION] = PspFace(
            psp, pump, books, IdempotencyCache(trio.current_time), pumping, desk
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
            status, body = await handler(face().books, params, key, **path)
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

    for method, rule, handler in ROUTES + DISPUTE_ROUTES + PAYOUT_ROUTES:
        app.add_url_rule(rule, handler.__name__, _view(answer, handler), methods=[method])

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
        return Response(
            page(
                session_id,
                amount,
                session.amount.currency,
                session.status.value,
                session.return_url,
            )
        )

    return app


def _view(
    answer: Callable[..., Awaitable[Response]], handler: Handler
) -> Callable[..., Awaitable[Response]]:
    async def view(**path: str) -> Response:
        return await answer(handler, **path)

    return view
