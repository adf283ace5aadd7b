"""A fake bank: our accounts, their movements, and one statement file per account and day.

Why: reconciliation's second source of truth. The PSP says what it settled; the bank says what
actually arrived (settlement credits) and left (payout debits, and payouts returned). The
statement is a small CAMT.053-like CSV (ASCII, one record per line, ',' separated, no quoting,
every line ending in '\\n'):

    STATEMENT,<statement id>,<account>,<currency>,<date YYYY-MM-DD>,1
    OPENING,<signed balance>
    ENTRY,<entry ref>,<booked_at>,CRDT|DBIT,<amount>,<counterparty>,<remittance>
    ...
    CLOSING,<signed balance>,<entries>

with opening + credits - debits = closing, and each day's opening equal to the day before's
closing. Each account holds one currency. `statement_file` can corrupt the delivered copy with
the same hooks as the PSP's settlement files (simulator/corruption.py; no currency fault, an
account has one currency); the delivered statement stays internally consistent for content
faults (the closing is recomputed), so the mismatch shows against the clean copy or the ledger,
or as a break in balance continuity with the next day.

`parse_statement` never raises on bad input: a `Statement` or a `StatementRejected`.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
import re

import attrs

from engine.errors import InvalidAmount, UnknownCurrency
from engine.money import Money, format_amount, parse_amount
from simulator.corruption import (
    Applied,
    CorruptionPlan,
    altered_minor,
    corrupt_bytes,
    corrupt_rows,
)
from simulator.statement_text import (
    DAY_MS,
    date_of_ms,
    day_start_ms,
    format_booked_at,
    parse_booked_at,
    parse_date,
    transport_damage,
)

FORMAT_VERSION = "1"
_REF_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_TEXT_RE = re.compile(r"^[A-Za-z0-9_\- .:/]{0,140}$")
_COUNT_RE = re.compile(r"^(0|[1-9][0-9]{0,8})$")


class Direction(enum.StrEnum):
    CREDIT = "CRDT"  # money in
    DEBIT = "DBIT"  # money out


@attrs.frozen
class BankEntry:
    entry_ref: str
    booked_at_ms: int
    direction: Direction
    amount: Money  # positive
    counterparty: str
    remittance: str

    @property
    def signed_minor(self) -> int:
        return self.amount.minor if self.direction is Direction.CREDIT else -self.amount.minor


@attrs.define
class Account:
    account_id: str
    currency: str
    opening_minor: int
    entries: list[BankEntry] = attrs.Factory(list)


@attrs.frozen
class Statement:
    statement_id: str
    account_id: str
    currency: str
    date: dt.date
    opening_minor: int
    entries: tuple[BankEntry, ...]

    @property
    def closing_minor(self) -> int:
        return self.opening_minor + sum(e.signed_minor for e in self.entries)


class UnknownAccount(Exception):
    """The bank holds no account with this id (caller misuse)."""


class FakeBank:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self._seq = 0

    def open_account(self, account_id: str, currency: str, opening_minor: int = 0) -> Account:
        assert _REF_RE.match(account_id), account_id
        assert account_id not in self.accounts, f"account {account_id} exists"
        Money.zero(currency)  # refuses an unknown currency
        account = Account(account_id, currency, opening_minor)
        self.accounts[account_id] = account
        return account

    def _account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            raise UnknownAccount(account_id)
        return account

    def post(
        self,
        account_id: str,
        direction: Direction,
        amount: Money,
        *,
        at_ms: int,
        counterparty: str,
        remittance: str,
    ) -> BankEntry:
        """Book one movement; entries must arrive in time order (a bank books as it goes)."""
        account = self._account(account_id)
        assert amount.currency == account.currency, (amount, account.currency)
        assert amount.minor > 0, amount
        assert not account.entries or account.entries[-1].booked_at_ms <= at_ms
        assert _REF_RE.match(counterparty) and _TEXT_RE.match(remittance)
        self._seq += 1
        entry = BankEntry(
            f"bnk_{self._seq:010d}", at_ms, direction, amount, counterparty, remittance
        )
        account.entries.append(entry)
        return entry

    def balance_minor(self, account_id: str, before_ms: int | None = None) -> int:
        account = self._account(account_id)
        return account.opening_minor + sum(
            e.signed_minor
            for e in account.entries
            if before_ms is None or e.booked_at_ms < before_ms
        )

    def statement(self, account_id: str, date: dt.date) -> Statement:
        account = self._account(account_id)
        start_ms = day_start_ms(date)
        entries = tuple(
            e for e in account.entries if start_ms <= e.booked_at_ms < start_ms + DAY_MS
        )
        return Statement(
            f"{account_id}-{date:%Y%m%d}",
            account_id,
            account.currency,
            date,
            self.balance_minor(account_id, before_ms=start_ms),
            entries,
        )

    def statement_file(
        self,
        account_id: str,
        date: dt.date,
        rng: random.Random | None = None,
        plan: CorruptionPlan | None = None,
    ) -> tuple[bytes, bytes, list[Applied]]:
        """The day's statement: its clean bytes, the bytes delivered, and the faults that fired."""
        statement = self.statement(account_id, date)
        clean = render_statement(statement)
        if rng is None or plan is None:
            return clean, clean, []
        return (clean, *corrupt_statement(statement, rng, plan))


