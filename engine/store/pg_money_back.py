"""The refund and dispute reads of committed state of the PostgreSQL store (postgres.py): money
going back to buyers, each one statement through the store's `_read` (one bridge crossing)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.records import Dispute, Refund
from engine.store import pg_disputes as dq
from engine.store import pg_refunds as rq


class PgMoneyBackReadsMixin:
    """Refunds and disputes as the API and recovery read them."""

    _read: Callable[..., Awaitable[Any]]

    async def get_refund(self, refund_id: str) -> Refund | None:
        found: Refund | None = await self._read(rq.get_refund, refund_id)
        return found

    async def list_refunds(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Refund]:
        found: list[Refund] = await self._read(rq.list_refunds, order_id, limit, after)
        return found

    async def list_unfinished_refunds(self, limit: int, after: str | None = None) -> list[Refund]:
        found: list[Refund] = await self._read(rq.list_unfinished_refunds, limit, after)
        return found

    async def get_dispute(self, dispute_id: str) -> Dispute | None:
        found: Dispute | None = await self._read(dq.get_dispute, dispute_id)
        return found

    async def list_disputes(
        self, limit: int, after: str | None = None, seller_id: str | None = None
    ) -> list[Dispute]:
        found: list[Dispute] = await self._read(dq.list_disputes, limit, after, seller_id)
        return found

    async def list_unfinished_disputes(self, limit: int, after: str | None = None) -> list[Dispute]:
        found: list[Dispute] = await self._read(dq.list_unfinished_disputes, limit, after)
        return found
