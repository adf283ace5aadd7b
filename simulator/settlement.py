"""The fake PSP's daily settlement file: its format, its fee model, a builder and a strict parser.

Why: every night a real PSP (Stripe's "payout reconciliation", Adyen's "settlement details
report") sends a file listing every money movement it booked that day, gross, fee and net, with
control totals. Reconciliation matches it line by line against the ledger, so the simulator must
produce one, and a parser must say precisely why a damaged one cannot be trusted.

The format (version 1): ASCII, one record per line, fields separated by ',' (RFC 4180 CSV
without quoting: no field may hold ',', '"' or a line break), every line ending in '\\n':

    HEADER,<file id>,<settlement date YYYY-MM-DD>,<currencies, space separated>,1
    COLUMNS,psp_reference,merchant_reference,type,booked_at,currency,gross,fee,net
    ROW,cap_0000000007,ord_01K...,capture,2026-01-01T00:12:34.567Z,USD,100.00,3.20,96.80
    ...
    TOTAL,<currency>,<rows>,<gross>,<fee>,<net>       (one per currency of the header, sorted)
    TRAILER,<rows>

Amounts are decimal strings in major units with exactly the currency's exponent ("1500" JPY,
"12.340" BHD); gross is signed (a refund or chargeback is negative), fee is what the PSP keeps,
net = gross - fee is what it pays out. Rows are booked on the settlement date (UTC).

`parse_settlement` never raises on bad input: it returns a `SettlementFile` or a
`SettlementRejected` naming the first problem (`SettlementProblem`) and its line.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Mapping, Sequence

import attrs

from engine.errors import UnknownCurrency
from engine.gateway import CaptureStatus, PspRefundStatus
from engine.money import (
    AMOUNT_MINOR_MAX,
    Money,
    currency_exponent,
    format_amount,
    round_half_even,
)
from simulator.fake_psp import FakePsp

FORMAT_VERSION = "1"
COLUMNS = (
    "psp_reference",
    "merchant_reference",
    "type",
    "booked_at",
    "currency",
    "gross",
    "fee",
    "net",
)
DAY_MS = 86_400_000
_UNIX = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: The most rows one file may hold; a bigger one is refused rather than read into memory.
ROWS_PER_FILE_MAX = 10_000_000

_REFERENCE_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_FILE_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BOOKED_AT_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$")
_COUNT_RE = re.compile(r"^(0|[1-9][0-9]{0,8})$")
_NOT_PRINTABLE_RE = re.compile(rb"[^\x20-\x7e\n]")
#: The canonical amount text per currency exponent: no '+', no leading zeros, exactly the
#: exponent's decimals (so "12.3" and "12.300" are refused for USD).
_AMOUNT_RE_BY_EXPONENT = {
    e: re.compile(r"^-?(0|[1-9][0-9]{0,17})" + (rf"\.[0-9]{{{e}}}$" if e else "$"))
    for e in range(5)
}


class MovementKind(enum.StrEnum):
    CAPTURE = "capture"
    REFUND = "refund"
    CHARGEBACK = "chargeback"


@attrs.frozen
class FeeSchedule:
    """The PSP's price list, in integers: a rate in basis points plus a fixed part per capture.

    The fee is rounded half to even to a whole minor unit and never exceeds the gross. Refunds
    cost nothing (the capture's fee is not returned); a chargeback costs a fixed dispute fee.
    """

    rate_bps: int = 290
    fixed_minor: Mapping[str, int] = attrs.field(
        factory=lambda: {"USD": 30, "EUR": 25, "GBP": 20, "JPY": 30, "BHD": 100}
    )
    chargeback_fee_minor: Mapping[str, int] = attrs.field(
        factory=lambda: {"USD": 1500, "EUR": 1500, "GBP": 1500, "JPY": 1500, "BHD": 5000}
    )

    def fee(self, kind: MovementKind, amount: Money) -> Money:
        """The fee on a movement of `amount` (positive), in the same currency."""
        assert amount.minor > 0, amount
        if kind is MovementKind.REFUND:
            return Money.zero(amount.currency)
        if kind is MovementKind.CHARGEBACK:
            return Money(self.chargeback_fee_minor.get(amount.currency, 0), amount.currency)
        variable = round_half_even(amount.minor * self.rate_bps, 10_000)
        fixed = self.fixed_minor.get(amount.currency, 0)
        return Money(min(amount.minor, variable + fixed), amount.currency)


@attrs.frozen
class Movement:
    """One thing the PSP booked: `amount` is positive; the kind says which way it moved."""

    psp_reference: str
    merchant_reference: str
    kind: MovementKind
    booked_at_ms: int
    amount: Money


@attrs.frozen
class SettlementRow:
    psp_reference: str
    merchant_reference: str
    kind: MovementKind
    booked_at_ms: int
    gross: Money
    fee: Money

    @property
    def net(self) -> Money:
        return self.gross - self.fee

    @classmethod
    def of_movement(cls, movement: Movement, fees: FeeSchedule) -> SettlementRow:
        sign = 1 if movement.kind is MovementKind.CAPTURE else -1
        gross = Money(sign * movement.amount.minor, movement.amount.currency)
        return cls(
            movement.psp_reference,
            movement.merchant_reference,
            movement.kind,
            movement.booked_at_ms,
            gross,
            fees.fee(movement.kind, movement.amount),
        )


@attrs.frozen
class CurrencyTotal:
    rows: int
    gross_minor: int
    fee_minor: int
    net_minor: int


@attrs.frozen
class SettlementFile:
    file_id: str
    settlement_date: dt.date
    rows: tuple[SettlementRow, ...]

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({row.gross.currency for row in self.rows}))

    def totals(self) -> dict[str, CurrencyTotal]:
        return totals_of(self.rows)


def totals_of(rows: Iterable[SettlementRow]) -> dict[str, CurrencyTotal]:
    """Control totals per currency, sorted by currency."""
    acc: dict[str, list[int]] = {}
    for row in rows:
        t = acc.setdefault(row.gross.currency, [0, 0, 0, 0])
        t[0] += 1
        t[1] += row.gross.minor
        t[2] += row.fee.minor
        t[3] += row.gross.minor - row.fee.minor
    return {c: CurrencyTotal(*acc[c]) for c in sorted(acc)}


# --- time --------------------------------------------------------------------------------------
def date_of_ms(ms: int) -> dt.date:
    return (_UNIX + dt.timedelta(milliseconds=ms)).date()


def day_start_ms(date: dt.date) -> int:
    return (date - _UNIX.date()).days * DAY_MS


def format_booked_at(ms: int) -> str:
    moment = _UNIX + dt.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_booked_at(text: str) -> int | None:
    match = _BOOKED_AT_RE.match(text)
    if match is None:
        return None
    date = parse_date(match[1])
    hours, minutes, seconds, millis = (int(match[i]) for i in range(2, 6))
    if date is None or hours > 23 or minutes > 59 or seconds > 59:
        return None
    return day_start_ms(date) + ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def parse_date(text: str) -> dt.date | None:
    if not _DATE_RE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


# --- building ------------------------------------------------------------------------------------
def file_id_for(date: dt.date, account: str = "fakepsp") -> str:
    return f"{account}-settlement-{date:%Y%m%d}"


def build_settlement(
    movements: Iterable[Movement], date: dt.date, fees: FeeSchedule | None = None
) -> SettlementFile:
    """The settlement file for `date`: every movement booked that UTC day, in booking order."""
    fees = fees or FeeSchedule()
    start_ms = day_start_ms(date)
    chosen = [m for m in movements if start_ms <= m.booked_at_ms < start_ms + DAY_MS]
    chosen.sort(key=lambda m: (m.booked_at_ms, m.psp_reference))
    rows = tuple(SettlementRow.of_movement(m, fees) for m in chosen)
    return SettlementFile(file_id_for(date), date, rows)


def movements_of_psp(psp: FakePsp) -> list[Movement]:
    """What the fake PSP's books show as money moved: every successful capture, and every
    succeeded refund on the day it succeeded (its merchant reference is the refund's
    idempotency key, our refund id, so each row matches one ledger refund). A pending, failed
    or refused refund moved no money and has no row."""
    moved = [
        Movement(c.capture_id, c.key, MovementKind.CAPTURE, c.captured_at_ms, c.amount)
        for c in psp.captures.values()
        if c.status is CaptureStatus.CAPTURED
    ]
    for r in psp.refunds.values():
        if r.status is PspRefundStatus.SUCCEEDED:
            assert r.refund_id is not None and r.settled_at_ms is not None, r
            moved.append(
                Movement(r.refund_id, r.key, MovementKind.REFUND, r.settled_at_ms, r.amount)
            )
    return moved


def render_row(row: SettlementRow) -> str:
    currency = row.gross.currency
    fields = (
        "ROW",
        row.psp_reference,
        row.merchant_reference,
        row.kind.value,
        format_booked_at(row.booked_at_ms),
        currency,
        format_amount(row.gross.minor, currency),
        format_amount(row.fee.minor, currency),
        format_amount(row.gross.minor - row.fee.minor, currency),
    )
    return ",".join(fields)


def render_settlement(file: SettlementFile) -> bytes:
    """The file's bytes; totals and the trailer are computed from the rows."""
    assert _FILE_ID_RE.match(file.file_id), file.file_id
    lines = [
        f"HEADER,{file.file_id},{file.settlement_date.isoformat()},"
        f"{' '.join(file.currencies)},{FORMAT_VERSION}",
        "COLUMNS," + ",".join(COLUMNS),
    ]
    for row in file.rows:
        assert _REFERENCE_RE.match(row.psp_reference), row
        assert _REFERENCE_RE.match(row.merchant_reference), row
        lines.append(render_row(row))
    for currency, t in file.totals().items():
        lines.append(
            f"TOTAL,{currency},{t.rows},{format_amount(t.gross_minor, currency)},"
            f"{format_amount(t.fee_minor, currency)},{format_amount(t.net_minor, currency)}"
        )
    lines.append(f"TRAILER,{len(file.rows)}")
    return ("\n".join(lines) + "\n").encode("ascii")


# --- parsing -------------------------------------------------------------------------------------
class SettlementProblem(enum.StrEnum):
    """Why a settlement file cannot be trusted; the parser names the first one it meets."""

    GARBAGE_BYTES = "garbage_bytes"  # a byte that is not printable ASCII or '\n'
    TRUNCATED = "truncated"  # empty, or the last line has no '\n'
    BAD_HEADER = "bad_header"
    BAD_COLUMNS = "bad_columns"
    UNKNOWN_ROW_TYPE = "unknown_row_type"  # a record tag this version does not know
    MALFORMED_ROW = "malformed_row"  # wrong field count, bad reference, time or amount
    UNKNOWN_MOVEMENT_TYPE = "unknown_movement_type"
    ROW_ARITHMETIC_MISMATCH = "row_arithmetic_mismatch"  # gross - fee != net
    CURRENCY_NOT_IN_HEADER = "currency_not_in_header"
    ROW_DATE_MISMATCH = "row_date_mismatch"  # booked on another day than the file's
    OUT_OF_ORDER = "out_of_order"  # records not in HEADER, COLUMNS, ROW*, TOTAL*, TRAILER order
    MISSING_TRAILER = "missing_trailer"
    BAD_TRAILER = "bad_trailer"  # malformed, or followed by more lines
    ROW_COUNT_MISMATCH = "row_count_mismatch"  # the trailer's or a total's count
    CONTROL_TOTAL_MISMATCH = "control_total_mismatch"
    TOO_MANY_ROWS = "too_many_rows"


@attrs.frozen
class SettlementRejected:
    problem: SettlementProblem
    line: int  # 1-based; 0 when the problem is the file as a whole
    detail: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.problem.value}: {where}{self.detail}"


