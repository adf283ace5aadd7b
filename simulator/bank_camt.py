"""The fake bank's ISO 20022 camt.053 statements of the seller payouts it carries.

Why: reconciliation's second source of truth for money out. The payout provider pays a seller
from our account at the bank (simulator/payout_provider.py books a debit there, and a credit
when the seller's bank returns it); every night the bank sends a camt.053 per account and
currency, written by the project's own writer (engine/reconciliation/camt053_write.py), which
the reconciler reads back:

- a paid payout: a `DBIT` entry whose `EndToEndId` is our payout id (the provider's
  idempotency key, so our reference) and whose `AcctSvcrRef` is the bank's entry id;
- a returned payout: a `CRDT` entry with `RvslInd` true (read as `payout_reversal`), the same
  `EndToEndId`.

Opening balance = the account's balance before the window; closing = opening + entries.
"""

from __future__ import annotations

from engine.money import Money
from engine.reconciliation import (
    Format,
    LineKind,
    SettlementLine,
    StatementFacts,
    write_camt053,
)
from simulator.bank import BankEntry, Direction, FakeBank

#: The remittance words the payout provider books with (`<word> <payout id>`).
PAID_WORD = "payout"
RETURNED_WORD = "payout returned"


def payout_id_of(entry: BankEntry) -> str:
    """Our payout id, which the provider writes last in the remittance."""
    return entry.remittance.rsplit(" ", 1)[-1]


def _line(entry: BankEntry) -> SettlementLine:
    returned = entry.direction is Direction.CREDIT
    assert entry.remittance.startswith(RETURNED_WORD if returned else PAID_WORD), entry
    gross = Money(entry.signed_minor, entry.amount.currency)
    return SettlementLine(
        source=Format.CAMT053,
        line_number=1,
        kind=LineKind.PAYOUT_REVERSAL if returned else LineKind.PAYOUT,
        reference=payout_id_of(entry),
        psp_reference=entry.entry_ref,
        order_reference=None,
        gross=gross,
        fee=Money.zero(gross.currency),
        net=gross,
        batch=None,
        booked_at_ms=entry.booked_at_ms,
        value_at_ms=None,
    )


def payout_statements(
    bank: FakeBank, start_ms: int, end_ms: int, tag: str
) -> list[tuple[str, bytes]]:
    """(file id, camt.053 bytes) per account with a movement in [start_ms, end_ms)."""
    files: list[tuple[str, bytes]] = []
    for account_id, account in sorted(bank.accounts.items()):
        entries = [e for e in account.entries if start_ms <= e.booked_at_ms < end_ms]
        if not entries:
            continue
        lines = [_line(e) for e in entries]
        opening = bank.balance_minor(account_id, before_ms=start_ms)
        closing = opening + sum(e.signed_minor for e in entries)
        currency = account.currency
        facts = StatementFacts(
            statement_id=f"STMT-{account_id.upper()}-{tag}",
            account=f"PAYENGINE{account_id.upper().replace('_', '')}",
            currency=currency,
            opening=Money(opening, currency),
            closing=Money(closing, currency),
            created_at_ms=end_ms,
            entries_count=len(lines),
        )
        files.append((f"bank-{account_id}-{tag}", write_camt053(facts, lines)))
    return files