def _alter_amount(entry: BankEntry, rng: random.Random) -> BankEntry:
    amount = Money(altered_minor(entry.amount.minor, rng), entry.amount.currency)
    return attrs.evolve(entry, amount=amount)


def corrupt_statement(
    statement: Statement, rng: random.Random, plan: CorruptionPlan
) -> tuple[bytes, list[Applied]]:
    entries, applied = corrupt_rows(
        statement.entries,
        rng,
        plan,
        describe=lambda e: e.entry_ref,
        alter_amount=_alter_amount,
        alter_currency=None,
    )
    booked = attrs.evolve(statement, entries=tuple(entries))
    data, transport = corrupt_bytes(
        render_statement(booked),
        rng,
        plan,
        trailer_prefix=b"CLOSING,",
        unknown_line=f"NOTE,{statement.statement_id},interest_rate_change".encode("ascii"),
    )
    return data, applied + transport


def render_statement(statement: Statement) -> bytes:
    c = statement.currency
    lines = [
        f"STATEMENT,{statement.statement_id},{statement.account_id},{c},"
        f"{statement.date.isoformat()},{FORMAT_VERSION}",
        f"OPENING,{format_amount(statement.opening_minor, c)}",
    ]
    for e in statement.entries:
        lines.append(
            f"ENTRY,{e.entry_ref},{format_booked_at(e.booked_at_ms)},{e.direction.value},"
            f"{format_amount(e.amount.minor, c)},{e.counterparty},{e.remittance}"
        )
    lines.append(f"CLOSING,{format_amount(statement.closing_minor, c)},{len(statement.entries)}")
    return ("\n".join(lines) + "\n").encode("ascii")


class StatementProblem(enum.StrEnum):
    GARBAGE_BYTES = "garbage_bytes"
    TRUNCATED = "truncated"
    BAD_HEADER = "bad_header"
    UNKNOWN_ROW_TYPE = "unknown_row_type"
    MALFORMED_ENTRY = "malformed_entry"
    ENTRY_DATE_MISMATCH = "entry_date_mismatch"
    OUT_OF_ORDER = "out_of_order"
    MISSING_CLOSING = "missing_closing"
    BAD_CLOSING = "bad_closing"
    ENTRY_COUNT_MISMATCH = "entry_count_mismatch"
    BALANCE_MISMATCH = "balance_mismatch"  # opening + credits - debits != closing


@attrs.frozen
class StatementRejected:
    problem: StatementProblem
    line: int
    detail: str


class _Reject(Exception):
    def __init__(self, problem: StatementProblem, line: int, detail: str) -> None:
        super().__init__(detail)
        self.rejected = StatementRejected(problem, line, detail)


_TAGS = frozenset({"STATEMENT", "OPENING", "ENTRY", "CLOSING"})


def parse_statement(data: bytes) -> Statement | StatementRejected:
    """Read a statement strictly: every check of the format above, or a named rejection."""
    try:
        return _parse(data)
    except _Reject as reject:
        return reject.rejected


def _money(text: str, currency: str, line: int, *, signed: bool) -> Money:
    try:
        money = parse_amount(text, currency, allow_negative=signed, allow_zero=signed)
    except (InvalidAmount, UnknownCurrency) as exc:
        raise _Reject(StatementProblem.MALFORMED_ENTRY, line, str(exc)) from None
    if format_amount(money.minor, currency) != text:
        raise _Reject(StatementProblem.MALFORMED_ENTRY, line, f"{text!r}: exponent's decimals")
    return money


