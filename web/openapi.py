"""The OpenAPI document, completed where quart-schema's decorators cannot say it, and exact.

Clients generate code from `/openapi.json`, and schemathesis tests the server against it, so
the document must say what the API really does, no more and no less:

- every `$ref` resolves: quart-schema 0.25 keeps only a msgspec model's own schema and drops
  the models it refers to (`OrderIn`, `FieldError`, ...), so `CompletedOpenAPIProvider` puts
  every referenced model under `components.schemas`;
- every error body is `application/problem+json` (RFC 9457), never `application/json`, and
  every status the server can answer is documented: 401/403/429 on every guarded operation,
  404 on any path parameter (a NUL in the path names nothing, web/boundary.py), 422 on any
  query parameter, 400/413/422 on every POST, 415 where a JSON body is expected;
- the constraints the server enforces: path parameters (ledger accounts, merchant ids), the
  `Idempotency-Key` header (required on creating POSTs, printable ASCII), request bodies
  `required`, `security: []` on the public health checks;
- `POST /v1/payments -> GET /v1/payments/{payment_id}` as an OpenAPI link, so tools that
  follow links (schemathesis's stateful phase) read what they created;
- `POST /v1/psp/webhooks` requires the PSP's `Stripe-Signature` header; a 429 carries
  `Retry-After`;
- `POST /v1/reconciliations` takes the settlement file itself as its body, byte for byte
  (`RAW_BODY_OPERATIONS`): described as `application/octet-stream` (any content type is read
  the same way, so there is no 415), with a small Stripe report as its example.

`complete(document)` is a pure function over the generated document, so it is tested alone.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from quart_schema.conversion import MSGSPEC_REF_TEMPLATE
from quart_schema.openapi import OpenAPIProvider

from engine.access import SCOPE_MERCHANT_ID_LENGTH_MAX
from engine.ledger import (
    BANK_CASH,
    CHARGEBACKS,
    MERCHANT_PAYABLE,
    MERCHANT_RESERVED,
    PLATFORM_REVENUE,
    PSP_CLEARING,
    PSP_FEES,
    REFUNDS_CLEARING,
)
from web.problems import Problem
from web.wire import MERCHANT_ID_PATTERN

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: The operations that create something and therefore need an Idempotency-Key.
IDEMPOTENT_OPERATIONS = frozenset(
    {
        ("/v1/payments", "post"),
        ("/v1/merchants/{merchant_id}/webhook-endpoints", "post"),
    }
)
SIGNED_OPERATIONS = frozenset({("/v1/psp/webhooks", "post")})
#: The operations anyone may call: no API key, no rate limit.
PUBLIC_OPERATIONS = frozenset({("/healthz", "get"), ("/readyz", "get")})
#: Operations that wait for the engine and answer 503 when it does not answer in time.
ENGINE_OPERATIONS = frozenset({("/v1/payments", "post")})

#: Operations whose body is a file taken byte for byte (web/reconciliations.py): path ->
#: the request body's description. The server reads any content type alike (no 415).
RECONCILIATION_EXAMPLE = (
    "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,source_id,"
    "payment_metadata[order_id]\n"
    "txn_1,2026-01-01 01:00:00,usd,25,1.03,23.97,charge,ch_1,ord_1\n"
)
RAW_BODY_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/reconciliations", "post"): {
        "required": True,
        "description": (
            "The settlement file, byte for byte: a Stripe itemized report or Adyen Settlement "
            "Details Report (CSV), or an ISO 20022 camt.053 statement (XML); `format` names it "
            "or `auto` detects it. Any content type is read the same way. An unusable file is "
            "a 422 reconciliation-file-unusable problem naming line and column."
        ),
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "example": RECONCILIATION_EXAMPLE,
            }
        },
    }
}

#: What the server accepts in a path parameter: a path segment without NUL (web/boundary.py).
PATH_SEGMENT_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": "^[^\x00/]+$"}
#: Ledger account names as engine.ledger.account_type accepts them.
ACCOUNT_LENGTH_MAX = 160
_FIXED = "|".join(
    (PSP_CLEARING, BANK_CASH, PLATFORM_REVENUE, PSP_FEES, REFUNDS_CLEARING, CHARGEBACKS)
)
PATH_PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "account": {
        "type": "string",
        "maxLength": ACCOUNT_LENGTH_MAX,
        "pattern": f"^({_FIXED}|({MERCHANT_PAYABLE}|{MERCHANT_RESERVED}):[^\x00/]+)$",
        "description": "An account of the chart: psp_clearing, ..., merchant_payable:<id>.",
    },
    "merchant_id": {
        "type": "string",
        "minLength": 1,
        "maxLength": SCOPE_MERCHANT_ID_LENGTH_MAX,
        "pattern": MERCHANT_ID_PATTERN,
    },
}

#: The link from a created payment to reading it (OpenAPI 3.1 links; schemathesis follows it).
PAYMENT_LINKS: dict[str, Any] = {
    "GetPayment": {
        "operationId": "get_get_payment",
        "parameters": {"payment_id": "$response.body#/id"},
        "description": "Read the payment just created (its `id`).",
    }
}

#: Kept in step with WebSettings.idempotency_key_length_max's default.
IDEMPOTENCY_KEY_LENGTH_MAX = 255


def _idempotency_parameter(length_max: int) -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
        "description": (
            "A unique key per intended operation (a UUID is fine), 1.."
            f"{length_max} printable ASCII characters, scoped to your API key and kept 48 h. "
            "Same key and same body: the first response is replayed byte for byte. Same key, "
            "different body: 422. Same key while the first request is in flight: 409."
        ),
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": length_max,
            "pattern": "^[!-~]+$",
        },
    }


SIGNATURE_PARAMETER: dict[str, Any] = {
    "name": "Stripe-Signature",
    "in": "header",
    "required": True,
    "description": (
        "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + '.' + body)>; several v1 while the "
        "secret rotates; 300 s tolerance"
    ),
    "schema": {"type": "string"},
}

RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "seconds until the API key's rate limit lets a request through",
    "schema": {"type": "integer", "minimum": 0},
}


def _is_problem(content: dict[str, Any]) -> bool:
    schema = content.get("schema", {})
    ref = schema.get("$ref", "")
    named = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""
    return "Problem" in (named, schema.get("title"))


PROBLEM_REF: dict[str, Any] = {"$ref": "#/components/schemas/Problem"}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses the server may answer for this operation whatever its handler says
    (see the module docstring)."""
    statuses: set[int] = set()
    if (path, method) not in PUBLIC_OPERATIONS:
        statuses |= {401, 403, 429}
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters) or "{" in path:
        statuses.add(404)
    if any(p.get("in") == "query" for p in parameters):
        statuses.add(422)
    if method == "post":
        statuses |= {400, 413, 422}
    if "requestBody" in operation and (path, method) not in RAW_BODY_OPERATIONS:
        statuses.add(415)
    if (path, method) in ENGINE_OPERATIONS:
        statuses.add(503)
    return statuses


