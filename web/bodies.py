"""Reading request bodies: JSON only, decoded straight into msgspec models.

Why here: every creating endpoint must refuse the same things the same way. A body without a
JSON Content-Type (or with none at all) is 415 `unsupported-media-type`. A malformed body is
400 `malformed-json`; a well-formed body that breaks the schema (a JSON number where an amount
string belongs, a missing field, an unknown field, an empty cart) is 422 `validation-failed`
with a JSON Pointer to the field. Nothing is written before a body has passed.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from quart import request

from web.problems import (
    MALFORMED_JSON,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_FAILED,
    ApiProblem,
    FieldError,
)

T = TypeVar("T")

_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_SEGMENT_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\"([^\"]*)\"\]")


def json_pointer(msgspec_path: str) -> str:
    """`$.orders[0].amount` (msgspec) -> `/orders/0/amount` (RFC 6901)."""
    parts = []
    for match in _SEGMENT_RE.finditer(msgspec_path):
        token = next(g for g in match.groups() if g is not None)
        parts.append(token.replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(parts) if parts else ""


def is_json(content_type: str | None) -> bool:
    """True for `application/json` and `application/<anything>+json`, parameters aside."""
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def decode_as(body: bytes, model: type[T]) -> T:
    content_type = request.headers.get("Content-Type")
    if not is_json(content_type):
        sent = f"not {content_type}" if content_type else "and say so in Content-Type"
        raise ApiProblem(UNSUPPORTED_MEDIA_TYPE, f"send application/json, {sent}")
    try:
        return msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_RE.search(message)
        pointer = json_pointer(match["path"]) if match else ""
        detail = message[: match.start()] if match else message
        raise ApiProblem(
            VALIDATION_FAILED,
            f"{pointer or 'the body'}: {detail}",
            [FieldError(pointer, detail)],
        ) from None
    except msgspec.DecodeError as exc:
        raise ApiProblem(MALFORMED_JSON, f"the body is not valid JSON: {exc}") from None


async def raw_body() -> bytes:
    """The request body as bytes (cached by Quart; bounded by MAX_CONTENT_LENGTH, else 413)."""
    data = await request.get_data(as_text=False)
    assert isinstance(data, bytes)
    return data
