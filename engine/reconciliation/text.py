"""Reading real-world CSV reports: bytes to located fields, tolerant of form, strict on meaning.

Why: Stripe and Adyen reports arrive as UTF-8 with or without a byte order mark, with CRLF or
LF line ends, RFC 4180 quoting, and often without a final newline; none of that changes what
the file says, so all of it is accepted. Everything that could change what it says (bytes that
are not UTF-8, broken quoting, a row with more or fewer fields than the header, an amount with
more decimals than its currency has, a date that does not exist) is refused with its line and
column. Columns are found by header name, never by position, so extra columns are ignored.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator, Sequence

from engine.errors import InvalidInput
from engine.money import Money, currency_exponent, parse_amount
from engine.reconciliation.limits import (
    COLUMNS_MAX,
    FIELD_LENGTH_MAX,
    FILE_SIZE_BYTES_MAX,
    LINES_MAX,
)
from engine.reconciliation.line import REFERENCE_LENGTH_MAX, ParseError

BOM = b"\xef\xbb\xbf"
_UNIX = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def decode(data: bytes) -> str:
    """UTF-8 text of `data`, without a leading byte order mark; refuses anything else, located."""
    if len(data) > FILE_SIZE_BYTES_MAX:
        raise ParseError(1, 1, f"file is larger than {FILE_SIZE_BYTES_MAX} bytes")
    body = data[len(BOM) :] if data.startswith(BOM) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = body[: exc.start]
        line = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        column = len(before[line_start:].decode("utf-8", errors="replace")) + 1
        raise ParseError(line, column, f"not UTF-8 text ({exc.reason})") from None


def epoch_ms(moment: dt.datetime) -> int:
    """Integer epoch milliseconds of an aware datetime (no float on the way)."""
    return (moment - _UNIX) // _MS


class Row:
    """One data row of a CSV report: its fields by header name, every error located."""

    __slots__ = ("_columns", "_fields", "line")

    def __init__(self, line: int, fields: Sequence[str], columns: dict[str, int]) -> None:
        self.line = line
        self._fields = fields
        self._columns = columns

    def error(self, name: str, reason: str) -> ParseError:
        column = self._columns.get(name.lower(), 0) + 1
        return ParseError(self.line, column, f"{name}: {reason}")

    def text(self, name: str) -> str:
        """The field, stripped of surrounding spaces ("" when the column is absent)."""
        index = self._columns.get(name.lower())
        return "" if index is None else self._fields[index].strip()

    def reference(self, name: str) -> str | None:
        """An id or reference: None when empty; refused if it holds control characters."""
        value = self.text(name)
        if not value:
            return None
        if _CONTROL_RE.search(value):
            raise self.error(name, "holds a control character (a line break or tab?)")
        if len(value) > REFERENCE_LENGTH_MAX:
            raise self.error(name, f"is longer than {REFERENCE_LENGTH_MAX} characters")
        return value

    def required_reference(self, name: str) -> str:
        value = self.reference(name)
        if value is None:
            raise self.error(name, "is empty")
        return value

    def currency(self, name: str) -> str:
        code = self.text(name).upper()
        try:
            currency_exponent(code)
        except InvalidInput as exc:
            raise self.error(name, str(exc)) from None
        return code

    def amount(self, name: str, currency: str) -> Money | None:
        """A major-unit decimal ("25", "-0.5", "24.05"); None when empty."""
        value = self.text(name)
        if not value:
            return None
        try:
            return parse_amount(value, currency, allow_negative=True, allow_zero=True)
        except InvalidInput as exc:
            raise self.error(name, str(exc)) from None

    def required_amount(self, name: str, currency: str) -> Money:
        value = self.amount(name, currency)
        if value is None:
            raise self.error(name, "is empty")
        return value

    def datetime_ms(self, name: str, offset_minutes: int = 0) -> int | None:
        """'YYYY-MM-DD HH:MM:SS' at `offset_minutes` from UTC, as epoch ms; None when empty."""
        value = self.text(name)
        if not value:
            return None
        match = _DATETIME_RE.match(value)
        if match is None:
            raise self.error(name, f"{value!r} is not a date and time 'YYYY-MM-DD HH:MM:SS'")
        try:
            zone = dt.timezone(dt.timedelta(minutes=offset_minutes))
            year, month, day, hour, minute, second = (int(part) for part in match.groups())
            moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=zone)
            return epoch_ms(moment)
        except (ValueError, OverflowError) as exc:
            raise self.error(name, f"{value!r} is not a valid date and time ({exc})") from None

    def required_datetime_ms(self, name: str, offset_minutes: int = 0) -> int:
        value = self.datetime_ms(name, offset_minutes)
        if value is None:
            raise self.error(name, "is empty")
        return value


def read_rows(
    text: str, required: Sequence[str], what: str, optional: Sequence[str] = ()
) -> Iterator[Row]:
    """The data rows of a CSV report whose header holds every column of `required`.

    Header names match without regard to case or surrounding spaces; other columns are
    ignored, except one a single character away from an `optional` column we read: that is a
    damaged header, and reading the column as absent would change what the rows say.
    Blank lines carry nothing and are skipped.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    previous_line = 0
    columns: dict[str, int] | None = None
    width = 0
    count = 0
    try:
        for fields in reader:
            line = previous_line + 1
            previous_line = reader.line_num
            if not any(field.strip() for field in fields):
                continue
            for index, field in enumerate(fields):
                if len(field) > FIELD_LENGTH_MAX:
                    raise ParseError(
                        line, index + 1, f"field is longer than {FIELD_LENGTH_MAX} characters"
                    )
            if columns is None:
                columns = _header(line, fields, required, optional, what)
                width = len(fields)
                continue
            if len(fields) != width:
                raise ParseError(
                    line,
                    min(len(fields), width) + 1,
                    f"row has {len(fields)} fields but the header has {width}",
                )
            count += 1
            if count > LINES_MAX:
                raise ParseError(line, 1, f"file has more than {LINES_MAX} rows")
            yield Row(line, fields, columns)
    except csv.Error as exc:
        raise ParseError(reader.line_num or 1, 1, f"malformed CSV ({exc})") from None
    if columns is None:
        raise ParseError(1, 1, f"empty file: no {what} header")


