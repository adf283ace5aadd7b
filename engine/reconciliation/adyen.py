"""Adyen's Settlement Details Report (CSV, one row per settled movement of a batch).

Why: Adyen settles in numbered batches and lists each batch's movements in this report. Columns
are found by the names Adyen documents (`Psp Reference`, `Merchant Reference`, `Type`,
`Creation Date`, `TimeZone`, `Gross Currency`, `Gross Debit (GC)`, `Gross Credit (GC)`,
`Net Currency`, `Net Debit (NC)`, `Net Credit (NC)`, `Commission (NC)`, `Markup (NC)`,
`Scheme Fees (NC)`, `Interchange (NC)`, `Modification Reference`, `Modification Merchant
Reference`, `Batch Number`); unknown columns are ignored and a missing one is refused by name.
All are required, even those a row may leave empty: a reference falls back from one column to
another, so a column silently missing (a damaged header) would change what a row refers to.

Amounts are magnitudes: the column says the direction (a debit or a credit), so a movement
fills exactly one of its debit and credit columns. A payment movement (Settled, Refunded,
Chargeback...) has a gross and a net, and the report asserts net = gross - commission - markup -
scheme fees - interchange; a balance movement (Fee, MerchantPayout, corrections) has only a net.
Both are checked, as is the direction each record type implies. A report that converts currency
(gross and net currencies differ) is refused: the canonical line holds one currency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from engine.errors import InvalidInput
from engine.money import Money
from engine.reconciliation.line import Format, LineKind, Settlement, SettlementLine, settlement_of
from engine.reconciliation.text import Row, csv_bytes, decode, format_datetime, read_rows

FEE_COLUMNS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
REQUIRED_COLUMNS = (
    "Psp Reference",
    "Merchant Reference",
    "Type",
    "Creation Date",
    "TimeZone",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    *FEE_COLUMNS,
    "Modification Merchant Reference",
    "Batch Number",
)
WRITTEN_COLUMNS = (
    "Company Account",
    "Merchant Account",
    "Psp Reference",
    "Merchant Reference",
    "Payment Method",
    "Creation Date",
    "TimeZone",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Exchange Rate",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    *FEE_COLUMNS,
    "Modification Merchant Reference",
    "Batch Number",
)

#: Record types of payment movements: (kind, the sign gross must have).
PAYMENT_TYPES: Mapping[str, tuple[LineKind, int]] = {
    "Settled": (LineKind.CAPTURE, 1),
    "Refunded": (LineKind.REFUND, -1),
    "RefundedReversed": (LineKind.REFUND_REVERSAL, 1),
    "Chargeback": (LineKind.CHARGEBACK, -1),
    "SecondChargeback": (LineKind.CHARGEBACK, -1),
    "ChargebackReversed": (LineKind.CHARGEBACK_REVERSAL, 1),
}
#: Record types of balance movements (net only): (kind, the sign net must have, 0: either).
BALANCE_TYPES: Mapping[str, tuple[LineKind, int]] = {
    "Fee": (LineKind.FEE, 0),
    "MerchantPayout": (LineKind.PAYOUT, -1),
    "DepositCorrection": (LineKind.ADJUSTMENT, 0),
    "MiscCosts": (LineKind.ADJUSTMENT, 0),
    "InvoiceDeduction": (LineKind.ADJUSTMENT, 0),
    "Balancetransfer": (LineKind.ADJUSTMENT, 0),
    "ReserveAdjustment": (LineKind.ADJUSTMENT, 0),
}
_TYPE_OF_KIND = {
    LineKind.CAPTURE: "Settled",
    LineKind.REFUND: "Refunded",
    LineKind.REFUND_REVERSAL: "RefundedReversed",
    LineKind.CHARGEBACK: "Chargeback",
    LineKind.CHARGEBACK_REVERSAL: "ChargebackReversed",
    LineKind.FEE: "Fee",
    LineKind.PAYOUT: "MerchantPayout",
    LineKind.ADJUSTMENT: "MiscCosts",
}
_DIRECTIONS = {1: "credit (a positive amount)", -1: "debit (a negative amount)"}
_TYPES_BY_NAME = {name.lower(): name for name in (*PAYMENT_TYPES, *BALANCE_TYPES)}

#: The time zones Adyen writes in `TimeZone`, as minutes east of UTC. An abbreviation that
#: names two zones (CST, IST) is refused rather than guessed; "+01:00" style offsets are read.
TIME_ZONE_OFFSETS_MIN: Mapping[str, int] = {
    "UTC": 0,
    "GMT": 0,
    "WET": 0,
    "WEST": 60,
    "BST": 60,
    "CET": 60,
    "CEST": 120,
    "EET": 120,
    "EEST": 180,
    "MSK": 180,
    "SGT": 480,
    "HKT": 480,
    "JST": 540,
    "KST": 540,
    "AEST": 600,
    "AEDT": 660,
    "NZST": 720,
    "NZDT": 780,
    "EST": -300,
    "EDT": -240,
    "CDT": -300,
    "MST": -420,
    "MDT": -360,
    "PST": -480,
    "PDT": -420,
}
_OFFSET_RE = re.compile(r"^(?:UTC|GMT)?([+-])(\d{2}):?(\d{2})$")


def parse_adyen(data: bytes) -> Settlement:
    """Read an Adyen Settlement Details Report; raises ParseError locating the first problem."""
    lines: list[SettlementLine] = []
    seen: dict[tuple[str, str | None, str], int] = {}
    end_line = 1
    for row in read_rows(decode(data), REQUIRED_COLUMNS, "Adyen settlement details report"):
        end_line = row.line
        type_name = _TYPES_BY_NAME.get(row.text("Type").lower())
        if type_name is None:
            raise row.error(
                "Type",
                f"{row.text('Type')!r} is not a record type payengine reconciles "
                f"({', '.join(sorted(_TYPES_BY_NAME.values()))})",
            )
        line = _line(row, type_name)
        key = (type_name, line.psp_reference, line.reference)
        if key in seen:
            raise row.error(
                "Psp Reference", f"this {type_name} already appeared on line {seen[key]}"
            )
        seen[key] = row.line
        lines.append(line)
    return settlement_of(Format.ADYEN, lines, end_line=end_line)


def _line(row: Row, type_name: str) -> SettlementLine:
    payment = type_name in PAYMENT_TYPES
    kind, sign = PAYMENT_TYPES[type_name] if payment else BALANCE_TYPES[type_name]
    gross_currency = row.currency("Gross Currency") if row.text("Gross Currency") else None
    net_currency = row.currency("Net Currency") if row.text("Net Currency") else None
    currency = gross_currency or net_currency
    if currency is None:
        raise row.error("Net Currency", "is empty (and so is Gross Currency)")
    if gross_currency and net_currency and gross_currency != net_currency:
        raise row.error(
            "Net Currency",
            f"{net_currency} differs from Gross Currency {gross_currency}: "
            "a converted settlement is not supported",
        )
    net = _signed(row, "Net Debit (NC)", "Net Credit (NC)", currency)
    fee = Money.zero(currency)
    for name in FEE_COLUMNS:
        part = row.amount(name, currency)
        if part is not None:
            fee = _sum(row, name, fee, part)
    if payment:
        if gross_currency is None:
            raise row.error("Gross Currency", f"is empty, but a {type_name} has a gross")
        gross = _signed(row, "Gross Debit (GC)", "Gross Credit (GC)", currency)
        if gross.minor * sign <= 0:
            column = "Gross Debit (GC)" if gross.minor < 0 else "Gross Credit (GC)"
            raise row.error(column, f"a {type_name} is a {_DIRECTIONS[sign]}, got {gross}")
        if _sum(row, "Net Credit (NC)", gross, -fee) != net:
            raise row.error(
                "Net Credit (NC)" if net.minor >= 0 else "Net Debit (NC)",
                f"net {net} is not gross {gross} minus fees {fee}",
            )
    else:
        for name in ("Gross Debit (GC)", "Gross Credit (GC)", *FEE_COLUMNS):
            value = row.amount(name, currency)
            if value is not None and not value.is_zero():
                raise row.error(name, f"a {type_name} moves only the net; this must be empty")
        gross = net
        if sign and net.minor * sign <= 0:
            column = "Net Debit (NC)" if net.minor < 0 else "Net Credit (NC)"
            raise row.error(column, f"a {type_name} is a {_DIRECTIONS[sign]}, got {net}")
    merchant_reference = row.reference("Merchant Reference")
    if kind is LineKind.CAPTURE:
        reference = row.required_reference("Merchant Reference")
        psp_reference: str | None = row.required_reference("Psp Reference")
    elif payment:
        reference = _first(row, "Modification Merchant Reference", "Modification Reference")
        psp_reference = row.reference("Modification Reference") or row.required_reference(
            "Psp Reference"
        )
    else:
        # A payout or fee may name nothing but its batch, which then identifies it.
        reference = _first(
            row,
            "Merchant Reference",
            "Modification Merchant Reference",
            "Modification Reference",
            "Psp Reference",
            "Batch Number",
        )
        psp_reference = row.reference("Psp Reference")
        merchant_reference = None
    offset_min = _offset_min(row)
    return SettlementLine(
        source=Format.ADYEN,
        line_number=row.line,
        kind=kind,
        reference=reference,
        psp_reference=psp_reference,
        order_reference=merchant_reference,
        gross=gross,
        fee=fee,
        net=net,
        batch=row.reference("Batch Number"),
        booked_at_ms=row.required_datetime_ms("Creation Date", offset_min),
        value_at_ms=None,
    )


def _signed(row: Row, debit_column: str, credit_column: str, currency: str) -> Money:
    debit = row.amount(debit_column, currency)
    credit = row.amount(credit_column, currency)
    for name, value in ((debit_column, debit), (credit_column, credit)):
        if value is not None and value.minor < 0:
            raise row.error(name, f"holds {value}: the column gives the direction, not a sign")
    if debit is not None and credit is not None:
        raise row.error(credit_column, f"both {debit_column} and {credit_column} are filled")
    if credit is not None:
        return credit
    if debit is not None:
        return -debit
    raise row.error(credit_column, f"both {debit_column} and {credit_column} are empty")


def _sum(row: Row, column: str, left: Money, right: Money) -> Money:
    try:
        return left + right
    except InvalidInput as exc:
        raise row.error(column, str(exc)) from None


def _first(row: Row, *names: str) -> str:
    for name in names:
        value = row.reference(name)
        if value is not None:
            return value
    raise row.error(names[-1], f"is empty (and so is {', '.join(names[:-1])})")


def _offset_min(row: Row) -> int:
    zone = row.text("TimeZone")
    if zone.upper() in TIME_ZONE_OFFSETS_MIN:
        return TIME_ZONE_OFFSETS_MIN[zone.upper()]
    match = _OFFSET_RE.match(zone)
    if match is None or int(match[2]) > 23 or int(match[3]) > 59:
        raise row.error("TimeZone", f"{zone!r} is not a time zone payengine can place")
    minutes = int(match[2]) * 60 + int(match[3])
    return -minutes if match[1] == "-" else minutes


def write_adyen(
    lines: Iterable[SettlementLine],
    *,
    merchant_account: str = "PayengineMarketplace",
    newline: str = "\n",
    bom: bool = False,
) -> bytes:
    """An Adyen-shaped Settlement Details Report of `lines`, times written in UTC to the second.

    Refuses (InvalidInput) a line the report cannot carry or that its reader would refuse, so
    `parse_adyen` gives the lines back (times floored to the second).

    The whole fee goes in `Commission (NC)`; a payment line's `order_reference` goes in
    `Merchant Reference` and its own reference in `Modification Merchant Reference`.
    """
    rows: list[list[str]] = []
    written: set[tuple[str, str | None, str]] = set()
    for line in lines:
        type_name = _TYPE_OF_KIND.get(line.kind)
        if type_name is None:
            raise InvalidInput(f"an Adyen report has no line of kind {line.kind}")
        payment = type_name in PAYMENT_TYPES
        if payment and line.psp_reference is None:
            raise InvalidInput(f"an Adyen {type_name} needs its PSP reference")
        if line.kind is LineKind.CAPTURE and line.order_reference != line.reference:
            raise InvalidInput("an Adyen Settled line's reference is its order id")
        if not payment and (not line.fee.is_zero() or line.order_reference is not None):
            raise InvalidInput(f"an Adyen {type_name} has neither fee nor order reference")
        if line.value_at_ms is not None:
            raise InvalidInput("an Adyen settlement details report carries no value date")
        _, sign = PAYMENT_TYPES[type_name] if payment else BALANCE_TYPES[type_name]
        if sign and (line.gross if payment else line.net).minor * sign <= 0:
            raise InvalidInput(f"a {type_name} of {line.gross} has the wrong direction")
        key = (type_name, line.psp_reference, line.reference)
        if key in written:
            raise InvalidInput(f"a second {type_name} {line.reference!r} ({line.psp_reference})")
        written.add(key)
        modification = payment and line.kind is not LineKind.CAPTURE
        gross_debit, gross_credit = _columns(line.gross) if payment else ("", "")
        net_debit, net_credit = _columns(line.net)
        rows.append(
            [
                "PayengineCompany",
                merchant_account,
                line.psp_reference or "",
                (line.order_reference or "") if payment else line.reference,
                "visa" if payment else "",
                format_datetime(line.booked_at_ms),
                "UTC",
                type_name,
                (line.psp_reference or "") if modification else "",
                line.currency if payment else "",
                gross_debit,
                gross_credit,
                "1" if payment else "",
                line.currency,
                net_debit,
                net_credit,
                line.fee.to_wire() if payment else "",
                "",
                "",
                "",
                line.reference if modification else "",
                line.batch or "",
            ]
        )
    return csv_bytes(WRITTEN_COLUMNS, rows, newline=newline, bom=bom)


def _columns(amount: Money) -> tuple[str, str]:
    """(debit, credit) columns of a signed amount; zero is written as a credit."""
    if amount.minor < 0:
        return (-amount).to_wire(), ""
    return "", amount.to_wire()
