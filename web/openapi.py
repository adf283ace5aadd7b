"""The OpenAPI document, completed where quart-schema's decorators cannot say it.

quart-schema documents every response body as `application/json` and has no per-route way to
declare a header that a handler reads by hand. Clients generate code from `/openapi.json`, so
the document must say what the API really does:

- every error body is `application/problem+json` (RFC 9457), never `application/json`;
- the creating POSTs require an `Idempotency-Key` header (the IETF draft), with its rules;
- `POST /v1/psp/webhooks` requires the PSP's `Stripe-Signature` header;
- a 429 carries `Retry-After`.

`complete(document)` is a pure function over the generated document, so it is tested alone.
"""

from __future__ import annotations

import copy
from typing import Any

from quart_schema.openapi import OpenAPIProvider

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: The operations that create something and therefore need an Idempotency-Key.
IDEMPOTENT_OPERATIONS = frozenset(
    {
        ("/v1/payments", "post"),
        ("/v1/merchants/{merchant_id}/webhook-endpoints", "post"),
    }
)
SIGNED_OPERATIONS = frozenset({("/v1/psp/webhooks", "post")})

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
        "schema": {"type": "string", "minLength": 1, "maxLength": length_max},
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


def complete(
    document: dict[str, Any], idempotency_key_length_max: int = IDEMPOTENCY_KEY_LENGTH_MAX
) -> dict[str, Any]:
    """A copy of `document` with the problem media type, the required headers and Retry-After."""
    done = copy.deepcopy(document)
    for path, operations in done.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
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


class CompletedOpenAPIProvider(OpenAPIProvider):
    """quart-schema's provider with `complete` applied to what it generates."""

    def schema(self) -> dict[str, Any]:
        return complete(super().schema())
