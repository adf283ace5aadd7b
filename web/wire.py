"""The wire format: msgspec models for every request and response body, and the conversions
between them and the engine's records.

Why msgspec and named constructors: the wire never reaches the domain as a dict. A request body
is decoded straight into a `CreatePaymentIn` (unknown fields refused, a JSON number where an
amount string belongs refused with the field's pointer), then `to_command` turns it into the
engine's `CreateCheckout`, applying the money rules (`parse_amount`: decimal strings only, no
more decimals than the currency has). Responses are built from records by `*_out` functions.
The same models feed /openapi.json through quart-schema, so the docs cannot drift.

Amounts on the wire are decimal strings in major units plus a currency, as everywhere in
payengine; times are integer milliseconds since the Unix epoch (`*_at_ms`).
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import iso4217
import msgspec

from actors.service import CreateCheckout, OrderLine, PaymentView
from engine.access import SCOPE_MERCHANT_ID_LENGTH_MAX
from engine.errors import InvalidInput
from engine.money import AMOUNT_MINOR_MAX, currency_exponent, format_amount, parse_amount
from engine.records import DeadLetter
from web.problems import VALIDATION_FAILED, ApiProblem, FieldError

#: External ids (checkout, buyer, seller) are printable ASCII without surrounding spaces. The
#: engine asks for `str.isprintable()` and no surrounding whitespace, which no portable regex
#: can state; this narrower rule can, so the schema says exactly what the server accepts.
EXTERNAL_ID_PATTERN = "^[!-~]([ -~]*[!-~])?$"
ExternalId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=EXTERNAL_ID_PATTERN,
        description="Printable ASCII, no leading or trailing space.",
    ),
]
#: A seller's id names its ledger accounts (`merchant_payable:<id>`), so it holds no ':'.
SELLER_ID_PATTERN = "^[!-9;-~]([ -9;-~]*[!-9;-~])?$"
SellerId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=SELLER_ID_PATTERN,
        description="Printable ASCII without ':' (it separates an account from its merchant).",
    ),
]


def _known_currencies() -> dict[str, str]:
    """Every ISO 4217 code whose exponent payengine knows (funds and metals have none)."""
    known = {}
    for currency in iso4217.Currency:
        try:
            currency_exponent(currency.code)
        except InvalidInput:
            continue
        known[currency.code] = currency.code
    return known


#: The currencies the server accepts, as an enum so that the schema lists them exactly.
Currency = enum.StrEnum("Currency", _known_currencies())  # type: ignore[misc]
#: A positive decimal string in major units with at most 9 integer digits and 4 decimals (no
#: more than the currency has, which the schema cannot tie to the currency): 50 orders of the
#: largest amount stay below AMOUNT_MINOR_MAX whatever the exponent, so per-field rules are
#: the whole story but for the currency's decimals. Never a JSON number.
AMOUNT_PATTERN = (
    r"^(0\.(?:[1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9])"
    r"|[1-9][0-9]{0,8}(\.[0-9]{1,4})?)$"
)
Amount = Annotated[
    str,
    msgspec.Meta(
        pattern=AMOUNT_PATTERN,
        max_length=14,
        description="A positive decimal string in major units; never a JSON number.",
        examples=["12.34"],
    ),
]
ORDERS_PER_PAYMENT_MAX = 50
#: 9 integer digits and at most 4 decimals: the largest cart still fits the amount limit.
assert ORDERS_PER_PAYMENT_MAX * 10**9 * 10**4 <= AMOUNT_MINOR_MAX
#: An absolute http(s) URL with a host, printable ASCII only (no space, CR, LF or other control
#: character: it ends up in a Location header and on the PSP's page). `url_problem` adds what a
#: Python regex cannot say as JSON Schema means it: `$` is the end of the text.
URL_PATTERN = r"^https?://([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?([/?#][!-~]*)?$"
URL_LENGTH_MAX = 2048
Url = Annotated[
    str,
    msgspec.Meta(
        pattern=URL_PATTERN,
        max_length=URL_LENGTH_MAX,
        description="An absolute http or https URL with a host; printable ASCII only.",
        examples=["https://shop.example/thanks"],
    ),
]
#: The `?limit=` of every list, as the server enforces it (web/responses.py: page_limit).
PageLimit = Annotated[int, msgspec.Meta(ge=1, le=100)]
#: The `?starting_after=` cursor: an id from the previous page.
Cursor = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern="^[^\x00]+$")]


#: A merchant id in a path: a seller id as the ledger and the `merchant:<id>` scope know it.
MERCHANT_ID_PATTERN = "^[^\x00/:]+$"


def check_merchant_id(merchant_id: str) -> None:
    """422 unless `merchant_id` could be a seller's id (1..128 characters, no ':')."""
    if not 1 <= len(merchant_id) <= SCOPE_MERCHANT_ID_LENGTH_MAX or ":" in merchant_id:
        detail = f"a merchant id has 1..{SCOPE_MERCHANT_ID_LENGTH_MAX} characters and no ':'"
        raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/merchant_id", detail)])


def url_problem(url: str, pointer: str) -> FieldError | None:
    """The broken rule of a URL that passed `URL_PATTERN` under Python's `$` (which also
    matches before a final newline), else None."""
    if "\n" in url:
        return FieldError(pointer, "a URL may not contain a line break")
    return None


# --- requests ----------------------------------------------------------------------------------


