"""Merchant webhook endpoints: where a merchant receives signed notifications (web/notifier.py).

`POST /v1/merchants/{id}/webhook-endpoints` (admin, or that merchant's key; Idempotency-Key as
every creating POST) registers the merchant's URL, replacing any previous one (one endpoint per
merchant), and returns the new signing secret `whsec_...`: the only answer that ever shows it
(an idempotent replay of the same request replays that answer, as Stripe does).
`GET` lists the merchant's endpoint without the secret.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from quart import Blueprint, Response, g, request
from quart_schema import document_request, document_response, tag

from engine.access import WebhookEndpoint
from web import logs
from web.auth import guarded
from web.bodies import decode_as, raw_body
from web.idempotency import check_key, fingerprint, run_idempotent
from web.merchant_signing import new_secret
from web.problems import VALIDATION_FAILED, ApiProblem, Problem
from web.responses import json_response
from web.runtime import current
from web.wire import Url, check_merchant_id, url_problem

bp = Blueprint("merchant_webhooks", __name__)


class WebhookEndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Url


class WebhookEndpointOut(msgspec.Struct):
    merchant_id: str
    url: str
    enabled: bool
    created_at_ms: int
    object: Literal["webhook_endpoint"] = "webhook_endpoint"


class WebhookEndpointCreatedOut(msgspec.Struct):
    merchant_id: str
    url: str
    enabled: bool
    created_at_ms: int
    secret: Annotated[str, msgspec.Meta(description="Shown once: verify signatures with it.")]
    object: Literal["webhook_endpoint"] = "webhook_endpoint"


class WebhookEndpointListOut(msgspec.Struct):
    data: list[WebhookEndpointOut]
    has_more: bool = False
    object: Literal["list"] = "list"


@bp.post("/v1/merchants/<merchant_id>/webhook-endpoints")
@tag(["merchants"])
@document_request(WebhookEndpointIn)
@document_response(WebhookEndpointCreatedOut, 201)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 409)
@document_response(Problem, 422)
@document_response(Problem, 429)
@guarded("admin", "merchant")
async def create_webhook_endpoint(merchant_id: str) -> Response:
    """Register (or replace) the merchant's webhook URL; the answer shows the secret once."""
    runtime = current()
    check_merchant_id(merchant_id)
    key = check_key(
        request.headers.get("Idempotency-Key"), runtime.settings.idempotency_key_length_max
    )
    logs.bind(idempotency_key=key)
    body = await raw_body()
    url = decode_as(body, WebhookEndpointIn).url
    broken = url_problem(url, "/url")
    if broken is not None:
        raise ApiProblem(VALIDATION_FAILED, broken.detail, [broken])

    async def execute() -> Response:
        endpoint = WebhookEndpoint(merchant_id, url, new_secret(), runtime.clock.now_ms())
        async with runtime.store.unit_of_work() as uow:
            await uow.put_webhook_endpoint(endpoint)
        return json_response(
            WebhookEndpointCreatedOut(
                merchant_id=endpoint.merchant_id,
                url=endpoint.url,
                enabled=endpoint.enabled,
                created_at_ms=endpoint.created_at_ms,
                secret=endpoint.secret,
            ),
            201,
        )

    scope = str(g.api_key.key_id)
    return await run_idempotent(
        runtime, scope, key, fingerprint("POST", request.path, body), execute
    )


@bp.get("/v1/merchants/<merchant_id>/webhook-endpoints")
@tag(["merchants"])
@document_response(WebhookEndpointListOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@guarded("admin", "merchant")
async def list_webhook_endpoints(merchant_id: str) -> Response:
    """The merchant's endpoint (at most one), without its secret."""
    check_merchant_id(merchant_id)
    endpoint = await current().store.get_webhook_endpoint(merchant_id)
    data = (
        []
        if endpoint is None
        else [
            WebhookEndpointOut(
                merchant_id=endpoint.merchant_id,
                url=endpoint.url,
                enabled=endpoint.enabled,
                created_at_ms=endpoint.created_at_ms,
            )
        ]
    )
    return json_response(WebhookEndpointListOut(data=data))
