"""The ledger's wire format: balances, transactions, account entries and the trial balance as
the API shows them (web/ledger.py), apart from web/wire.py's payments so each stays small.

Amounts are decimal strings in major units (never floats); a signed amount is a debit when
positive. An entry's id is `<transaction_id>:<entry_no>`, the cursor for `starting_after`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from engine.ledger import Entry, Transaction
from engine.money import format_amount
from engine.records import Balance
from web.wire import ENTRY_NO_MAX


class BalanceLine(msgspec.Struct):
    currency: str
    available: str
    reserved: str


class BalanceOut(msgspec.Struct):
    merchant_id: str
    balances: list[BalanceLine]
    object: Literal["balance"] = "balance"


class EntryOut(msgspec.Struct):
    account: str
    currency: str
    #: Signed decimal string: debits positive, credits negative.
    amount: str
    direction: Literal["debit", "credit"]


class TransactionOut(msgspec.Struct):
    id: str
    kind: str
    reference: str
    description: str
    created_at_ms: int
    entries: list[EntryOut]
    object: Literal["ledger_transaction"] = "ledger_transaction"


class AccountEntryOut(msgspec.Struct):
    id: str  # "<transaction_id>:<entry_no>", the cursor for `starting_after`
    transaction_id: str
    currency: str
    amount: str
    direction: Literal["debit", "credit"]


class AccountEntriesOut(msgspec.Struct):
    account: str
    data: list[AccountEntryOut]
    has_more: bool
    object: Literal["list"] = "list"


class TrialBalanceLine(msgspec.Struct):
    account: str
    currency: str
    balance: str


class TrialBalanceOut(msgspec.Struct):
    lines: list[TrialBalanceLine]
    #: Per currency, the sum of every account: zero when the books balance.
    totals: dict[str, str]
    balanced: bool
    object: Literal["trial_balance"] = "trial_balance"


def balance_out(merchant_id: str, balances: list[Balance]) -> BalanceOut:
    return BalanceOut(
        merchant_id=merchant_id,
        balances=[
            BalanceLine(
                currency=b.currency,
                available=format_amount(b.available_minor, b.currency),
                reserved=format_amount(b.reserved_minor, b.currency),
            )
            for b in balances
        ],
    )


def _direction(entry: Entry) -> Literal["debit", "credit"]:
    return "debit" if entry.amount_minor > 0 else "credit"


def transaction_out(txn: Transaction) -> TransactionOut:
    return TransactionOut(
        id=txn.txn_id,
        kind=txn.kind.value,
        reference=txn.reference,
        description=txn.description,
        created_at_ms=txn.created_at_ms,
        entries=[
            EntryOut(
                account=e.account,
                currency=e.currency,
                amount=format_amount(e.amount_minor, e.currency),
                direction=_direction(e),
            )
            for e in txn.entries
        ],
    )


def entry_id(txn_id: str, entry_no: int) -> str:
    return f"{txn_id}:{entry_no}"


def parse_entry_id(text: str) -> tuple[str, int] | None:
    """The (txn_id, entry_no) an entry id names; a bare transaction id means after all of its
    entries (the cursor's form before entries had ids). None when it is neither."""
    txn_id, colon, number = text.rpartition(":")
    if not colon:
        return (text, ENTRY_NO_MAX)
    if not txn_id or not (number.isascii() and number.isdigit()) or int(number) > ENTRY_NO_MAX:
        return None
    return (txn_id, int(number))


def account_entry_out(txn_id: str, entry_no: int, entry: Entry) -> AccountEntryOut:
    return AccountEntryOut(
        id=entry_id(txn_id, entry_no),
        transaction_id=txn_id,
        currency=entry.currency,
        amount=format_amount(entry.amount_minor, entry.currency),
        direction=_direction(entry),
    )


def trial_balance_out(sums: dict[tuple[str, str], int]) -> TrialBalanceOut:
    totals: dict[str, int] = {}
    for (_, currency), total in sums.items():
        totals[currency] = totals.get(currency, 0) + total
    return TrialBalanceOut(
        lines=[
            TrialBalanceLine(account=a, currency=c, balance=format_amount(v, c))
            for (a, c), v in sorted(sums.items())
        ],
        totals={c: format_amount(v, c) for c, v in sorted(totals.items())},
        balanced=all(v == 0 for v in totals.values()),
    )