#: Entries per transaction are numbered 0.. in a PostgreSQL smallint.
ENTRY_NO_MAX = 32_767


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    seller_id: SellerId
    amount: Amount
    #: Optional; when given it must equal the payment's currency (one currency per checkout).
    currency: Currency | None = None


class CreatePaymentIn(msgspec.Struct, forbid_unknown_fields=True):
    checkout_id: ExternalId
    buyer: ExternalId
    currency: Currency
    orders: Annotated[list[OrderIn], msgspec.Meta(min_length=1, max_length=ORDERS_PER_PAYMENT_MAX)]
    return_url: Url | None = None


class ListQuery(msgspec.Struct):
    limit: PageLimit | None = None
    starting_after: Cursor | None = None


#: An entry id (`<transaction_id>:<entry_no>`, entry_no 0..ENTRY_NO_MAX) or a bare transaction
#: id, exactly as `parse_entry_id` accepts it.
ENTRY_CURSOR_PATTERN = (
    "^([^\x00:]+|[^\x00]+:0*([0-9]{1,4}|[0-2][0-9]{4}|3[01][0-9]{3}|32[0-6][0-9]{2}"
    "|327[0-5][0-9]|3276[0-7]))$"
)
EntryCursor = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=ENTRY_CURSOR_PATTERN)
]


class EntriesQuery(msgspec.Struct):
    limit: PageLimit | None = None
    starting_after: EntryCursor | None = None


class PageQuery(msgspec.Struct):
    limit: PageLimit | None = None


# --- responses ---------------------------------------------------------------------------------


class OrderOut(msgspec.Struct):
    id: str
    seller_id: str
    amount: str
    currency: str
    status: str
    failure_reason: str | None


class PaymentOut(msgspec.Struct):
    id: str
    checkout_id: str
    buyer: str
    amount: str
    currency: str
    status: str
    hosted_url: str | None
    return_url: str | None
    failure_reason: str | None
    created_at_ms: int
    expires_at_ms: int
    orders: list[OrderOut]
    object: Literal["payment"] = "payment"


class PaymentListOut(msgspec.Struct):
    data: list[PaymentOut]
    has_more: bool
    object: Literal["list"] = "list"


class DeadLetterOut(msgspec.Struct):
    id: str
    subscriber: str
    message_id: str
    topic: str
    key: str
    attempts: int
    last_error: str
    dead_at_ms: int


class DeadLetterListOut(msgspec.Struct):
    data: list[DeadLetterOut]
    object: Literal["list"] = "list"


class ReplayOut(msgspec.Struct):
    id: str
    replayed: bool


class WebhookAck(msgspec.Struct):
    received: bool
    outcome: str


class HealthOut(msgspec.Struct):
    status: str
    problems: list[str] = msgspec.field(default_factory=list)


# --- conversions -------------------------------------------------------------------------------


def to_command(body: CreatePaymentIn) -> CreateCheckout:
    """The engine's command for a decoded body; ApiProblem listing every broken money rule."""
    errors: list[FieldError] = []
    lines: list[OrderLine] = []
    currency = str(body.currency.value)
    if body.return_url is not None:
        broken = url_problem(body.return_url, "/return_url")
        if broken is not None:
            errors.append(broken)
    for index, order in enumerate(body.orders):
        if order.currency is not None and order.currency != body.currency:
            errors.append(
                FieldError(
                    f"/orders/{index}/currency",
                    f"order currency {order.currency.value} differs from the payment's "
                    f"{currency}; one checkout holds one currency",
                )
            )
            continue
        try:
            money = parse_amount(order.amount, currency)
        except InvalidInput as exc:
            errors.append(FieldError(f"/orders/{index}/amount", str(exc)))
            continue
        lines.append(OrderLine(order.seller_id, money.minor))
    if errors:
        raise ApiProblem(VALIDATION_FAILED, errors[0].detail, errors)
    return CreateCheckout(
        checkout_id=body.checkout_id,
        buyer_id=body.buyer,
        currency=currency,
        orders=tuple(lines),
        return_url=body.return_url,
    )


def payment_out(view: PaymentView) -> PaymentOut:
    p = view.payment
    return PaymentOut(
        id=p.payment_id,
        checkout_id=p.checkout_id,
        buyer=p.buyer_id,
        amount=format_amount(p.amount_minor, p.currency),
        currency=p.currency,
        status=p.status.value.lower(),
        hosted_url=p.hosted_url,
        return_url=p.return_url,
        failure_reason=p.failure_reason,
        created_at_ms=p.created_at_ms,
        expires_at_ms=p.expires_at_ms,
        orders=[
            OrderOut(
                id=o.order_id,
                seller_id=o.seller_id,
                amount=format_amount(o.amount_minor, o.currency),
                currency=o.currency,
                status=o.status.value.lower(),
                failure_reason=o.failure_reason,
            )
            for o in view.orders
        ],
    )


def dead_letter_id(subscriber: str, message_id: str) -> str:
    """One opaque id for a (subscriber, message) pair; message ids never hold ':'."""
    return f"{subscriber}:{message_id}"


def dead_letter_out(letter: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=dead_letter_id(letter.subscriber, letter.message.message_id),
        subscriber=letter.subscriber,
        message_id=letter.message.message_id,
        topic=letter.message.topic,
        key=letter.message.key,
        attempts=letter.attempts,
        last_error=letter.last_error,
        dead_at_ms=letter.dead_at_ms,
    )
