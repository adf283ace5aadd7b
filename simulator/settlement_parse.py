"""The strict parser of the PSP's settlement file (the format: simulator/settlement.py).

Why apart from the builder: the builder writes what the fake PSP booked and trusts its input;
the parser reads bytes that came over the wire and trusts nothing. It checks every rule of the
format, in the order a reader meets them, and never raises on bad input: `parse_settlement`
returns a `SettlementFile` or a `SettlementRejected` naming the first problem
(`SettlementProblem`) and its line, so reconciliation can say precisely why a damaged file
cannot be trusted. The bank statement parser (simulator/bank.py) shares its transport checks
and its date and time readers.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping, Sequence

import attrs

from engine.errors import UnknownCurrency
from engine.money import AMOUNT_MINOR_MAX, Money, currency_exponent
from simulator.settlement import (
    COLUMNS,
    FILE_ID_RE,
    FORMAT_VERSION,
    REFERENCE_RE,
    CurrencyTotal,
    MovementKind,
    SettlementFile,
    SettlementRow,
    date_of_ms,
    day_start_ms,
    totals_of,
)

#: The most rows one file may hold; a bigger one is refused rather than read into memory.
ROWS_PER_FILE_MAX = 10_000_000

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


# --- time --------------------------------------------------------------------------------------
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
    if not FILE_ID_RE.match(file_id) or date is None or version != FORMAT_VERSION:
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
    if not REFERENCE_RE.match(psp_ref) or not REFERENCE_RE.match(our_ref):
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
