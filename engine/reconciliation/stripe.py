"""Stripe's itemized balance reports (payout reconciliation, balance change from activity).

Why: Stripe settles by payout, and its itemized reports list every balance transaction behind
a payout, one CSV row each. The columns are found by the names Stripe documents
(`balance_transaction_id`, `created_utc`, `available_on_utc`, `currency`, `gross`, `fee`,
`net`, `reporting_category`, `source_id`, `automatic_payout_id`, and the metadata column
`payment_metadata[order_id]` that carries the order id payengine sends with each checkout);
every other column is ignored. Amounts are major units with as many decimals as Stripe chose,
never more than the currency has ("25", "-0.5", "24.05" USD); currencies are lower case.

What the file itself asserts is checked: `gross - fee == net` on every row, the sign that each
reporting category implies, and that no balance transaction appears twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.errors import InvalidInput
from engine.money import Money
from engine.reconciliation.line import (
    Format,
    LineKind,
    Settlement,
    SettlementLine,
    settlement_of,
)
from engine.reconciliation.text import (
    csv_bytes,
    decode,
    format_datetime,
    read_rows,
    trimmed_amount,
)

ORDER_ID_COLUMN = "payment_metadata[order_id]"
REQUIRED_COLUMNS = (
    "balance_transaction_id",
    "created_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
)
OPTIONAL_COLUMNS = ("available_on_utc", "automatic_payout_id", ORDER_ID_COLUMN)
WRITTEN_COLUMNS = (
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "automatic_payout_id",
    ORDER_ID_COLUMN,
)

#: reporting_category -> (kind, the sign gross must have: 1, -1, or 0 for either).
CATEGORIES: Mapping[str, tuple[LineKind, int]] = {
    "charge": (LineKind.CAPTURE, 1),
    "refund": (LineKind.REFUND, -1),
    "refund_failure": (LineKind.REFUND_REVERSAL, 1),
    "dispute": (LineKind.CHARGEBACK, -1),
    "dispute_reversal": (LineKind.CHARGEBACK_REVERSAL, 1),
    "fee": (LineKind.FEE, 0),
    "payout": (LineKind.PAYOUT, -1),
    "payout_reversal": (LineKind.PAYOUT_REVERSAL, 1),
    "adjustment": (LineKind.ADJUSTMENT, 0),
    "other_adjustment": (LineKind.ADJUSTMENT, 0),
}
_CATEGORY_OF_KIND = {
    kind: category for category, (kind, _) in CATEGORIES.items() if category != "other_adjustment"
}


def parse_stripe(data: bytes) -> Settlement:
    """Read a Stripe itemized report; raises ParseError locating the first problem."""
    lines: list[SettlementLine] = []
    seen: dict[str, int] = {}
    end_line = 1
    for row in read_rows(decode(data), REQUIRED_COLUMNS, "Stripe report", OPTIONAL_COLUMNS):
        end_line = row.line
        category = row.text("reporting_category").lower()
        if category not in CATEGORIES:
            raise row.error(
                "reporting_category",
                f"{category!r} is not a category payengine reconciles "
                f"({', '.join(sorted(CATEGORIES))})",
            )
        kind, sign = CATEGORIES[category]
        psp_reference = row.required_reference("balance_transaction_id")
        if psp_reference in seen:
            raise row.error(
                "balance_transaction_id",
                f"{psp_reference!r} already appeared on line {seen[psp_reference]}",
            )
        seen[psp_reference] = row.line
        currency = row.currency("currency")
        gross = row.required_amount("gross", currency)
        fee = row.required_amount("fee", currency)
        net = row.required_amount("net", currency)
        if gross.minor - fee.minor != net.minor:
            raise row.error("net", f"gross {gross} - fee {fee} is not net {net}")
        if sign and gross.minor * sign <= 0:
            expected = "positive" if sign > 0 else "negative"
            raise row.error("gross", f"a {category} must have a {expected} gross, got {gross}")
        order_reference = row.reference(ORDER_ID_COLUMN)
        if kind is LineKind.CAPTURE:
            if order_reference is None:
                raise row.error(ORDER_ID_COLUMN, "a charge must carry the order id we sent")
            reference = order_reference
        else:
            reference = row.required_reference("source_id")
        lines.append(
            SettlementLine(
                source=Format.STRIPE,
                line_number=row.line,
                kind=kind,
                reference=reference,
                psp_reference=psp_reference,
                order_reference=order_reference,
                gross=gross,
                fee=fee,
                net=net,
                batch=row.reference("automatic_payout_id"),
                booked_at_ms=row.required_datetime_ms("created_utc"),
                value_at_ms=row.datetime_ms("available_on_utc"),
            )
        )
    return settlement_of(Format.STRIPE, lines, end_line=end_line)


def write_stripe(
    lines: Iterable[SettlementLine],
    *,
    newline: str = "\n",
    bom: bool = False,
    trim_decimals: bool = True,
) -> bytes:
    """A Stripe-shaped itemized report of `lines` (what the fake PSP sends).

    Refuses (InvalidInput) a line the report cannot carry or that its reader would refuse, so
    `parse_stripe` gives the lines back. Times are written to the second, as Stripe does.
    `trim_decimals` writes amounts the way Stripe does ("25", "-0.5"); without it every amount
    has the currency's exponent.
    """
    rows: list[list[str]] = []
    written: set[str] = set()
    for line in lines:
        category = _CATEGORY_OF_KIND.get(line.kind)
        if category is None:
            raise InvalidInput(f"a Stripe report has no line of kind {line.kind}")
        if line.psp_reference is None or line.psp_reference in written:
            raise InvalidInput("each Stripe report line needs a balance transaction id of its own")
        written.add(line.psp_reference)
        if line.kind is LineKind.CAPTURE and line.order_reference != line.reference:
            raise InvalidInput("a Stripe charge's reference is its order id (order_reference)")
        _, sign = CATEGORIES[category]
        if sign and line.gross.minor * sign <= 0:
            raise InvalidInput(f"a {category} of gross {line.gross} has the wrong sign")
        amount = trimmed_amount if trim_decimals else Money.to_wire
        rows.append(
            [
                line.psp_reference,
                format_datetime(line.booked_at_ms),
                "" if line.value_at_ms is None else format_datetime(line.value_at_ms),
                line.currency.lower(),
                amount(line.gross),
                amount(line.fee),
                amount(line.net),
                category,
                line.psp_reference if line.kind is LineKind.CAPTURE else line.reference,
                "",
                line.batch or "",
                line.order_reference or "",
            ]
        )
    return csv_bytes(WRITTEN_COLUMNS, rows, newline=newline, bom=bom)
