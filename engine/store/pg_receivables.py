"""The PostgreSQL store's read of a seller's debt (`merchant_receivable:<id>`) in a unit of work.

One statement over `ledger_entries_account_idx` (migration 0001): a seller's receivable account
holds only its refunds', lost disputes' and collections' entries, so the sum stays small. No
migration: the debt is the ledger itself (engine/receivables.py says why the merchant actor
reads it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.ledger import merchant_receivable
from engine.store.pg_queries import Executor


async def receivable_minor(db: Executor, merchant_id: str, currency: str) -> int:
    total = await db.fetchval(
        "SELECT COALESCE(SUM(amount_minor), 0) FROM ledger_entries"
        " WHERE account = $1 AND currency = $2",
        merchant_receivable(merchant_id),
        currency,
    )
    return int(total)


class PgReceivableUnitMixin:
    """`receivable_minor` for the PostgreSQL unit of work (pg_unit.py): one statement."""

    _run: Callable[..., Awaitable[Any]]

    async def receivable_minor(self, merchant_id: str, currency: str) -> int:
        total: int = await self._run(receivable_minor, merchant_id, currency)
        return total
