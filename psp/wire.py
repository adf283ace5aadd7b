"""Stripe's request and error wire format, as the fake PSP reads and writes it.

Why it exists: the official `stripe` library (and every Stripe client) sends
`application/x-www-form-urlencoded` bodies with bracketed nested keys (`line_items[0][price_data]
[unit_amount]=1000`, `metadata[k]=v`, `expand[0]=payment_intent`), and expects every refusal as
Stripe's error object `{"error": {"type", "message", "param", "code"}}` with Stripe's status codes
(400 invalid request, 401 authentication, 402 card error, 404 missing resource, 409 idempotency
conflict, 503 api error). Pure functions: no I/O, so every rule is unit-tested.

Amounts are integers of minor units (Stripe's `unit_amount`, `amount`); currencies are ISO 4217
codes, lowercase as Stripe writes them (uppercase is accepted, as Stripe does). Money is never a
float: `"12.5"`, `"1e3"` or `"-5"` is refused with the parameter named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs

from engine.errors import UnknownCurrency
from engine.money import currency_exponent

#: The deepest bracket nesting a parameter name may have (Stripe's own are 4 deep at most).
PARAM_DEPTH_MAX = 5
#: The most parameters one request may carry.
PARAMS_MAX = 500
#: The most items a list parameter (`line_items`, `expand`) may have.
LIST_ITEMS_MAX = 100
#: The largest amount in minor units Stripe accepts (8 digits of a 2-decimal currency).
AMOUNT_MINOR_MAX = 99_999_999
#: Metadata, as Stripe limits it: keys, key length, value length.
METADATA_KEYS_MAX = 50
METADATA_KEY_LENGTH_MAX = 40
METADATA_VALUE_LENGTH_MAX = 500


@attrs.frozen
class StripeError(Exception):
    """A refusal, answered as Stripe's error object with `status`."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type: str = "invalid_request_error"
    extra: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        if self.code is not None:
            error["code"] = self.code
        error.update(self.extra)
        return {"error": error}


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    """Stripe's 404 for an unknown object: `No such checkout.session: 'cs_x'`."""
    return StripeError(404, f"No such {kind}: '{object_id}'", param, "resource_missing")


_NAME_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_INDEX_RE = re.compile(r"\[([^\[\]]*)\]")


def _split(name: str) -> list[str]:
    """`a[b][0]` -> ['a', 'b', '0']; StripeError for a malformed name."""
    match = _NAME_RE.match(name)
    if match is None:
        raise StripeError(400, f"Invalid parameter name: {name}", name)
    parts = [match.group(1), *_INDEX_RE.findall(match.group(2))]
    if len(parts) > PARAM_DEPTH_MAX:
        raise StripeError(400, f"Invalid parameter name: {name}", name)
    return parts


def _listify(node: Any) -> Any:
    """Dicts whose keys are all decimal indices (`expand[0]`, `line_items[1]`) become lists."""
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() or k == "" for k in items):
        if len(items) > LIST_ITEMS_MAX:
            raise StripeError(400, f"A list may have at most {LIST_ITEMS_MAX} items")
        return [items[k] for k in sorted(items, key=lambda k: int(k) if k else 0)]
    return items


def decode_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Form pairs (or query pairs) as Stripe's nested parameters."""
    root: dict[str, Any] = {}
    for count, (name, value) in enumerate(pairs):
        if count >= PARAMS_MAX:
            raise StripeError(400, f"A request may have at most {PARAMS_MAX} parameters")
        if "\x00" in name or "\x00" in value:
            raise StripeError(400, "Parameters may not contain NUL characters", name)
        parts = _split(name)
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise StripeError(400, f"Invalid parameter name: {name}", name)
            node = child
        leaf = parts[-1] if parts[-1] else str(len(node))  # `expand[]=x` appends
        if isinstance(node.get(leaf), dict):
            raise StripeError(400, f"Invalid parameter name: {name}", name)
        node[leaf] = value
    listed: dict[str, Any] = _listify(root) if root else {}
    if not isinstance(listed, dict):
        raise StripeError(400, "Parameters must be named")
    return listed


def text(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise StripeError(400, f"Missing required param: {name}.", name, "parameter_missing")
        return None
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {name}", name, "parameter_invalid_string")
    return value


def integer(raw: object, param: str, *, required: bool = True) -> int | None:
    """A positive integer of minor units (Stripe's `parameter_invalid_integer`)."""
    if raw is None or raw == "":
        if required:
            raise StripeError(400, f"Missing required param: {param}.", param, "parameter_missing")
        return None
    digits = raw[1:] if isinstance(raw, str) and raw.startswith("-") else raw
    if not isinstance(digits, str) or not digits.isascii() or not digits.isdigit():
        raise StripeError(400, f"Invalid integer: {raw}", param, "parameter_invalid_integer")
    if len(digits) > 12:
        message = f"Amount must be no more than {AMOUNT_MINOR_MAX}"
        raise StripeError(400, message, param, "amount_too_large")
    value = int(str(raw))
    if value < 1:
        message = f"Invalid positive integer: {raw}"
        raise StripeError(400, message, param, "parameter_invalid_integer")
    if value > AMOUNT_MINOR_MAX:
        message = f"Amount must be no more than {AMOUNT_MINOR_MAX}"
        raise StripeError(400, message, param, "amount_too_large")
    return value


def boolean(params: dict[str, Any], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise StripeError(400, f"Invalid boolean: {raw}", name, "parameter_invalid_boolean")
    return bool(raw == "true")


def currency(raw: object, param: str) -> str:
    """An ISO 4217 code (any case) as our uppercase code; StripeError if unknown."""
    if not isinstance(raw, str) or len(raw) != 3 or not raw.isascii() or not raw.isalpha():
        raise StripeError(400, f"Invalid currency: {raw}", param, "parameter_invalid_string")
    code = raw.upper()
    try:
        currency_exponent(code)
    except UnknownCurrency:
        raise StripeError(400, f"Invalid currency: {raw.lower()}", param) from None
    return code


def metadata(params: dict[str, Any], name: str = "metadata") -> dict[str, str]:
    raw = params.get(name)
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise StripeError(400, "Invalid metadata: must be a hash of strings", name)
    if len(raw) > METADATA_KEYS_MAX:
        raise StripeError(400, f"Metadata may have at most {METADATA_KEYS_MAX} keys", name)
    for key, value in raw.items():
        if len(key) > METADATA_KEY_LENGTH_MAX or len(value) > METADATA_VALUE_LENGTH_MAX:
            raise StripeError(400, f"Invalid metadata key or value: {key}", f"{name}[{key}]")
    return dict(raw)


def expand(params: dict[str, Any]) -> frozenset[str]:
    raw = params.get("expand")
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise StripeError(400, "Invalid array: expand", "expand")
    return frozenset(raw)
