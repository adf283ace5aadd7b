"""POST /v1/psp/webhooks: inbound PSP events, verified, deduplicated, durably recorded.

The order of checks is the guarantee: the signature is verified over the raw bytes first (a
forged or stale event is 400 and touches nothing), then the event is handed to the engine,
which records it and applies it in one unit of work, deduplicating on the event id. Only then
is the answer 2xx (applied, duplicate, ignored, unknown_reference: all durably recorded). A
`retry_later` reply means nothing was recorded, so the answer is 503 and the PSP redelivers,
as it does for any non-2xx. A well-formed event of a type we do not handle is acknowledged
(200 `unhandled_type`) so the PSP stops sending it, as Stripe recommends. Payout events
(`payout.*`, web/payout_wire.py) go to the payouts' `apply_notice` the same way.
"""

from __future__ import annotations

import msgspec
import trio
from quart import Blueprint, Response, request
from quart_schema import document_response, hide, tag

from actors.runtime import AskTimeout
from engine.errors import StoreUnavailable
from engine.gateway import PspNotification
from engine.leases import NotOwner
from engine.payout_gateway import PayoutNotification
from web import logs
from web.bodies import raw_body
from web.forward import forward_to_owner
from web.payout_wire import as_return_if_paid, decode_payout_event, is_payout_event
from web.problems import MALFORMED_JSON, SIGNATURE_INVALID, UNAVAILABLE, ApiProblem, Problem
from web.psp_wire import UnknownEventType, decode_event
from web.responses import json_response
from web.runtime import current
from web.signature import SignatureError, verify
from web.wire import WebhookAck

bp = Blueprint("webhooks", __name__)

#: Outcomes after which the event is durably recorded: the PSP may stop sending it.
RECORDED = frozenset({"applied", "duplicate", "ignored", "unknown_reference"})


@bp.post("/v1/psp/webhooks")
@tag(["webhooks"])
@hide  # signed by the PSP; no use generating calls to it from the schema
@document_response(WebhookAck, 200)
@document_response(Problem, 400)
@document_response(Problem, 503)
async def psp_webhook() -> Response:
    runtime = current()
    body = await raw_body()
    try:
        verify(
            request.headers.get("Stripe-Signature"),
            body,
            runtime.settings.psp_webhook_secrets,
            runtime.clock.now_ms() // 1000,
            runtime.settings.psp_signature_tolerance_s,
        )
    except SignatureError as exc:
        runtime.metrics.inc("psp_webhooks_total", outcome="signature_invalid")
        raise ApiProblem(SIGNATURE_INVALID, str(exc)) from None
    try:
        event: PspNotification | PayoutNotification = (
            decode_payout_event(body) if is_payout_event(body) else decode_event(body)
        )
    except UnknownEventType as exc:
        runtime.metrics.inc("psp_webhooks_total", outcome="unhandled_type")
        return json_response(WebhookAck(received=True, outcome=f"unhandled_type:{exc}"))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiProblem(MALFORMED_JSON, f"the event is not a PSP event: {exc}") from None
    logs.bind(psp_event_id=event.event_id, psp_reference=event.reference)
    try:
        with trio.fail_after(runtime.settings.engine_call_timeout_s):
            if isinstance(event, PayoutNotification):
                notice = await as_return_if_paid(runtime.store, event)
                outcome = await runtime.engine.payouts.apply_notice(notice)
            else:
                outcome = await runtime.engine.service.handle_psp_event(event)
    except (trio.TooSlowError, AskTimeout, StoreUnavailable):
        outcome = "retry_later"  # nothing recorded (an outage is weather): the PSP redelivers
    except NotOwner as exc:  # another process drives it (several processes): hand it over
        forwarded = await forward_to_owner(runtime, exc.partition, body)
        if forwarded is not None:
            return forwarded
        outcome = "retry_later"
    runtime.metrics.inc("psp_webhooks_total", outcome=outcome)
    if outcome not in RECORDED:
        raise ApiProblem(
            UNAVAILABLE, "the event was not recorded; send it again", headers={"Retry-After": "5"}
        )
    return json_response(WebhookAck(received=True, outcome=outcome))
