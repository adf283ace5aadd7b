"""The memory store's read of a seller's debt (`merchant_receivable:<id>`) inside a unit of work.

Kept apart from memory_unit.py so that module stays small: the debt is the account's committed
sum plus what this unit posted to it (engine/receivables.py says why the merchant actor needs it).
"""

from __future__ import annotations

from engine.ledger import Transaction, merchant_receivable
from engine.store.memory_tables import Tables


class ReceivableUnitMixin:
    """`receivable_minor` for MemoryUnitOfWork: committed sums plus the unit's own postings."""

    _t: Tables
    _txns: list[Transaction]

    async def receivable_minor(self, merchant_id: str, currency: str) -> int:
        account = merchant_receivable(merchant_id)
        total = self._t.sums.get((account, currency), 0)
        for txn in self._txns:
            for entry in txn.entries:
                if entry.account == account and entry.currency == currency:
                    total += entry.amount_minor
        return total