def _header(
    line: int,
    fields: Sequence[str],
    required: Sequence[str],
    optional: Sequence[str],
    what: str,
) -> dict[str, int]:
    if len(fields) > COLUMNS_MAX:
        raise ParseError(line, COLUMNS_MAX + 1, f"header has more than {COLUMNS_MAX} columns")
    columns: dict[str, int] = {}
    for index, field in enumerate(fields):
        name = field.strip().lower()
        if name in columns:
            raise ParseError(line, index + 1, f"column {field.strip()!r} appears twice")
        columns[name] = index
    missing = [name for name in required if name.lower() not in columns]
    if missing:
        raise ParseError(
            line, len(fields) + 1, f"{what} header lacks required column {missing[0]!r}"
        )
    known = {name.lower() for name in (*required, *optional)}
    for name, index in columns.items():
        if name in known:
            continue
        for wanted in optional:
            if wanted.lower() not in columns and one_edit_apart(name, wanted.lower()):
                raise ParseError(
                    line,
                    index + 1,
                    f"column {fields[index].strip()!r} looks like a damaged {wanted!r}",
                )
    return columns


def one_edit_apart(left: str, right: str) -> bool:
    """Whether one character replaced, inserted or deleted turns `left` into `right`."""
    if abs(len(left) - len(right)) > 1 or left == right:
        return False
    if len(left) > len(right):
        left, right = right, left
    start = 0
    while start < len(left) and left[start] == right[start]:
        start += 1
    if len(left) == len(right):
        return left[start + 1 :] == right[start + 1 :]
    return left[start:] == right[start + 1 :]


def first_record(text: str) -> list[str] | None:
    """The first non-blank CSV record of `text` (for format detection), or None."""
    reader = csv.reader(io.StringIO(text[:65_536], newline=""))
    try:
        for fields in reader:
            if any(field.strip() for field in fields):
                return [field.strip().lower() for field in fields]
    except csv.Error:
        return None
    return None


# --- writing -----------------------------------------------------------------------------------
def format_datetime(ms: int) -> str:
    """'YYYY-MM-DD HH:MM:SS' (UTC) of epoch `ms`, floored to the second as the reports write it."""
    return (_UNIX + dt.timedelta(milliseconds=ms - ms % 1000)).strftime("%Y-%m-%d %H:%M:%S")


def trimmed_amount(amount: Money) -> str:
    """Major units with no trailing zero decimals, as Stripe writes them: "25", "-0.5", "24.05"."""
    text = amount.to_wire()
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def csv_bytes(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, newline: str, bom: bool
) -> bytes:
    """RFC 4180 CSV (quoted only where needed) in UTF-8, lines ended by `newline`."""
    if newline not in ("\n", "\r\n"):
        raise InvalidInput(f"newline must be '\\n' or '\\r\\n', got {newline!r}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    return (BOM if bom else b"") + out.getvalue().encode("utf-8")
