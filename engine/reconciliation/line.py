"""The canonical settlement line: what every PSP report and bank statement is read into.

Why: reconciliation matches money movements against the ledger, and it must not care whether
a movement came from a Stripe report, an Adyen report or a camt.053 bank statement. Each
format's parser turns its rows into `SettlementLine`s with the same meaning: signed amounts from
the platform's point of view (money in is positive), `gross - fee == net` always, integer minor
units always, and `reference` the key our ledger knows (the order id we sent with a capture,
the refund, dispute or payout id). `ParseError` is the one way a file is refused: it says the
line, the column and the reason, and nothing of the file is taken.
"""

from __future__ import annotations

import enum
import re

import attrs

from engine.errors import InvalidInput
from engine.money import Money

#: The longest reference (order, refund, payout, PSP or bank id) a line may carry.
REFERENCE_LENGTH_MAX = 256
#: What no reference may hold: a control character (a line break, a tab, a NUL).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class Format(enum.StrEnum):
    """A settlement file format that payengine reads and writes."""

    STRIPE = "stripe"
    ADYEN = "adyen"
    CAMT053 = "camt053"


class LineKind(enum.StrEnum):
    """What a money movement is; one word per concept (a Stripe 'charge' is a capture)."""

    CAPTURE = "capture"
    REFUND = "refund"
    REFUND_REVERSAL = "refund_reversal"
    CHARGEBACK = "chargeback"
    CHARGEBACK_REVERSAL = "chargeback_reversal"
    FEE = "fee"
    PAYOUT = "payout"
    PAYOUT_REVERSAL = "payout_reversal"
    DEPOSIT = "deposit"
    DEPOSIT_REVERSAL = "deposit_reversal"
    ADJUSTMENT = "adjustment"


class ParseError(InvalidInput):
    """A settlement file refused: `line` and `column` (both from 1) locate the first problem.

    For CSV formats the column is the field's position in the row (the message names the
    header); for XML it is the character column of the element that holds the problem.
    """

    def __init__(self, line: int, column: int, reason: str) -> None:
        super().__init__(f"line {line}, column {column}: {reason}")
        self.line = line
        self.column = column
        self.reason = reason

    def __reduce__(self) -> tuple[type[ParseError], tuple[int, int, str]]:
        return (type(self), (self.line, self.column, self.reason))


class UnsupportedFormat(ParseError):
    """The bytes are none of the formats payengine reads: not damaged, just not ours."""

    def __init__(self, detail: str) -> None:
        super().__init__(1, 1, f"unsupported format: {detail}")
        self.detail = detail

    def __reduce__(self) -> tuple[type[UnsupportedFormat], tuple[str]]:  # type: ignore[override]
        return (type(self), (self.detail,))


def _check_reference(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > REFERENCE_LENGTH_MAX
        or value != value.strip()
        or _CONTROL_RE.search(value)
    ):
        raise InvalidInput(
            f"{attribute.name} must be a non-empty string of at most {REFERENCE_LENGTH_MAX} "
            f"characters, without surrounding spaces or control characters, got {value!r}"
        )


def _check_optional_reference(
    instance: object, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is not None:
        _check_reference(instance, attribute, value)  # type: ignore[arg-type]


@attrs.frozen
class SettlementLine:
    """One money movement of a settlement file, in payengine's terms.

    `gross`, `fee` and `net` share one currency and satisfy `gross - fee == net`: gross is
    signed (a capture is positive, a refund, chargeback or payout negative), fee is what the
    PSP kept (positive is a cost), net is what moved on the balance. `reference` is the key to
    match on; `order_reference` ties a refund or chargeback to its order (and equals
    `reference` for a capture); `psp_reference` is the PSP's or bank's own id of the line.
    """

    source: Format
    line_number: int
    kind: LineKind
    reference: str = attrs.field(validator=_check_reference)
    psp_reference: str | None = attrs.field(validator=_check_optional_reference)
    order_reference: str | None = attrs.field(validator=_check_optional_reference)
    gross: Money
    fee: Money
    net: Money
    batch: str | None = attrs.field(validator=_check_optional_reference)
    booked_at_ms: int
    value_at_ms: int | None

    def __attrs_post_init__(self) -> None:
        currencies = {self.gross.currency, self.fee.currency, self.net.currency}
        if len(currencies) != 1:
            raise InvalidInput(f"gross, fee and net must share one currency, got {currencies}")
        if self.gross.minor - self.fee.minor != self.net.minor:
            raise InvalidInput(f"gross {self.gross} - fee {self.fee} != net {self.net}")
        if self.line_number < 1:
            raise InvalidInput(f"line_number must be >= 1, got {self.line_number}")

    @property
    def currency(self) -> str:
        return self.gross.currency


@attrs.frozen
class CurrencyTotals:
    """The sums of one currency's lines in a file: what a payout or a statement must add up to."""

    currency: str
    count: int
    gross: Money
    fee: Money
    net: Money


@attrs.frozen
class StatementFacts:
    """What a bank statement (camt.053 `Stmt`) asserts about itself besides its entries."""

    statement_id: str
    account: str
    currency: str
    opening: Money
    closing: Money
    created_at_ms: int | None
    entries_count: int


@attrs.frozen
class Settlement:
    """A parsed settlement file: its lines in file order and the facts of its header."""

    source: Format
    lines: tuple[SettlementLine, ...]
    totals: tuple[CurrencyTotals, ...]
    #: The batch (Adyen batch number, Stripe payout id) when every line names the same one.
    batch: str | None = None
    #: camt.053 only: one per `Stmt`, in file order.
    statements: tuple[StatementFacts, ...] = ()
    #: camt.053 only: the schema version the namespace names ("001.08"), if it names one.
    version: str | None = None


def totals_of(lines: tuple[SettlementLine, ...]) -> tuple[CurrencyTotals, ...]:
    """Per-currency sums of `lines`, sorted by currency code."""
    sums: dict[str, tuple[int, int, int, int]] = {}
    for line in lines:
        count, gross, fee, net = sums.get(line.currency, (0, 0, 0, 0))
        sums[line.currency] = (
            count + 1,
            gross + line.gross.minor,
            fee + line.fee.minor,
            net + line.net.minor,
        )
    return tuple(
        CurrencyTotals(code, count, Money(gross, code), Money(fee, code), Money(net, code))
        for code, (count, gross, fee, net) in sorted(sums.items())
    )


def settlement_of(
    source: Format,
    lines: list[SettlementLine],
    *,
    end_line: int,
    statements: tuple[StatementFacts, ...] = (),
    version: str | None = None,
) -> Settlement:
    """The `Settlement` of parsed `lines`; refused at `end_line` if a currency's sum overflows."""
    frozen = tuple(lines)
    try:
        totals = totals_of(frozen)
    except InvalidInput as exc:
        raise ParseError(end_line, 1, f"the file's totals cannot be money ({exc})") from None
    return Settlement(source, frozen, totals, common_batch(frozen), statements, version)


def common_batch(lines: tuple[SettlementLine, ...]) -> str | None:
    """The batch every line names, or None when they name none or several."""
    batches = {line.batch for line in lines}
    if len(batches) == 1:
        return next(iter(batches))
    return None
