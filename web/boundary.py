"""What PostgreSQL cannot store is refused at the door, once, for every route.

Why here and not in each handler: PostgreSQL refuses a NUL character in any text value (and a
Python string holding an unpaired surrogate cannot even be encoded to UTF-8 for it), so a client
string that carried one reached the store and came back as a 500. Every client string that can
reach the store enters through one of three doors, and each is checked before any handler runs:

- the URL path (every path parameter): a path naming something no store can hold names nothing,
  so the answer is 404 `not-found`, whatever the route (or no route) would have been;
- the query string (names and values): 422 `validation-failed`, the pointer naming the parameter;
  a parameter the route does not document (its quart-schema querystring model) is refused the
  same way, as Stripe refuses unknown parameters, so a misspelt one is an error, not ignored;
- a JSON body (every string, keys included): 422 `validation-failed` with a JSON Pointer to it.

Headers never reach the store as text: the Idempotency-Key is printable ASCII or refused
(web/idempotency.py), the API key is hashed, X-Request-Id is used only when it is a short token.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart_schema.openapi import QUART_SCHEMA_HIDDEN_ATTRIBUTE
from quart_schema.validation import QUART_SCHEMA_QUERYSTRING_ATTRIBUTE

from web.problems import NOT_FOUND, VALIDATION_FAILED, ApiProblem, FieldError

#: The JSON escape of NUL: the only way a NUL can be inside a valid JSON document.
_NUL_ESCAPE = b"\\u0000"


def storable(text: str) -> bool:
    """True when PostgreSQL can store `text`: no NUL, and valid UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def first_unstorable(value: Any, pointer: str = "") -> str | None:
    """The JSON Pointer of the first string (key or value) in `value` that PostgreSQL refuses."""
    if isinstance(value, str):
        return None if storable(value) else pointer
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{pointer}/{_pointer_token(str(key))}"
            if not storable(str(key)):
                return here
            found = first_unstorable(item, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = first_unstorable(item, f"{pointer}/{index}")
            if found is not None:
                return found
    return None


def check_path(path: str) -> None:
    if not storable(path):
        raise ApiProblem(NOT_FOUND, "no resource is named by a URL holding a NUL character")


def check_query(args: Any) -> None:
    """`args` is the request's MultiDict of query parameters."""
    for name, value in args.items(multi=True):
        if not storable(name) or not storable(value):
            detail = "a query parameter may not hold a NUL character"
            field = f"/{_pointer_token(name) if storable(name) else ''}"
            raise ApiProblem(VALIDATION_FAILED, detail, [FieldError(field, detail)])


def check_query_names(args: Any, view: Any) -> None:
    """Refuse query parameters the view does not document; views hidden from the schema (docs
    pages, the PSP's webhook) are left alone."""
    if view is None or getattr(view, QUART_SCHEMA_HIDDEN_ATTRIBUTE, False):
        return
    model = getattr(view, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None)
    allowed = set(getattr(model, "__struct_fields__", ()))
    for name in args:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            detail = f"unknown query parameter {name!r} (this operation takes: {known})"
            field = f"/{_pointer_token(name)}"
            raise ApiProblem(VALIDATION_FAILED, detail, [FieldError(field, detail)])


def check_body(body: bytes) -> None:
    """Refuse a JSON body holding an unstorable string; anything else is the handler's to judge
    (a malformed body is 400 there, as before)."""
    if _NUL_ESCAPE not in body:
        return
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return
    pointer = first_unstorable(document)
    if pointer is not None:
        detail = "a string may not hold a NUL character"
        raise ApiProblem(
            VALIDATION_FAILED, f"{pointer or 'the body'}: {detail}", [FieldError(pointer, detail)]
        )
