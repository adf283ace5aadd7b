"""What a settlement line proves, as ledger entries (pure): the ledger's posting rules applied
to one line, under a business key that makes the posting happen once.

- A capture line: `engine.ledger.settlement_entries` (Dr bank_cash net / Dr psp_fees fee /
  Cr psp_clearing gross), under `(settlement, <order id>)`.
- A refund line: the PSP took the refund out of the payout: the same three accounts with the
  signs the line carries (Dr psp_clearing refund / Cr bank_cash), under `(settlement, <refund
  id>)`. The refund actor already moved the refund from refunds_clearing to psp_clearing.
- A dispute line: the PSP took the withdrawal out of the payout (Dr psp_clearing / Cr
  bank_cash) or paid a reversal into it (Dr bank_cash / Cr psp_clearing), under
  `(settlement, <dispute id>)` and `(settlement, <dispute id>:reversal)`. The dispute actor
  already moved the withdrawal from psp_clearing to chargebacks (and a win back).
- A bank's seller payout line posts nothing: the payout's own postings moved bank_cash.
- A fee line: Dr psp_fees / Cr psp_clearing (the fee's net, whichever way), under
  `(adjustment, fee:<PSP id>)`.

So, per currency, what the PSP captured less what it refunded always equals psp_clearing plus
what was settled (the oracle checks it).
"""

from __future__ import annotations

from engine.ledger import (
    BANK_CASH,
    PSP_CLEARING,
    PSP_FEES,
    Entry,
    TransactionKind,
    settlement_entries,
)
from engine.money import Money
from engine.reconciliation.line import LineKind, SettlementLine
from engine.reconciliation.match_out import settlement_key

#: The prefix of a settlement transaction's description: `<run id>: ...` names the run that
#: posted it, so a run repeated after a crash knows its own postings.
DESCRIPTION_SEPARATOR = ": "


def signed_settlement_entries(gross: Money, fee: Money) -> tuple[Entry, ...]:
    """bank_cash += net, psp_fees += fee, psp_clearing -= gross, whatever the signs (zero
    entries left out): the ledger's rule where it applies (0 <= fee <= gross), else its mirror."""
    if 0 <= fee.minor <= gross.minor:
        return settlement_entries(gross, fee)
    net = gross - fee
    entries = [
        Entry(account, minor, gross.currency)
        for account, minor in (
            (BANK_CASH, net.minor),
            (PSP_FEES, fee.minor),
            (PSP_CLEARING, -gross.minor),
        )
        if minor
    ]
    return tuple(entries)


def posting_of(line: SettlementLine) -> tuple[TransactionKind, str, tuple[Entry, ...]] | None:
    """(kind, reference, entries) of what `line` proves, or None if it posts nothing."""
    if line.kind in (
        LineKind.CAPTURE,
        LineKind.REFUND,
        LineKind.CHARGEBACK,
        LineKind.CHARGEBACK_REVERSAL,
    ):
        entries = signed_settlement_entries(line.gross, line.fee)
        key = settlement_key(line.kind, line.reference)
        return (TransactionKind.SETTLEMENT, key, entries) if entries else None
    if line.kind is LineKind.FEE:
        cost = -line.net.minor
        if cost == 0:
            return None
        entries = (
            Entry(PSP_FEES, cost, line.currency),
            Entry(PSP_CLEARING, -cost, line.currency),
        )
        return TransactionKind.ADJUSTMENT, f"fee:{line.psp_reference or line.reference}", entries
    return None


def posted_by(description: str) -> str:
    """The run id a settlement transaction's description names."""
    return description.split(DESCRIPTION_SEPARATOR, 1)[0]
