"""A seller's debt to the platform (`merchant_receivable:<id>`) and the rule that settles it.

Why debts first: money going back to a buyer (a refund's seller share, a lost dispute's
recovery) must never race the seller's payouts for the same wallet money. So the flow that
decides it (the order's refund actor) never touches the wallet: in its own unit of work, with
its state change, it records the seller's whole net share as a debt (Dr merchant_receivable,
`refund_entries(..., available_minor=0)`). Only the seller's merchant actor
(actors/merchant.py) moves wallet money out, one message at a time: it nets the debt against
the available balance by `settle_debt_entries`, in a unit of work of its own, and it does so
first in every unit that could pay money out or that brings money in (a payout's creation, a
payout voided or returned).

The rule is a function of two balances, not of a message, so it is idempotent by construction:
run twice (a retry after a crash, two requests racing), the second run finds the debt or the
balance already at zero and posts nothing. No key is needed to make it exactly-once, and a lost
request loses nothing: the debt stays on the books until the next settlement.

- receivable R > 0 and available A > 0: collect min(R, A): Dr merchant_payable / Cr
  merchant_receivable (the seller pays its debt from its wallet; what is left stays owed).
- R < 0 (a failed refund's reversal gave back a share already collected): release -R: Dr
  merchant_receivable / Cr merchant_payable (the seller gets its money back).
- otherwise nothing.
"""

from __future__ import annotations

from engine.ledger import (
    Entry,
    TransactionKind,
    merchant_payable,
    merchant_receivable,
)
from engine.money import Money


def settle_debt_entries(
    merchant_id: str, currency: str, receivable_minor: int, available_minor: int
) -> tuple[TransactionKind, tuple[Entry, ...]] | None:
    """The posting that nets a seller's debt against its available balance, or None."""
    assert available_minor >= 0, (merchant_id, currency, available_minor)
    if receivable_minor > 0 and available_minor > 0:
        amount = Money(min(receivable_minor, available_minor), currency)
        return TransactionKind.RECEIVABLE_COLLECTED, (
            Entry.debit(merchant_payable(merchant_id), amount),
            Entry.credit(merchant_receivable(merchant_id), amount),
        )
    if receivable_minor < 0:
        amount = Money(-receivable_minor, currency)
        return TransactionKind.RECEIVABLE_RELEASED, (
            Entry.debit(merchant_receivable(merchant_id), amount),
            Entry.credit(merchant_payable(merchant_id), amount),
        )
    return None
