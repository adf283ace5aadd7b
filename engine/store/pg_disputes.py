"""The PostgreSQL store's dispute statements (migration 0007), asyncio-native like pg_refunds.py.

Same discipline: an expected outcome (a duplicate dispute id, a missing order, a lost version
race) is found without a failing statement, so the unit of work stays usable, exactly as with
the memory store.
"""

from __future__ import annotations

from engine.errors import DuplicateKey, NotFound, VersionConflict
from engine.records import Dispute, evolve
from engine.store.pg_queries import Executor
from engine.store.port import PAGE_SIZE_MAX

DISPUTE_COLUMNS = (
    "dispute_id, order_id, psp_capture_id, currency, amount_minor, status, created_at_ms, "
    "updated_at_ms, reason, version"
)

_INSERT_DISPUTE = f"""
INSERT INTO disputes ({DISPUTE_COLUMNS})
SELECT $1, o.order_id, $3, $4, $5, $6, $7, $8, $9, $10
FROM payment_orders o WHERE o.order_id = $2
ON CONFLICT DO NOTHING
RETURNING dispute_id
"""


def _check_limit(limit: int) -> int:
    assert 0 < limit <= PAGE_SIZE_MAX, f"limit {limit} is outside 1..{PAGE_SIZE_MAX}"
    return limit


async def insert_dispute(db: Executor, dispute: Dispute) -> None:
    d = dispute
    inserted = await db.fetchval(
        _INSERT_DISPUTE,
        *(d.dispute_id, d.order_id, d.psp_capture_id, d.currency, d.amount_minor),
        *(d.status.value, d.created_at_ms, d.updated_at_ms, d.reason, d.version),
    )
    if inserted is not None:
        return
    row = await db.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM disputes WHERE dispute_id = $1) AS dispute,"
        " EXISTS (SELECT 1 FROM payment_orders WHERE order_id = $2) AS order_exists",
        d.dispute_id,
        d.order_id,
    )
    if row["dispute"]:
        raise DuplicateKey("disputes.dispute_id", d.dispute_id)
    if not row["order_exists"]:
        raise NotFound(f"payment order {d.order_id} does not exist")
    raise AssertionError("a dispute was not inserted but nothing conflicts")


_UPDATE_DISPUTE = """
UPDATE disputes
SET psp_capture_id = $3, currency = $4, amount_minor = $5, status = $6, created_at_ms = $7,
    updated_at_ms = $8, reason = $9, version = version + 1
WHERE dispute_id = $1 AND version = $2
RETURNING order_id, version
"""


async def update_dispute(db: Executor, dispute: Dispute) -> Dispute:
    d = dispute
    row = await db.fetchrow(
        _UPDATE_DISPUTE,
        *(d.dispute_id, d.version, d.psp_capture_id, d.currency, d.amount_minor),
        *(d.status.value, d.created_at_ms, d.updated_at_ms, d.reason),
    )
    if row is None:
        current = await db.fetchval(
            "SELECT version FROM disputes WHERE dispute_id = $1", d.dispute_id
        )
        if current is None:
            raise NotFound(f"dispute {d.dispute_id} does not exist")
        raise VersionConflict(f"dispute {d.dispute_id} is at version {current}, not {d.version}")
    assert row["order_id"] == d.order_id, "order_id is immutable"
    return evolve(dispute, version=int(row["version"]))


async def get_dispute(db: Executor, dispute_id: str) -> Dispute | None:
    row = await db.fetchrow(
        f"SELECT {DISPUTE_COLUMNS} FROM disputes WHERE dispute_id = $1", dispute_id
    )
    return None if row is None else Dispute.from_row(row)


async def list_order_disputes(
    db: Executor, order_id: str, limit: int, after: str | None
) -> list[Dispute]:
    rows = await db.fetch(
        f"SELECT {DISPUTE_COLUMNS} FROM disputes"
        " WHERE order_id = $1 AND ($3::text IS NULL OR dispute_id > $3)"
        " ORDER BY dispute_id LIMIT $2",
        order_id,
        _check_limit(limit),
        after,
    )
    return [Dispute.from_row(row) for row in rows]


async def list_disputes(
    db: Executor, limit: int, after: str | None, seller_id: str | None
) -> list[Dispute]:
    columns = ", ".join(f"d.{c.strip()}" for c in DISPUTE_COLUMNS.split(","))
    rows = await db.fetch(
        f"SELECT {columns} FROM disputes d JOIN payment_orders o ON o.order_id = d.order_id"
        " WHERE ($2::text IS NULL OR d.dispute_id > $2)"
        " AND ($3::text IS NULL OR o.seller_id = $3)"
        " ORDER BY d.dispute_id LIMIT $1",
        _check_limit(limit),
        after,
        seller_id,
    )
    return [Dispute.from_row(row) for row in rows]


async def list_unfinished_disputes(db: Executor, limit: int, after: str | None) -> list[Dispute]:
    rows = await db.fetch(
        f"SELECT {DISPUTE_COLUMNS} FROM disputes"
        " WHERE unfinished AND ($2::text IS NULL OR dispute_id > $2)"
        " ORDER BY dispute_id LIMIT $1",
        _check_limit(limit),
        after,
    )
    return [Dispute.from_row(row) for row in rows]
