"""POST /v1/payments, GET /v1/payments/{id}, GET /v1/payments: checkouts for storefronts.

A thin adapter: parse (bodies.py, wire.py) -> command -> the engine's PaymentService with a
deadline -> map the reply. Creating is idempotent twice over: on the Idempotency-Key
(idempotency.py) and, inside the engine, on `checkout_id`.
"""

from __future__ import annotations

import trio
from quart import Blueprint, Response, g, request
from quart_schema import document_querystring, document_request, document_response, tag

from actors.runtime import AskTimeout
from actors.service import Rejection
from engine.errors import InvalidInput
from web import logs
from web.auth import guarded
from web.bodies import decode_as, raw_body
from web.idempotency import check_key, fingerprint, run_idempotent
from web.problems import (
    CONFLICT,
    NOT_FOUND,
    UNAVAILABLE,
    VALIDATION_FAILED,
    ApiProblem,
    Problem,
    render,
)
from web.responses import cursor, json_response, page_limit
from web.runtime import current
from web.wire import CreatePaymentIn, ListQuery, PaymentListOut, PaymentOut, payment_out, to_command

bp = Blueprint("payments", __name__)


@bp.post("/v1/payments")
@tag(["payments"])
@document_request(CreatePaymentIn)
@document_response(PaymentOut, 201)
@document_response(PaymentOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 409)
@document_response(Problem, 413)
@document_response(Problem, 422)
@document_response(Problem, 429)
@guarded("storefront")
async def create_payment() -> Response:
    """Create a checkout; needs an Idempotency-Key. 201 when new, 200 when the checkout_id
    already existed with the same cart."""
    runtime = current()
    key = check_key(
        request.headers.get("Idempotency-Key"), runtime.settings.idempotency_key_length_max
    )
    logs.bind(idempotency_key=key)
    body = await raw_body()
    command = to_command(decode_as(body, CreatePaymentIn))

    async def execute() -> Response:
        settings = runtime.settings
        try:
            with trio.fail_after(settings.engine_call_timeout_s):
                result = await runtime.engine.service.create_checkout(
                    command, register_timeout_s=settings.register_timeout_s
                )
        except InvalidInput as exc:
            raise ApiProblem(VALIDATION_FAILED, str(exc)) from None
        except (trio.TooSlowError, AskTimeout):
            raise ApiProblem(
                UNAVAILABLE, "the engine did not answer in time", headers={"Retry-After": "1"}
            ) from None
        if isinstance(result, Rejection):
            return render(ApiProblem(CONFLICT, f"{result.reason}: {result.detail}"))
        logs.bind(payment_id=result.payment.payment_id)
        if result.created:
            runtime.metrics.inc("payments_created_total")
        return json_response(
            payment_out(result),
            201 if result.created else 200,
            {"Location": f"/v1/payments/{result.payment.payment_id}"},
        )

    scope = str(g.api_key.key_id)  # keys are scoped per API key
    return await run_idempotent(
        runtime, scope, key, fingerprint("POST", request.path, body), execute
    )


@bp.get("/v1/payments/<payment_id>")
@tag(["payments"])
@document_response(PaymentOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 404)
@guarded("storefront", "admin")
async def get_payment(payment_id: str) -> Response:
    view = await current().engine.service.get_payment(payment_id)
    if view is None:
        raise ApiProblem(NOT_FOUND, f"no payment {payment_id}")
    logs.bind(payment_id=payment_id)
    return json_response(payment_out(view))


@bp.get("/v1/payments")
@tag(["payments"])
@document_querystring(ListQuery)
@document_response(PaymentListOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@guarded("storefront", "admin")
async def list_payments() -> Response:
    """Newest first; page with `starting_after` set to the last id of the previous page."""
    runtime = current()
    limit = page_limit(runtime.settings)
    payments = await runtime.store.list_payments(limit + 1, cursor())
    service = runtime.engine.service
    views = []
    for payment in payments[:limit]:
        view = await service.get_payment(payment.payment_id)
        if view is not None:
            views.append(payment_out(view))
    return json_response(PaymentListOut(data=views, has_more=len(payments) > limit))
