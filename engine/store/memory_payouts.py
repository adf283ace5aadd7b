"""The memory store's payouts, payout schedules and payout provider events (migration 0006).

Split from memory_unit.py like memory_refunds.py: the committed tables, and a unit of work's
overlay of them, validated and applied at its commit. Same rules as the tables: unique payout
id and creation key, optimistic versions, `in_flight` while the money is reserved, one schedule
per merchant, unique provider event ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

from engine.errors import DuplicateKey, NotFound, VersionConflict
from engine.ledger import Entry, Transaction, TransactionKind, merchant_payable
from engine.payouts import PAYOUT_IN_FLIGHT, PayoutSchedule, ScheduleInterval
from engine.records import Payout, evolve


def _page(ids: Iterable[str], limit: int, after: str | None) -> list[str]:
    assert 0 < limit <= 1000, f"limit {limit} is outside 1..1000"
    return sorted(i for i in ids if after is None or i > after)[:limit]


class PayoutTable:
    """The committed payouts (indexed by creation key, merchant, in-flight), schedules, events."""

    def __init__(self) -> None:
        self.rows: dict[str, Payout] = {}
        self.by_key: dict[str, str] = {}
        self.by_merchant: dict[str, list[str]] = defaultdict(list)
        self.in_flight: set[str] = set()
        self.schedules: dict[str, PayoutSchedule] = {}
        self.events: dict[str, tuple[str, str, int]] = {}

    def page(self, ids: Iterable[str], limit: int, after: str | None) -> list[Payout]:
        return [self.rows[i] for i in _page(ids, limit, after)]

    def schedules_due(self, limit: int, after: str | None) -> list[PayoutSchedule]:
        ids = (m for m, s in self.schedules.items() if s.interval is not ScheduleInterval.MANUAL)
        return [self.schedules[m] for m in _page(ids, limit, after)]


def pending_capture_minor(
    entries: Iterable[tuple[str, int, Entry]],
    txn_of: Callable[[str], Transaction],
    currency: str,
    since_ms: int,
) -> int:
    """Net credits of one wallet account's `entries` from captures posted at or after
    `since_ms`."""
    total = 0
    for txn_id, _, entry in entries:
        if entry.currency != currency:
            continue
        txn = txn_of(txn_id)
        if txn.kind is TransactionKind.CAPTURE and txn.created_at_ms >= since_ms:
            total -= entry.amount_minor
    return max(total, 0)


class PayoutOverlay:
    """One unit of work's payouts, schedules and events, validated and applied at its commit."""

    def __init__(self, table: PayoutTable) -> None:
        self._t = table
        self.rows: dict[str, Payout] = {}
        self.base: dict[str, int | None] = {}  # None: inserted by this unit
        self.schedules: dict[str, PayoutSchedule] = {}
        self.events: dict[str, tuple[str, str, int]] = {}

    def wrote(self) -> bool:
        return bool(self.rows or self.schedules or self.events)

    def insert(self, payout: Payout) -> None:
        if payout.payout_id in self._t.rows or payout.payout_id in self.rows:
            raise DuplicateKey("payouts.payout_id", payout.payout_id)
        if self.by_creation_key(payout.creation_key) is not None:
            raise DuplicateKey("payouts.creation_key", payout.creation_key)
        self.rows[payout.payout_id] = payout
        self.base[payout.payout_id] = None

    def update(self, payout: Payout) -> Payout:
        current = self.get(payout.payout_id)
        if current is None:
            raise NotFound(f"payout {payout.payout_id} does not exist")
        if current.version != payout.version:
            raise VersionConflict(
                f"payout {payout.payout_id} is at version {current.version}, not {payout.version}"
            )
        assert current.creation_key == payout.creation_key, "creation_key is immutable"
        assert current.merchant_id == payout.merchant_id, "merchant_id is immutable"
        updated = evolve(payout, version=payout.version + 1)
        self.base.setdefault(payout.payout_id, current.version)
        self.rows[payout.payout_id] = updated
        return updated

    def get(self, payout_id: str) -> Payout | None:
        return self.rows.get(payout_id) or self._t.rows.get(payout_id)

    def by_creation_key(self, creation_key: str) -> Payout | None:
        for payout in self.rows.values():
            if payout.creation_key == creation_key:
                return payout
        payout_id = self._t.by_key.get(creation_key)
        return None if payout_id is None else self.get(payout_id)

    def record_event(self, event_id: str, kind: str, payout_id: str, at_ms: int) -> None:
        if event_id in self._t.events or event_id in self.events:
            raise DuplicateKey("payout_events.event_id", event_id)
        self.events[event_id] = (kind, payout_id, at_ms)

    def schedule(self, merchant_id: str) -> PayoutSchedule | None:
        return self.schedules.get(merchant_id) or self._t.schedules.get(merchant_id)

    def validate(self) -> None:
        t = self._t
        for payout_id, base in self.base.items():
            committed = t.rows.get(payout_id)
            if base is None:
                if committed is not None:
                    raise DuplicateKey("payouts.payout_id", payout_id)
                if self.rows[payout_id].creation_key in t.by_key:
                    raise DuplicateKey("payouts.creation_key", self.rows[payout_id].creation_key)
            elif committed is None or committed.version != base:
                raise VersionConflict(f"payout {payout_id} changed since it was read")
        for event_id in self.events:
            if event_id in t.events:
                raise DuplicateKey("payout_events.event_id", event_id)

    def apply(self) -> None:
        t = self._t
        for payout_id, payout in self.rows.items():
            if self.base[payout_id] is None:
                t.by_key[payout.creation_key] = payout_id
                t.by_merchant[payout.merchant_id].append(payout_id)
            t.rows[payout_id] = payout
            if payout.status in PAYOUT_IN_FLIGHT:
                t.in_flight.add(payout_id)
            else:
                t.in_flight.discard(payout_id)
        t.schedules.update(self.schedules)
        t.events.update(self.events)


