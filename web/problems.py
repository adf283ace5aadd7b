"""RFC 9457 problem details: every error the API returns, as `application/problem+json`.

Why one module: a client handles errors by `type` (a stable URI), never by parsing `detail`.
Each problem type is declared once here with its status and title, and `ApiProblem` is the one
exception that handlers raise; the app's error handlers turn it (and Quart's own HTTP errors,
such as 413 and 405) into the same shape, so no response ever leaks an HTML error page or a
stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import msgspec
from quart import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://payengine.dev/problems/"


class FieldError(msgspec.Struct, frozen=True):
    """One broken rule, located by a JSON Pointer (RFC 6901) into the request body."""

    pointer: str
    detail: str


class Problem(msgspec.Struct, omit_defaults=True):
    """The wire shape of an error (RFC 9457), plus `errors` for per-field problems."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = msgspec.field(default_factory=list)
    request_id: str | None = None


@attrs.frozen
class ProblemType:
    slug: str
    status: int
    title: str

    @property
    def uri(self) -> str:
        return TYPE_BASE + self.slug


MALFORMED_JSON = ProblemType("malformed-json", 400, "The body is not valid JSON")
VALIDATION_FAILED = ProblemType("validation-failed", 422, "The request broke a rule")
CARD_DATA_REFUSED = ProblemType(
    "card-data-refused", 400, "The body looks like it contains a card number"
)
IDEMPOTENCY_KEY_MISSING = ProblemType(
    "idempotency-key-missing", 400, "This request needs an Idempotency-Key header"
)
IDEMPOTENCY_KEY_INVALID = ProblemType(
    "idempotency-key-invalid", 400, "The Idempotency-Key header is malformed"
)
IDEMPOTENCY_KEY_REUSED = ProblemType(
    "idempotency-key-reused", 422, "The Idempotency-Key was used with a different request"
)
IDEMPOTENCY_KEY_IN_FLIGHT = ProblemType(
    "idempotency-key-in-flight", 409, "A request with this Idempotency-Key is still running"
)
UNAUTHENTICATED = ProblemType("unauthenticated", 401, "A valid API key is required")
FORBIDDEN = ProblemType("forbidden", 403, "This API key may not do that")
NOT_FOUND = ProblemType("not-found", 404, "Not found")
METHOD_NOT_ALLOWED = ProblemType("method-not-allowed", 405, "Method not allowed")
CONFLICT = ProblemType("conflict", 409, "The request conflicts with the current state")
BODY_TOO_LARGE = ProblemType("body-too-large", 413, "The body is larger than the limit")
UNSUPPORTED_MEDIA_TYPE = ProblemType("unsupported-media-type", 415, "Send application/json")
RATE_LIMITED = ProblemType("rate-limited", 429, "Too many requests for this API key")
SIGNATURE_INVALID = ProblemType("signature-invalid", 400, "The webhook signature does not verify")
UNAVAILABLE = ProblemType("unavailable", 503, "Try again shortly")
INTERNAL = ProblemType("internal", 500, "Internal error")
BAD_REQUEST = ProblemType("bad-request", 400, "Bad request")

_BY_STATUS = {
    p.status: p
    for p in (BAD_REQUEST, NOT_FOUND, METHOD_NOT_ALLOWED, BODY_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE)
}


class ApiProblem(Exception):
    """Raised by handlers; rendered as problem+json by the app's error handler."""

    def __init__(
        self,
        kind: ProblemType,
        detail: str,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def for_status(status: int) -> ProblemType:
    """The problem type for an HTTP error Quart raised itself (404, 405, 413...)."""
    return _BY_STATUS.get(status) or ProblemType("http-error", status, "HTTP error")


def render(problem: ApiProblem, request_id: str | None = None) -> Response:
    body = Problem(
        type=problem.kind.uri,
        title=problem.kind.title,
        status=problem.kind.status,
        detail=problem.detail,
        errors=problem.errors,
        request_id=request_id,
    )
    response = Response(
        msgspec.json.encode(body), status=problem.kind.status, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response