class _Reject(Exception):
    def __init__(self, problem: SettlementProblem, line: int, detail: str) -> None:
        super().__init__(detail)
        self.rejected = SettlementRejected(problem, line, detail)


def parse_settlement(data: bytes) -> SettlementFile | SettlementRejected:
    """Read a settlement file strictly: every check of the format above, or a named rejection."""
    try:
        return _parse(data)
    except _Reject as reject:
        return reject.rejected


def _amount(text: str, currency: str, line: int, field: str) -> int:
    """The minor units of a canonical amount string (as `format_amount` writes it)."""
    pattern = _AMOUNT_RE_BY_EXPONENT.get(_EXPONENT_MEMO.get(currency, -1))
    if (
        pattern is None
        or not pattern.match(text)
        or (text.startswith("-0") and text.strip("-0.") == "")
    ):
        raise _Reject(
            SettlementProblem.MALFORMED_ROW,
            line,
            f"{field} {text!r} is not a plain decimal with exactly the {currency} decimals",
        )
    minor = int(text.replace(".", ""))
    if abs(minor) > AMOUNT_MINOR_MAX:
        raise _Reject(SettlementProblem.MALFORMED_ROW, line, f"{field} {text!r} out of range")
    return minor


def transport_damage(data: bytes) -> tuple[str, int, str] | None:
    """("garbage_bytes" | "truncated", line, detail) if the bytes were damaged on the way."""
    bad = _NOT_PRINTABLE_RE.search(data)
    if bad is not None:
        offset = bad.start()
        line = data.count(b"\n", 0, offset) + 1
        return "garbage_bytes", line, f"byte 0x{data[offset]:02x} at offset {offset}"
    if not data or not data.endswith(b"\n"):
        return "truncated", 0, "the file does not end with a line break"
    return None


