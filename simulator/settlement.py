"""The fake PSP's daily settlement file: its format, its fee model, its records and its builder.

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

This module writes files (`build_settlement`, `render_settlement`) from what the fake PSP
booked; the strict parser that reads them back, and names the first problem of a damaged one,
is simulator/settlement_parse.py.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Mapping

import attrs

from engine.gateway import CaptureStatus, PspRefundStatus
from engine.money import Money, format_amount, round_half_even
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

#: A psp or merchant reference, and a file id: what a field may hold (the parser checks both).
REFERENCE_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
FILE_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


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
    assert FILE_ID_RE.match(file.file_id), file.file_id
    lines = [
        f"HEADER,{file.file_id},{file.settlement_date.isoformat()},"
        f"{' '.join(file.currencies)},{FORMAT_VERSION}",
        "COLUMNS," + ",".join(COLUMNS),
    ]
    for row in file.rows:
        assert REFERENCE_RE.match(row.psp_reference), row
        assert REFERENCE_RE.match(row.merchant_reference), row
        lines.append(render_row(row))
    for currency, t in file.totals().items():
        lines.append(
            f"TOTAL,{currency},{t.rows},{format_amount(t.gross_minor, currency)},"
            f"{format_amount(t.fee_minor, currency)},{format_amount(t.net_minor, currency)}"
        )
    lines.append(f"TRAILER,{len(file.rows)}")
    return ("\n".join(lines) + "\n").encode("ascii")
