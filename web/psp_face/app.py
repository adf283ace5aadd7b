"""`create_psp_app`: the in-process FakePsp behind Stripe-shaped HTTP endpoints.

Endpoints (JSON; amounts as integer minor units plus currency, as Stripe's API):
- `POST /v1/checkout/sessions` (Idempotency-Key = our payment id), `GET .../{id}`,
  `POST .../{id}/expire`: hosted-page sessions.
- `POST /v1/captures` (Idempotency-Key = our order id), `GET /v1/captures/{key}`.
- `POST /v1/refunds` (Idempotency-Key = our refund id; body `capture_id`, `amount`, `currency`),
  `GET /v1/refunds/{key}`. A refusal (unknown or declined capture, more than is left) is a 400
  whose `error.code` is the `RefundRefusal` word; the key reused with another capture or amount
  is a 400 of type `idempotency_error`, as Stripe answers.
- `GET /pay/{session_id}`, `POST /pay/{session_id}`: the hosted page the buyer clicks through.
Every outcome is also sent as a signed webhook by the pump (pump.py). A scripted fault in the
FakePsp (`psp.script(...)`) surfaces as a 503, an unknown outcome for the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from actors.clock import TrioClock
from engine.gateway import (
    GatewayUnavailable,
    IdempotencyKeyReused,
    PspRefundStatus,
    RefundResult,
    SessionStatus,
)
from engine.money import Money, format_amount
from simulator.fake_psp import FakePsp, process_namespace
from web.psp_face.page import outcome_for, page
from web.psp_face.pump import PumpLimits, WebhookPump
from web.runtime import wall_clock_ms

PSP_EXTENSION = "fake_psp"


@attrs.frozen
class PspFaceSettings:
    public_url: str
    webhook_url: str
    secrets: tuple[str, ...]
    epoch_ms: Callable[[], int] = wall_clock_ms
    pump: PumpLimits = attrs.Factory(PumpLimits)


@attrs.define(eq=False)
class PspFace:
    psp: FakePsp
    pump: WebhookPump


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status=status, content_type="application/json")


def _refund_json(result: RefundResult) -> dict[str, Any]:
    return {
        "id": result.refund_id,
        "object": "refund",
        "status": result.status.value,
        "reason": result.reason,
    }


def _refund_body(data: object) -> tuple[str, Money] | str:
    """(capture id, amount) of a refund request, or why it is malformed."""
    if not isinstance(data, dict):
        return "the body must be a JSON object"
    capture_id, minor, currency = data.get("capture_id"), data.get("amount"), data.get("currency")
    if not isinstance(capture_id, str) or not capture_id:
        return "capture_id must be a non-empty string"
    if not isinstance(minor, int) or isinstance(minor, bool):
        return "amount must be an integer of minor units"
    if not isinstance(currency, str):
        return "currency must be a string"
    try:
        return capture_id, Money(minor, currency)
    except ValueError as exc:
        return str(exc)


def create_psp_app(settings: PspFaceSettings) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.before_serving
    async def start() -> None:
        clock = TrioClock(settings.epoch_ms())
        psp = FakePsp(clock, id_namespace=process_namespace(settings.epoch_ms()))
        pump = WebhookPump(settings.webhook_url, settings.secrets, clock, settings.pump)
        await app.nursery.start(pump.run, psp.webhook_receive)
        app.extensions[PSP_EXTENSION] = PspFace(psp, pump)

    def face() -> PspFace:
        found: PspFace = app.extensions[PSP_EXTENSION]
        return found

    def session_json(session_id: str) -> dict[str, Any]:
        session = face().psp.sessions[session_id]
        return {
            "id": session.session_id,
            "object": "checkout.session",
            "status": session.status.value,
            "amount_total": session.amount.minor,
            "currency": session.amount.currency,
            "url": f"{settings.public_url}/pay/{session.session_id}",
            "return_url": session.return_url,
        }

    @app.errorhandler(GatewayUnavailable)
    async def unavailable(error: GatewayUnavailable) -> Response:
        return _json({"error": {"type": "api_error", "message": str(error)}}, 503)

    @app.post("/v1/checkout/sessions")
    async def create_session() -> Response:
        data = await request.get_json()
        nonce = request.headers["Idempotency-Key"]
        amount = Money(int(data["amount_total"]), str(data["currency"]))
        registration = await face().psp.register_checkout(nonce, amount, data.get("return_url"))
        return _json(session_json(registration.session_id))

    @app.get("/v1/checkout/sessions/<session_id>")
    async def get_session(session_id: str) -> Response:
        if session_id not in face().psp.sessions:
            return _json({"error": {"type": "invalid_request_error"}}, 404)
        await face().psp.session_status(session_id)
        return _json(session_json(session_id))

    @app.post("/v1/checkout/sessions/<session_id>/expire")
    async def expire_session(session_id: str) -> Response:
        if session_id not in face().psp.sessions:
            return _json({"error": {"type": "invalid_request_error"}}, 404)
        await face().psp.expire_session(session_id)
        return _json(session_json(session_id))

    @app.post("/v1/captures")
    async def capture() -> Response:
        data = await request.get_json()
        amount = Money(int(data["amount"]), str(data["currency"]))
        key = request.headers["Idempotency-Key"]
        result = await face().psp.capture(key, str(data["session_id"]), amount)
        return _json({"id": result.capture_id, "status": result.status.value, "reason": None})

    @app.get("/v1/captures/<key>")
    async def query_capture(key: str) -> Response:
        result = await face().psp.query_capture(key)
        if result.capture_id is None:
            return _json({"error": {"type": "invalid_request_error"}}, 404)
        return _json({"id": result.capture_id, "status": result.status.value, "reason": None})

    @app.post("/v1/refunds")
    async def refund() -> Response:
        key = request.headers.get("Idempotency-Key")
        parsed = _refund_body(await request.get_json(silent=True))
        if not key or isinstance(parsed, str):
            message = "an Idempotency-Key header is required" if not key else parsed
            return _json({"error": {"type": "invalid_request_error", "message": message}}, 400)
        capture_id, amount = parsed
        try:
            result = await face().psp.refund(key, capture_id, amount)
        except IdempotencyKeyReused as exc:
            return _json({"error": {"type": "idempotency_error", "message": str(exc)}}, 400)
        if result.refund_id is None:  # refused: no refund exists
            error = {"type": "invalid_request_error", "code": result.reason, "message": "refused"}
            return _json({"error": error}, 400)
        return _json(_refund_json(result))

    @app.get("/v1/refunds/<key>")
    async def query_refund(key: str) -> Response:
        result = await face().psp.query_refund(key)
        if result.status is PspRefundStatus.NOT_FOUND:
            return _json({"error": {"type": "invalid_request_error"}}, 404)
        return _json(_refund_json(result))

    @app.get("/pay/<session_id>")
    async def hosted_page(session_id: str) -> Response:
        session = face().psp.sessions.get(session_id)
        if session is None:
            return Response("no such checkout", 404)
        amount = format_amount(session.amount.minor, session.amount.currency)
        return Response(page(session_id, amount, session.amount.currency, session.status.value))

    @app.post("/pay/<session_id>")
    async def pay(session_id: str) -> Response:
        psp = face().psp
        if session_id not in psp.sessions:
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
        session = psp.sessions[session_id]
        if session.status is SessionStatus.AUTHORIZED and session.return_url:
            return Response("", 303, {"Location": session.return_url})
        amount = format_amount(session.amount.minor, session.amount.currency)
        return Response(page(session_id, amount, session.amount.currency, session.status.value))

    return app