#: currency -> exponent, filled as headers are read (a memo: the parser runs per row).
_EXPONENT_MEMO: dict[str, int] = {}


def _parse(data: bytes) -> SettlementFile:
    damage = transport_damage(data)
    if damage is not None:
        name, line, detail = damage
        raise _Reject(SettlementProblem(name), line, detail)
    lines = data.decode("ascii").split("\n")[:-1]
    header = lines[0].split(",")
    if len(header) != 5 or header[0] != "HEADER":
        if header[0] not in _TAGS:
            raise _Reject(SettlementProblem.UNKNOWN_ROW_TYPE, 1, f"record {header[0]!r}")
        raise _Reject(SettlementProblem.BAD_HEADER, 1, "the first line must be HEADER, 5 fields")
    _, file_id, date_text, currencies_text, version = header
    date = parse_date(date_text)
    currencies = tuple(currencies_text.split(" ")) if currencies_text else ()
    if not _FILE_ID_RE.match(file_id) or date is None or version != FORMAT_VERSION:
        raise _Reject(SettlementProblem.BAD_HEADER, 1, "bad file id, date or version")
    if list(currencies) != sorted(set(currencies)):
        raise _Reject(SettlementProblem.BAD_HEADER, 1, "currencies must be sorted and distinct")
    for currency in currencies:
        try:
            _EXPONENT_MEMO[currency] = currency_exponent(currency)
        except UnknownCurrency:
            raise _Reject(
                SettlementProblem.BAD_HEADER, 1, f"unknown currency {currency!r}"
            ) from None
    if len(lines) < 2:  # cut at a line end right after the header
        raise _Reject(SettlementProblem.MISSING_TRAILER, 1, "the file ends after its header")
    if lines[1] != "COLUMNS," + ",".join(COLUMNS):
        tag = lines[1].split(",")[0]
        if tag and tag not in _TAGS:
            raise _Reject(SettlementProblem.UNKNOWN_ROW_TYPE, 2, f"record {tag!r}")
        raise _Reject(SettlementProblem.BAD_COLUMNS, 2, "the second line must name the columns")
    rows: list[SettlementRow] = []
    stated: dict[str, tuple[int, CurrencyTotal]] = {}
    trailer_count: int | None = None
    stage = "ROW"
    for index in range(2, len(lines)):
        number = index + 1
        fields = lines[index].split(",")
        tag = fields[0]
        if tag not in _TAGS:
            raise _Reject(SettlementProblem.UNKNOWN_ROW_TYPE, number, f"record {tag!r}")
        if trailer_count is not None:
            raise _Reject(SettlementProblem.BAD_TRAILER, number, "a line after the trailer")
        if tag == "ROW":
            if stage != "ROW":
                raise _Reject(SettlementProblem.OUT_OF_ORDER, number, "a ROW after the totals")
            if len(rows) >= ROWS_PER_FILE_MAX:
                raise _Reject(SettlementProblem.TOO_MANY_ROWS, number, f"> {ROWS_PER_FILE_MAX}")
            rows.append(_row(fields, number, date, currencies))
        elif tag == "TOTAL":
            stage = "TOTAL"
            currency, total = _total(fields, number, currencies)
            if currency in stated:
                raise _Reject(SettlementProblem.CONTROL_TOTAL_MISMATCH, number, "repeated")
            stated[currency] = (number, total)
        elif tag == "TRAILER":
            if len(fields) != 2 or not _COUNT_RE.match(fields[1]):
                raise _Reject(SettlementProblem.BAD_TRAILER, number, "TRAILER,<row count>")
            trailer_count = int(fields[1])
            if trailer_count != len(rows):
                raise _Reject(
                    SettlementProblem.ROW_COUNT_MISMATCH,
                    number,
                    f"the trailer says {trailer_count} rows, the file has {len(rows)}",
                )
        else:  # HEADER or COLUMNS again
            raise _Reject(SettlementProblem.OUT_OF_ORDER, number, f"a second {tag}")
    if trailer_count is None:
        raise _Reject(SettlementProblem.MISSING_TRAILER, len(lines), "no TRAILER line")
    _check_totals(rows, stated, currencies)
    return SettlementFile(file_id, date, tuple(rows))


