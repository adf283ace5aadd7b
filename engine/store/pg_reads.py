"""The PostgreSQL store's reads of committed state: listings for queries, recovery and the oracle.

Asyncio-native like pg_queries.py. Every listing is bounded by the caller's `limit` (at most
`PAGE_SIZE_MAX` rows) and pages by key, so a read never grows with the size of the history.
"""

from __future__ import annotations

from engine.ledger import Entry
from engine.records import Balance, Payment, PaymentOrder
from engine.store.pg_queries import ORDER_COLUMNS, PAYMENT_COLUMNS, Executor
from engine.store.port import PAGE_SIZE_MAX


def check_limit(limit: int) -> int:
    assert 0 < limit <= PAGE_SIZE_MAX, f"limit {limit} is outside 1..{PAGE_SIZE_MAX}"
    return limit


async def list_payments(db: Executor, limit: int, starting_after: str | None) -> list[Payment]:
    rows = await db.fetch(
        f"SELECT {PAYMENT_COLUMNS} FROM payments"
        " WHERE $2::text IS NULL OR payment_id < $2 ORDER BY payment_id DESC LIMIT $1",
        check_limit(limit),
        starting_after,
    )
    return [Payment.from_row(row) for row in rows]


async def list_unfinished_payments(db: Executor, limit: int, after: str | None) -> list[Payment]:
    rows = await db.fetch(
        f"SELECT {PAYMENT_COLUMNS} FROM payments"
        " WHERE unfinished AND ($2::text IS NULL OR payment_id > $2)"
        " ORDER BY payment_id LIMIT $1",
        check_limit(limit),
        after,
    )
    return [Payment.from_row(row) for row in rows]


async def list_unfinished_orders(db: Executor, limit: int, after: str | None) -> list[PaymentOrder]:
    rows = await db.fetch(
        f"SELECT {ORDER_COLUMNS} FROM payment_orders"
        " WHERE unfinished AND ($2::text IS NULL OR order_id > $2)"
        " ORDER BY order_id LIMIT $1",
        check_limit(limit),
        after,
    )
    return [PaymentOrder.from_row(row) for row in rows]


async def list_entries(
    db: Executor, account: str, limit: int, after: tuple[str, int] | None
) -> list[tuple[str, int, Entry]]:
    after_txn, after_no = after if after is not None else (None, -1)
    rows = await db.fetch(
        "SELECT txn_id, entry_no, account, amount_minor, currency FROM ledger_entries"
        " WHERE account = $1 AND ($3::text IS NULL OR (txn_id, entry_no) > ($3, $4::smallint))"
        " ORDER BY txn_id, entry_no LIMIT $2",
        account,
        check_limit(limit),
        after_txn,
        after_no,
    )
    return [(row["txn_id"], row["entry_no"], Entry.from_row(row)) for row in rows]


_BALANCE_COLUMNS = "merchant_id, currency, available_minor, reserved_minor"


async def list_balances(db: Executor, merchant_id: str) -> list[Balance]:
    rows = await db.fetch(
        f"SELECT {_BALANCE_COLUMNS} FROM wallets WHERE merchant_id = $1 ORDER BY currency",
        merchant_id,
    )
    return [Balance.from_row(row) for row in rows]


async def all_balances(db: Executor) -> list[Balance]:
    rows = await db.fetch(f"SELECT {_BALANCE_COLUMNS} FROM wallets ORDER BY merchant_id, currency")
    return [Balance.from_row(row) for row in rows]


async def trial_balance(db: Executor) -> dict[tuple[str, str], int]:
    rows = await db.fetch(
        "SELECT account, currency, sum(amount_minor)::bigint AS total FROM ledger_entries"
        " GROUP BY account, currency ORDER BY account, currency"
    )
    return {(row["account"], row["currency"]): int(row["total"]) for row in rows}


async def count_transactions(db: Executor) -> int:
    return int(await db.fetchval("SELECT count(*) FROM ledger_transactions"))
