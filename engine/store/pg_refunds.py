"""The PostgreSQL store's refund statements (migration 0005), asyncio-native like pg_queries.py.

Kept apart from pg_queries.py (payments, orders, the ledger) so each module holds one
aggregate's SQL. Same discipline: an expected outcome (a duplicate refund id or creation key,
a missing order, a lost version race) is found without a failing statement, so the unit of
work stays usable, exactly as with the memory store.
"""

from __future__ import annotations

from engine.errors import DuplicateKey, NotFound, VersionConflict
from engine.records import Refund, evolve
from engine.store.pg_queries import Executor
from engine.store.port import PAGE_SIZE_MAX

REFUND_COLUMNS = (
    "refund_id, order_id, creation_key, currency, amount_minor, status, created_at_ms, "
    "updated_at_ms, reason, attempts, psp_refund_id, failure_reason, version"
)

_INSERT_REFUND = f"""
INSERT INTO refunds ({REFUND_COLUMNS})
SELECT $1, o.order_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
FROM payment_orders o WHERE o.order_id = $2
ON CONFLICT DO NOTHING
RETURNING refund_id
"""


def _check_limit(limit: int) -> int:
    assert 0 < limit <= PAGE_SIZE_MAX, f"limit {limit} is outside 1..{PAGE_SIZE_MAX}"
    return limit


async def insert_refund(db: Executor, refund: Refund) -> None:
    r = refund
    inserted = await db.fetchval(
        _INSERT_REFUND,
        *(r.refund_id, r.order_id, r.creation_key, r.currency, r.amount_minor, r.status.value),
        *(r.created_at_ms, r.updated_at_ms, r.reason, r.attempts, r.psp_refund_id),
        *(r.failure_reason, r.version),
    )
    if inserted is not None:
        return
    row = await db.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM refunds WHERE refund_id = $1) AS refund,"
        " EXISTS (SELECT 1 FROM refunds WHERE creation_key = $2) AS creation_key,"
        " EXISTS (SELECT 1 FROM payment_orders WHERE order_id = $3) AS order_exists",
        r.refund_id,
        r.creation_key,
        r.order_id,
    )
    if row["refund"]:
        raise DuplicateKey("refunds.refund_id", r.refund_id)
    if row["creation_key"]:
        raise DuplicateKey("refunds.creation_key", r.creation_key)
    if not row["order_exists"]:
        raise NotFound(f"payment order {r.order_id} does not exist")
    raise AssertionError("a refund was not inserted but nothing conflicts")


_UPDATE_REFUND = """
UPDATE refunds
SET currency = $3, amount_minor = $4, status = $5, created_at_ms = $6, updated_at_ms = $7,
    reason = $8, attempts = $9, psp_refund_id = $10, failure_reason = $11, version = version + 1
WHERE refund_id = $1 AND version = $2
RETURNING order_id, creation_key, version
"""


async def update_refund(db: Executor, refund: Refund) -> Refund:
    r = refund
    row = await db.fetchrow(
        _UPDATE_REFUND,
        *(r.refund_id, r.version, r.currency, r.amount_minor, r.status.value, r.created_at_ms),
        *(r.updated_at_ms, r.reason, r.attempts, r.psp_refund_id, r.failure_reason),
    )
    if row is None:
        current = await db.fetchval("SELECT version FROM refunds WHERE refund_id = $1", r.refund_id)
        if current is None:
            raise NotFound(f"refund {r.refund_id} does not exist")
        raise VersionConflict(f"refund {r.refund_id} is at version {current}, not {r.version}")
    assert row["order_id"] == r.order_id, "order_id is immutable"
    assert row["creation_key"] == r.creation_key, "creation_key is immutable"
    return evolve(refund, version=int(row["version"]))


async def get_refund(db: Executor, refund_id: str) -> Refund | None:
    row = await db.fetchrow(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE refund_id = $1", refund_id)
    return None if row is None else Refund.from_row(row)


async def get_refund_by_creation_key(db: Executor, creation_key: str) -> Refund | None:
    row = await db.fetchrow(
        f"SELECT {REFUND_COLUMNS} FROM refunds WHERE creation_key = $1", creation_key
    )
    return None if row is None else Refund.from_row(row)


async def list_refunds(db: Executor, order_id: str, limit: int, after: str | None) -> list[Refund]:
    rows = await db.fetch(
        f"SELECT {REFUND_COLUMNS} FROM refunds"
        " WHERE order_id = $1 AND ($3::text IS NULL OR refund_id > $3)"
        " ORDER BY refund_id LIMIT $2",
        order_id,
        _check_limit(limit),
        after,
    )
    return [Refund.from_row(row) for row in rows]


async def list_unfinished_refunds(db: Executor, limit: int, after: str | None) -> list[Refund]:
    rows = await db.fetch(
        f"SELECT {REFUND_COLUMNS} FROM refunds"
        " WHERE unfinished AND ($2::text IS NULL OR refund_id > $2)"
        " ORDER BY refund_id LIMIT $1",
        _check_limit(limit),
        after,
    )
    return [Refund.from_row(row) for row in rows]