def _parse(data: bytes) -> Statement:
    damage = transport_damage(data)
    if damage is not None:
        name, line, detail = damage
        raise _Reject(StatementProblem(name), line, detail)
    lines = [line.split(",") for line in data.decode("ascii").split("\n")[:-1]]
    for number, fields in enumerate(lines, 1):
        if fields[0] not in _TAGS:
            raise _Reject(StatementProblem.UNKNOWN_ROW_TYPE, number, f"record {fields[0]!r}")
    head = lines[0]
    if len(head) != 6 or head[0] != "STATEMENT" or head[5] != FORMAT_VERSION:
        raise _Reject(StatementProblem.BAD_HEADER, 1, "STATEMENT,<id>,<account>,<cur>,<date>,1")
    _, statement_id, account_id, currency, date_text, _ = head
    date = parse_date(date_text)
    if date is None or not _REF_RE.match(statement_id) or not _REF_RE.match(account_id):
        raise _Reject(StatementProblem.BAD_HEADER, 1, "bad id, account or date")
    try:
        Money.zero(currency)
    except UnknownCurrency:
        raise _Reject(StatementProblem.BAD_HEADER, 1, f"currency {currency!r}") from None
    if len(lines) < 2 or lines[1][0] != "OPENING" or len(lines[1]) != 2:
        raise _Reject(StatementProblem.OUT_OF_ORDER, 2, "the second line must be OPENING")
    opening = _money(lines[1][1], currency, 2, signed=True)
    entries: list[BankEntry] = []
    closing: tuple[int, Money, int] | None = None
    for index in range(2, len(lines)):
        number, fields = index + 1, lines[index]
        if closing is not None:
            raise _Reject(StatementProblem.BAD_CLOSING, number, "a line after CLOSING")
        if fields[0] == "CLOSING":
            if len(fields) != 3 or not _COUNT_RE.match(fields[2]):
                raise _Reject(StatementProblem.BAD_CLOSING, number, "CLOSING,<balance>,<count>")
            closing = (number, _money(fields[1], currency, number, signed=True), int(fields[2]))
        elif fields[0] == "ENTRY":
            entries.append(_entry(fields, number, currency, date))
        else:
            raise _Reject(StatementProblem.OUT_OF_ORDER, number, f"a second {fields[0]}")
    if closing is None:
        raise _Reject(StatementProblem.MISSING_CLOSING, len(lines), "no CLOSING line")
    statement = Statement(statement_id, account_id, currency, date, opening.minor, tuple(entries))
    number, balance, count = closing
    if count != len(entries):
        raise _Reject(
            StatementProblem.ENTRY_COUNT_MISMATCH, number, f"says {count}, has {len(entries)}"
        )
    if balance.minor != statement.closing_minor:
        raise _Reject(StatementProblem.BALANCE_MISMATCH, number, "opening + entries != closing")
    return statement


def _entry(fields: list[str], number: int, currency: str, date: dt.date) -> BankEntry:
    if len(fields) != 7:
        raise _Reject(StatementProblem.MALFORMED_ENTRY, number, f"{len(fields)} fields, not 7")
    _, ref, booked_text, direction_text, amount_text, counterparty, remittance = fields
    booked_at_ms = parse_booked_at(booked_text)
    if booked_at_ms is None or not _REF_RE.match(ref) or not _REF_RE.match(counterparty):
        raise _Reject(StatementProblem.MALFORMED_ENTRY, number, "bad time or reference")
    if not _TEXT_RE.match(remittance):
        raise _Reject(StatementProblem.MALFORMED_ENTRY, number, "bad remittance text")
    try:
        direction = Direction(direction_text)
    except ValueError:
        raise _Reject(StatementProblem.MALFORMED_ENTRY, number, "CRDT or DBIT") from None
    amount = _money(amount_text, currency, number, signed=False)
    if date_of_ms(booked_at_ms) != date:
        raise _Reject(StatementProblem.ENTRY_DATE_MISMATCH, number, f"booked {booked_text}")
    return BankEntry(ref, booked_at_ms, direction, amount, counterparty, remittance)
