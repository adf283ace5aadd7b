"""JSON responses from msgspec models, and query-string paging shared by list endpoints."""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Response, request

from web.problems import VALIDATION_FAILED, ApiProblem, FieldError
from web.settings import WebSettings


def json_response(model: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(msgspec.json.encode(model), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


#: More digits than any page size needs; a longer `?limit=` is refused without int().
LIMIT_DIGITS_MAX = 9


def page_limit(settings: WebSettings) -> int:
    """`?limit=` within 1..page_size_max (default page_size_default); 422 otherwise."""
    text = request.args.get("limit")
    if text is None:
        return settings.page_size_default
    # ASCII digits only (str.isdigit() also holds for '²', which int() refuses), and few of
    # them (int() refuses more than 4300 digits).
    digits = text.isascii() and text.isdigit() and len(text) <= LIMIT_DIGITS_MAX
    if not digits or not 1 <= int(text) <= settings.page_size_max:
        detail = f"limit must be an integer within 1..{settings.page_size_max}"
        raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/limit", detail)])
    return int(text)


def cursor() -> str | None:
    """`?starting_after=`: an id from the previous page (opaque, at most 128 characters)."""
    text = request.args.get("starting_after")
    if text is not None and not 1 <= len(text) <= 128:
        detail = "starting_after must be an id of 1..128 characters"
        raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/starting_after", detail)])
    return text