def _add_responses(path: str, method: str, operation: dict[str, Any]) -> None:
    """Statuses are the keys' type quart-schema uses (int), or str in a parsed document."""
    responses = operation.setdefault("responses", {})
    present = {str(status) for status in responses}
    as_text = any(isinstance(status, str) for status in responses)
    for status in sorted(_statuses(path, method, operation)):
        if str(status) not in present:
            key: int | str = str(status) if as_text else status
            problem = {"application/json": {"schema": copy.deepcopy(PROBLEM_REF)}}
            responses[key] = {"description": "", "content": problem}


def _constrain_parameters(path: str, operation: dict[str, Any]) -> None:
    """Path parameters get the server's rules; a query parameter is optional rather than
    nullable (a query string cannot say null), so `X | None` becomes `X`."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path":
            schema = PATH_PARAMETER_SCHEMAS.get(parameter["name"], PATH_SEGMENT_SCHEMA)
            parameter["schema"] = copy.deepcopy(schema)
        elif parameter.get("in") == "query":
            schema = parameter.get("schema", {})
            options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
            if len(options) == 1 and len(schema["anyOf"]) == 2:
                parameter["schema"] = options[0]


def _is_public(path: str, method: str) -> bool:
    return (path, method) in PUBLIC_OPERATIONS


def complete(
    document: dict[str, Any], idempotency_key_length_max: int = IDEMPOTENCY_KEY_LENGTH_MAX
) -> dict[str, Any]:
    """A copy of `document` made complete and exact (see the module docstring)."""
    done = copy.deepcopy(document)
    for path, operations in done.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            _constrain_parameters(path, operation)
            if (path, method) in RAW_BODY_OPERATIONS:
                operation["requestBody"] = copy.deepcopy(RAW_BODY_OPERATIONS[(path, method)])
            _add_responses(path, method, operation)
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
            if _is_public(path, method):
                operation["security"] = []
            if (path, method) == ("/v1/payments", "post"):
                for status, response in operation["responses"].items():
                    if str(status) in ("200", "201"):
                        response["links"] = copy.deepcopy(PAYMENT_LINKS)
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                json_body = content.get("application/json")
                if json_body is not None and _is_problem(json_body):
                    content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
                if str(status) == "429":
                    response.setdefault("headers", {})["Retry-After"] = RETRY_AFTER_HEADER
            parameters = operation.setdefault("parameters", [])
            if (path, method) in IDEMPOTENT_OPERATIONS:
                parameters.append(_idempotency_parameter(idempotency_key_length_max))
            if (path, method) in SIGNED_OPERATIONS:
                parameters.append(SIGNATURE_PARAMETER)
            if not parameters:
                del operation["parameters"]
    return done


def components_of(model: Any) -> dict[str, Any]:
    """Every schema `model` refers to (itself included), by name, as `$ref`s expect them."""
    if not (isinstance(model, type) and issubclass(model, msgspec.Struct)):
        return {}
    _, components = msgspec.json.schema_components([model], ref_template=MSGSPEC_REF_TEMPLATE)
    return components


class CompletedOpenAPIProvider(OpenAPIProvider):
    """quart-schema's provider with every referenced model under `components.schemas` and
    `complete` applied to what it generates."""

    def build_querystring_parameters(self, model: Any) -> tuple[list[dict[str, Any]], Any]:
        parameters, definitions = super().build_querystring_parameters(model)
        # quart-schema leaves `required` out: a model field without a default is required.
        if isinstance(model, type) and issubclass(model, msgspec.Struct):
            info = msgspec.inspect.type_info(model)
            assert isinstance(info, msgspec.inspect.StructType)
            required = {f.encode_name for f in info.fields if f.required}
            for parameter in parameters:
                if parameter.get("name") in required:
                    parameter["required"] = True
        return parameters, {**components_of(model), **definitions}

    def build_request_body(self, model: Any, source: Any) -> tuple[dict[str, Any], Any]:
        body, definitions = super().build_request_body(model, source)
        return body, {**components_of(model), **definitions}

    def build_response_object(
        self, model: Any, headers_model: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        response, definitions = super().build_response_object(model, headers_model)
        return response, {**components_of(model), **definitions}

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document.setdefault("components", {}).setdefault("schemas", {}).update(
            components_of(Problem)
        )
        return complete(document)