class PayoutUnitMixin:
    """The payout methods of the memory unit of work (engine/store/memory_unit.py)."""

    _payouts: PayoutOverlay
    _txns: list[Transaction]

    _committed_entries: Callable[[str], list[tuple[str, int, Entry]]]
    _committed_txn: Callable[[str], Transaction]

    async def insert_payout(self, payout: Payout) -> None:
        self._payouts.insert(payout)

    async def update_payout(self, payout: Payout) -> Payout:
        return self._payouts.update(payout)

    async def get_payout(self, payout_id: str) -> Payout | None:
        return self._payouts.get(payout_id)

    async def get_payout_by_creation_key(self, creation_key: str) -> Payout | None:
        return self._payouts.by_creation_key(creation_key)

    async def record_payout_event(
        self, event_id: str, kind: str, payout_id: str, received_at_ms: int
    ) -> None:
        self._payouts.record_event(event_id, kind, payout_id, received_at_ms)

    async def get_payout_schedule(self, merchant_id: str) -> PayoutSchedule | None:
        return self._payouts.schedule(merchant_id)

    async def put_payout_schedule(self, schedule: PayoutSchedule) -> None:
        self._payouts.schedules[schedule.merchant_id] = schedule

    async def pending_capture_minor(self, merchant_id: str, currency: str, since_ms: int) -> int:
        account = merchant_payable(merchant_id)
        mine = [
            (txn.txn_id, n, e)
            for txn in self._txns
            for n, e in enumerate(txn.entries)
            if e.account == account
        ]
        own = {txn.txn_id: txn for txn in self._txns}
        return pending_capture_minor(
            [*self._committed_entries(account), *mine],
            lambda i: own.get(i) or self._committed_txn(i),
            currency,
            since_ms,
        )


class PayoutReadsMixin:
    """The payout reads of the memory store's committed state (engine/store/memory.py)."""

    _payout_table: PayoutTable
    _cp: Callable[[], Awaitable[None]]

    async def get_payout(self, payout_id: str) -> Payout | None:
        await self._cp()
        return self._payout_table.rows.get(payout_id)

    async def list_payouts(
        self, merchant_id: str, limit: int, after: str | None = None
    ) -> list[Payout]:
        await self._cp()
        table = self._payout_table
        return table.page(table.by_merchant.get(merchant_id, []), limit, after)

    async def list_unfinished_payouts(self, limit: int, after: str | None = None) -> list[Payout]:
        await self._cp()
        return self._payout_table.page(list(self._payout_table.in_flight), limit, after)

    async def get_payout_schedule(self, merchant_id: str) -> PayoutSchedule | None:
        await self._cp()
        return self._payout_table.schedules.get(merchant_id)

    async def list_payout_schedules(
        self, limit: int, after: str | None = None
    ) -> list[PayoutSchedule]:
        await self._cp()
        return self._payout_table.schedules_due(limit, after)