_TAGS = frozenset({"HEADER", "COLUMNS", "ROW", "TOTAL", "TRAILER"})


def _row(
    fields: Sequence[str], number: int, date: dt.date, currencies: tuple[str, ...]
) -> SettlementRow:
    if len(fields) != 1 + len(COLUMNS):
        raise _Reject(SettlementProblem.MALFORMED_ROW, number, f"{len(fields)} fields, expected 9")
    _, psp_ref, our_ref, kind_text, booked_text, currency, gross_t, fee_t, net_t = fields
    if not _REFERENCE_RE.match(psp_ref) or not _REFERENCE_RE.match(our_ref):
        raise _Reject(SettlementProblem.MALFORMED_ROW, number, "bad reference")
    try:
        kind = MovementKind(kind_text)
    except ValueError:
        raise _Reject(
            SettlementProblem.UNKNOWN_MOVEMENT_TYPE, number, f"type {kind_text!r}"
        ) from None
    booked_at_ms = parse_booked_at(booked_text)
    if booked_at_ms is None:
        raise _Reject(SettlementProblem.MALFORMED_ROW, number, f"booked_at {booked_text!r}")
    if currency not in currencies:
        raise _Reject(
            SettlementProblem.CURRENCY_NOT_IN_HEADER, number, f"{currency!r} not in the header"
        )
    gross = _amount(gross_t, currency, number, "gross")
    fee = _amount(fee_t, currency, number, "fee")
    net = _amount(net_t, currency, number, "net")
    if gross == 0 or fee < 0:
        raise _Reject(SettlementProblem.MALFORMED_ROW, number, "zero gross or negative fee")
    if (gross > 0) != (kind is MovementKind.CAPTURE):
        raise _Reject(SettlementProblem.MALFORMED_ROW, number, f"the sign of a {kind.value}")
    if gross - fee != net:
        raise _Reject(
            SettlementProblem.ROW_ARITHMETIC_MISMATCH,
            number,
            f"gross {gross_t} - fee {fee_t} != net {net_t}",
        )
    if date_of_ms(booked_at_ms) != date:
        raise _Reject(
            SettlementProblem.ROW_DATE_MISMATCH, number, f"booked {booked_text}, file {date}"
        )
    return SettlementRow(
        psp_ref, our_ref, kind, booked_at_ms, Money(gross, currency), Money(fee, currency)
    )


