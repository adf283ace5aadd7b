"""The PostgreSQL store's payout statements (migration 0006), asyncio-native like pg_refunds.py.

Same discipline: an expected outcome (a duplicate payout id, creation key or event id, a lost
version race) is found without a failing statement (`ON CONFLICT DO NOTHING`, then a look), so
the unit of work stays usable, exactly as with the memory store. The two mixins give the unit
of work (pg_unit.py) and the store (postgres.py) their payout methods, so those modules only
name them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.errors import DuplicateKey, NotFound, VersionConflict
from engine.ledger import TransactionKind, merchant_payable
from engine.payouts import PayoutSchedule, ScheduleInterval
from engine.records import Payout, evolve
from engine.store.pg_queries import Executor
from engine.store.port import PAGE_SIZE_MAX

PAYOUT_COLUMNS = (
    "payout_id, merchant_id, creation_key, currency, amount_minor, status, trigger, "
    "created_at_ms, updated_at_ms, attempts, provider_ref, failure_reason, version"
)


def _check_limit(limit: int) -> int:
    assert 0 < limit <= PAGE_SIZE_MAX, f"limit {limit} is outside 1..{PAGE_SIZE_MAX}"
    return limit


async def insert_payout(db: Executor, payout: Payout) -> None:
    p = payout
    inserted = await db.fetchval(
        f"INSERT INTO payouts ({PAYOUT_COLUMNS})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT DO NOTHING RETURNING payout_id",
        *(p.payout_id, p.merchant_id, p.creation_key, p.currency, p.amount_minor),
        *(p.status.value, p.trigger, p.created_at_ms, p.updated_at_ms, p.attempts),
        *(p.provider_ref, p.failure_reason, p.version),
    )
    if inserted is not None:
        return
    row = await db.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM payouts WHERE payout_id = $1) AS payout,"
        " EXISTS (SELECT 1 FROM payouts WHERE creation_key = $2) AS creation_key",
        p.payout_id,
        p.creation_key,
    )
    if row["payout"]:
        raise DuplicateKey("payouts.payout_id", p.payout_id)
    if row["creation_key"]:
        raise DuplicateKey("payouts.creation_key", p.creation_key)
    raise AssertionError("a payout was not inserted but nothing conflicts")


async def update_payout(db: Executor, payout: Payout) -> Payout:
    p = payout
    row = await db.fetchrow(
        "UPDATE payouts SET status = $3, updated_at_ms = $4, attempts = $5, provider_ref = $6,"
        " failure_reason = $7, version = version + 1"
        " WHERE payout_id = $1 AND version = $2"
        " RETURNING merchant_id, creation_key, amount_minor, version",
        *(p.payout_id, p.version, p.status.value, p.updated_at_ms, p.attempts),
        *(p.provider_ref, p.failure_reason),
    )
    if row is None:
        current = await db.fetchval("SELECT version FROM payouts WHERE payout_id = $1", p.payout_id)
        if current is None:
            raise NotFound(f"payout {p.payout_id} does not exist")
        raise VersionConflict(f"payout {p.payout_id} is at version {current}, not {p.version}")
    assert row["merchant_id"] == p.merchant_id, "merchant_id is immutable"
    assert row["creation_key"] == p.creation_key, "creation_key is immutable"
    assert int(row["amount_minor"]) == p.amount_minor, "amount is immutable"
    return evolve(payout, version=int(row["version"]))


async def get_payout(db: Executor, payout_id: str) -> Payout | None:
    row = await db.fetchrow(f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE payout_id = $1", payout_id)
    return None if row is None else Payout.from_row(row)


async def get_payout_by_creation_key(db: Executor, creation_key: str) -> Payout | None:
    row = await db.fetchrow(
        f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE creation_key = $1", creation_key
    )
    return None if row is None else Payout.from_row(row)


async def list_payouts(
    db: Executor, merchant_id: str, limit: int, after: str | None
) -> list[Payout]:
    rows = await db.fetch(
        f"SELECT {PAYOUT_COLUMNS} FROM payouts"
        " WHERE merchant_id = $1 AND ($3::text IS NULL OR payout_id > $3)"
        " ORDER BY payout_id LIMIT $2",
        merchant_id,
        _check_limit(limit),
        after,
    )
    return [Payout.from_row(row) for row in rows]


async def list_unfinished_payouts(db: Executor, limit: int, after: str | None) -> list[Payout]:
    rows = await db.fetch(
        f"SELECT {PAYOUT_COLUMNS} FROM payouts"
        " WHERE in_flight AND ($2::text IS NULL OR payout_id > $2)"
        " ORDER BY payout_id LIMIT $1",
        _check_limit(limit),
        after,
    )
    return [Payout.from_row(row) for row in rows]


async def record_payout_event(
    db: Executor, event_id: str, kind: str, payout_id: str, received_at_ms: int
) -> None:
    inserted = await db.fetchval(
        "INSERT INTO payout_events (event_id, kind, payout_id, received_at_ms)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING event_id",
        event_id,
        kind,
        payout_id,
        received_at_ms,
    )
    if inserted is None:
        raise DuplicateKey("payout_events.event_id", event_id)


def _schedule(row: Mapping[str, Any]) -> PayoutSchedule:
    minimums = row["minimums"]
    if isinstance(minimums, str):
        minimums = json.loads(minimums)
    return PayoutSchedule.of(
        row["merchant_id"],
        ScheduleInterval(row["interval"]),
        int(row["delay_days"]),
        {str(c): int(m) for c, m in minimums.items()},
        int(row["updated_at_ms"]),
    )


_SCHEDULE_COLUMNS = "merchant_id, interval, delay_days, minimums, updated_at_ms"


async def get_payout_schedule(db: Executor, merchant_id: str) -> PayoutSchedule | None:
    row = await db.fetchrow(
        f"SELECT {_SCHEDULE_COLUMNS} FROM payout_schedules WHERE merchant_id = $1", merchant_id
    )
    return None if row is None else _schedule(row)


async def put_payout_schedule(db: Executor, schedule: PayoutSchedule) -> None:
    s = schedule
    await db.execute(
        f"INSERT INTO payout_schedules ({_SCHEDULE_COLUMNS}) VALUES ($1, $2, $3, $4::jsonb, $5)"
        " ON CONFLICT (merchant_id) DO UPDATE SET interval = EXCLUDED.interval,"
        " delay_days = EXCLUDED.delay_days, minimums = EXCLUDED.minimums,"
        " updated_at_ms = EXCLUDED.updated_at_ms",
        *(s.merchant_id, s.interval.value, s.delay_days, json.dumps(dict(s.minimums))),
        s.updated_at_ms,
    )


async def list_payout_schedules(
    db: Executor, limit: int, after: str | None
) -> list[PayoutSchedule]:
    rows = await db.fetch(
        f"SELECT {_SCHEDULE_COLUMNS} FROM payout_schedules"
        " WHERE interval <> 'manual' AND ($2::text IS NULL OR merchant_id > $2)"
        " ORDER BY merchant_id LIMIT $1",
        _check_limit(limit),
        after,
    )
    return [_schedule(row) for row in rows]


async def pending_capture_minor(
    db: Executor, merchant_id: str, currency: str, since_ms: int
) -> int:
    total = await db.fetchval(
        "SELECT COALESCE(-SUM(e.amount_minor), 0) FROM ledger_entries e"
        " JOIN ledger_transactions t ON t.txn_id = e.txn_id"
        " WHERE e.account = $1 AND e.currency = $2 AND t.kind = $3 AND t.created_at_ms >= $4",
        merchant_payable(merchant_id),
        currency,
        TransactionKind.CAPTURE.value,
        since_ms,
    )
    return max(int(total), 0)


class PgPayoutUnitMixin:
    """The payout methods of the PostgreSQL unit of work (pg_unit.py), each one statement."""

    _run: Callable[..., Awaitable[Any]]

    async def insert_payout(self, payout: Payout) -> None:
        await self._run(insert_payout, payout)

    async def update_payout(self, payout: Payout) -> Payout:
        updated: Payout = await self._run(update_payout, payout)
        return updated

    async def get_payout(self, payout_id: str) -> Payout | None:
        found: Payout | None = await self._run(get_payout, payout_id)
        return found

    async def get_payout_by_creation_key(self, creation_key: str) -> Payout | None:
        found: Payout | None = await self._run(get_payout_by_creation_key, creation_key)
        return found

    async def record_payout_event(
        self, event_id: str, kind: str, payout_id: str, received_at_ms: int
    ) -> None:
        await self._run(record_payout_event, event_id, kind, payout_id, received_at_ms)

    async def get_payout_schedule(self, merchant_id: str) -> PayoutSchedule | None:
        found: PayoutSchedule | None = await self._run(get_payout_schedule, merchant_id)
        return found

    async def put_payout_schedule(self, schedule: PayoutSchedule) -> None:
        await self._run(put_payout_schedule, schedule)

    async def pending_capture_minor(self, merchant_id: str, currency: str, since_ms: int) -> int:
        total: int = await self._run(pending_capture_minor, merchant_id, currency, since_ms)
        return total


class PgPayoutReadsMixin:
    """The payout reads of committed state of the PostgreSQL store (postgres.py)."""

    _read: Callable[..., Awaitable[Any]]

    async def get_payout(self, payout_id: str) -> Payout | None:
        found: Payout | None = await self._read(get_payout, payout_id)
        return found

    async def list_payouts(
        self, merchant_id: str, limit: int, after: str | None = None
    ) -> list[Payout]:
        found: list[Payout] = await self._read(list_payouts, merchant_id, limit, after)
        return found

    async def list_unfinished_payouts(self, limit: int, after: str | None = None) -> list[Payout]:
        found: list[Payout] = await self._read(list_unfinished_payouts, limit, after)
        return found

    async def get_payout_schedule(self, merchant_id: str) -> PayoutSchedule | None:
        found: PayoutSchedule | None = await self._read(get_payout_schedule, merchant_id)
        return found

    async def list_payout_schedules(
        self, limit: int, after: str | None = None
    ) -> list[PayoutSchedule]:
        found: list[PayoutSchedule] = await self._read(list_payout_schedules, limit, after)
        return found
