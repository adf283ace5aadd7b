"""Dates, times and damage checks of the fake bank's own statement text (simulator/bank.py).

What remains of the simulator's invented "v1" settlement format after issue 12 replaced it with
the real ones (engine/reconciliation): the fake PSP now writes Stripe or Adyen reports and the
PSP's deposits come as camt.053; only the payout provider's bank (bank.py, issue 13) still
writes its small CSV statement, with these helpers.
"""

from __future__ import annotations

import datetime as dt
import re

DAY_MS = 86_400_000
_UNIX = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BOOKED_AT_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$")
_NOT_PRINTABLE_RE = re.compile(rb"[^\x20-\x7e\n]")


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