def _total(
    fields: Sequence[str], number: int, currencies: tuple[str, ...]
) -> tuple[str, CurrencyTotal]:
    if len(fields) != 6 or not _COUNT_RE.match(fields[2]):
        raise _Reject(SettlementProblem.CONTROL_TOTAL_MISMATCH, number, "TOTAL needs 6 fields")
    currency = fields[1]
    if currency not in currencies:
        raise _Reject(SettlementProblem.CURRENCY_NOT_IN_HEADER, number, f"TOTAL {currency!r}")
    amounts = [_amount(text, currency, number, "total") for text in fields[3:]]
    return currency, CurrencyTotal(int(fields[2]), *amounts)


def _check_totals(
    rows: Sequence[SettlementRow],
    stated: Mapping[str, tuple[int, CurrencyTotal]],
    currencies: tuple[str, ...],
) -> None:
    actual = totals_of(rows)
    for currency in currencies:
        if currency not in stated:
            raise _Reject(SettlementProblem.CONTROL_TOTAL_MISMATCH, 0, f"no TOTAL for {currency}")
        number, total = stated[currency]
        real = actual.get(currency, CurrencyTotal(0, 0, 0, 0))
        if total.rows != real.rows:
            raise _Reject(
                SettlementProblem.ROW_COUNT_MISMATCH,
                number,
                f"TOTAL {currency} says {total.rows} rows, the file has {real.rows}",
            )
        if total != real:
            raise _Reject(
                SettlementProblem.CONTROL_TOTAL_MISMATCH,
                number,
                f"TOTAL {currency} does not add up to its rows",
            )
