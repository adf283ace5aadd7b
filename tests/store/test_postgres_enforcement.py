"""The database itself enforces the rules, whatever the code does (DESIGN.md section 4).

These tests talk raw SQL through asyncpg, bypassing the store, to show that PostgreSQL refuses:
changes to the ledger, unbalanced transactions (at commit), negative wallets and duplicate keys;
and that migrations apply once, even when several processes race. Raw SQL runs as asyncio code
in a worker thread (pgfixtures.raw_sql), so these tests need no trio-asyncio loop of their own.
They run against every PostgreSQL kind the session has.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from engine.errors import (
    AppendOnlyViolation,
    DuplicateKey,
    NegativeBalance,
    UnbalancedTransaction,
)
from engine.store import migrate as migrations
from engine.store.pg_errors import map_error
from tests import pgfixtures

pytestmark = pytest.mark.postgres


@pytest.fixture(params=pgfixtures.available_kinds())
async def blank_dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh database without the schema."""
    async with pgfixtures.fresh_database(request.param) as dsn:
        yield dsn


@pytest.fixture
async def dsn(blank_dsn: str) -> str:
    """A fresh database with the schema applied."""
    await pgfixtures.raw_sql(blank_dsn, migrations.migrate)
    return blank_dsn


async def _post_raw(conn: Any, txn_id: str, entries: list[tuple[str, str, int]]) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO ledger_transactions (txn_id, kind, reference, created_at_ms)"
            " VALUES ($1, 'adjustment', $1, 1)",
            txn_id,
        )
        for entry_no, (account, currency, amount_minor) in enumerate(entries):
            await conn.execute(
                "INSERT INTO ledger_entries (txn_id, entry_no, account, currency, amount_minor)"
                " VALUES ($1, $2, $3, $4, $5)",
                *(txn_id, entry_no, account, currency, amount_minor),
            )


BALANCED = [("psp_clearing", "USD", 100), ("bank_cash", "USD", -100)]


# --- the ledger is append-only ----------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount_minor = 1",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries",
        "UPDATE ledger_transactions SET reference = 'other'",
        "DELETE FROM ledger_transactions",
        "TRUNCATE ledger_transactions CASCADE",
    ],
)
async def test_database_refuses_to_change_the_ledger(dsn: str, statement: str) -> None:
    async def scenario(conn: Any) -> tuple[BaseException, int]:
        await _post_raw(conn, "t1", BALANCED)
        with pytest.raises(asyncpg.PostgresError) as refused:
            await conn.execute(statement)
        return refused.value, await conn.fetchval("SELECT sum(amount_minor) FROM ledger_entries")

    refused, total_after = await pgfixtures.raw_sql(dsn, scenario)
    assert isinstance(map_error(refused), AppendOnlyViolation)
    assert total_after == 0


# --- transactions balance per currency, checked at commit -------------------------------------


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([("psp_clearing", "USD", 100), ("bank_cash", "USD", -99)], id="off-by-one"),
        pytest.param([("psp_clearing", "USD", 100)], id="single-entry"),
        pytest.param([], id="no-entries"),
        pytest.param([("psp_clearing", "USD", 100), ("bank_cash", "EUR", -100)], id="per-currency"),
    ],
)
async def test_database_refuses_unbalanced_transaction_at_commit(
    dsn: str, entries: list[tuple[str, str, int]]
) -> None:
    async def scenario(conn: Any) -> tuple[BaseException, int]:
        with pytest.raises(asyncpg.PostgresError) as refused:
            await _post_raw(conn, "t1", entries)
        return refused.value, await conn.fetchval("SELECT count(*) FROM ledger_transactions")

    refused, transactions = await pgfixtures.raw_sql(dsn, scenario)
    assert isinstance(map_error(refused), UnbalancedTransaction), refused
    assert transactions == 0


async def test_balance_is_checked_at_commit_not_per_statement(dsn: str) -> None:
    """The first entry alone is unbalanced; the deferred trigger waits for the second."""

    async def scenario(conn: Any) -> int:
        await _post_raw(
            conn,
            "t1",
            [
                *[("psp_clearing", "USD", 100), ("bank_cash", "USD", -60)],
                *[("psp_fees", "USD", -40), ("psp_clearing", "EUR", 5), ("bank_cash", "EUR", -5)],
            ],
        )
        return int(await conn.fetchval("SELECT count(*) FROM ledger_entries"))

    assert await pgfixtures.raw_sql(dsn, scenario) == 5


# --- wallets never go below zero --------------------------------------------------------------


@pytest.mark.parametrize("column", ["available_minor", "reserved_minor"])
async def test_database_refuses_negative_wallet(dsn: str, column: str) -> None:
    async def scenario(conn: Any) -> tuple[BaseException, int]:
        await conn.execute("INSERT INTO wallets (merchant_id, currency) VALUES ('m1', 'USD')")
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await conn.execute(f"UPDATE wallets SET {column} = {column} - 1")
        return refused.value, await conn.fetchval(f"SELECT {column} FROM wallets")

    refused, balance = await pgfixtures.raw_sql(dsn, scenario)
    assert isinstance(map_error(refused), NegativeBalance)
    assert balance == 0


# --- unique keys --------------------------------------------------------------------------------


_PAYMENT = (
    "INSERT INTO payments (payment_id, checkout_id, buyer_id, currency, amount_minor, status,"
    " created_at_ms, updated_at_ms, expires_at_ms) VALUES ($1, $2, 'b', 'USD', 100, 'CREATED',"
    " 1, 1, 2)"
)
_ORDER = (
    "INSERT INTO payment_orders (order_id, payment_id, seller_id, currency, amount_minor, status,"
    " created_at_ms, updated_at_ms) VALUES ($1, 'p1', 's', 'USD', 100, 'NOT_STARTED', 1, 1)"
)
_TXN = (
    "INSERT INTO ledger_transactions (txn_id, kind, reference, created_at_ms)"
    " VALUES ($1, 'capture', $2, 1)"
)
_OUTBOX = (
    "INSERT INTO outbox (message_id, topic, key, payload, created_at_ms)"
    " VALUES ($1, 't', 'k', '{}', 1)"
)
_EVENT = (
    "INSERT INTO psp_events (event_id, kind, payload, received_at_ms) VALUES ($1, 'k', '{}', 1)"
)
_IDEM = "INSERT INTO idempotency (scope, key, fingerprint, created_at_ms) VALUES ($1, $2, 'f', 1)"


@pytest.mark.parametrize(
    ("key", "first", "second"),
    [
        ("payments.payment_id", (_PAYMENT, "p1", "c1"), (_PAYMENT, "p1", "c2")),
        ("payments.checkout_id", (_PAYMENT, "p1", "c1"), (_PAYMENT, "p2", "c1")),
        ("payment_orders.order_id", (_ORDER, "o1"), (_ORDER, "o1")),
        ("ledger_transactions.txn_id", (_TXN, "t1", "r1"), (_TXN, "t1", "r2")),
        ("ledger_transactions.kind_reference", (_TXN, "t1", "r1"), (_TXN, "t2", "r1")),
        ("outbox.message_id", (_OUTBOX, "m1"), (_OUTBOX, "m1")),
        ("psp_events.event_id", (_EVENT, "e1"), (_EVENT, "e1")),
        ("idempotency.scope_key", (_IDEM, "api", "k1"), (_IDEM, "api", "k1")),
    ],
)
async def test_database_refuses_duplicate_key(
    dsn: str, key: str, first: tuple[Any, ...], second: tuple[Any, ...]
) -> None:
    async def scenario(conn: Any) -> BaseException:
        # In one transaction, rolled back: a ledger transaction alone would fail its deferred
        # balance check at commit, and the duplicate is refused before that anyway.
        transaction = conn.transaction()
        await transaction.start()
        try:
            if first[0] is _ORDER:  # an order needs its payment
                await conn.execute(_PAYMENT, "p1", "c1")
            await conn.execute(*first)
            with pytest.raises(asyncpg.UniqueViolationError) as refused:
                await conn.execute(*second)
            error: BaseException = refused.value
            return error
        finally:
            await transaction.rollback()

    mapped = map_error(await pgfixtures.raw_sql(dsn, scenario))
    assert isinstance(mapped, DuplicateKey)
    assert mapped.key == key


# --- refunds (migration 0004) ------------------------------------------------------------------


_REFUND = (
    "INSERT INTO refunds (refund_id, order_id, creation_key, currency, amount_minor, status,"
    " created_at_ms, updated_at_ms) VALUES ($1, 'o1', $2, 'USD', $3, 'REQUESTED', 1, 1)"
)


@pytest.mark.parametrize("amount_minor", [0, -1, -(2**63)])
async def test_database_refuses_non_positive_refund(dsn: str, amount_minor: int) -> None:
    async def scenario(conn: Any) -> tuple[str | None, int]:
        await conn.execute(_PAYMENT, "p1", "c1")
        await conn.execute(_ORDER, "o1")
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await conn.execute(_REFUND, "r1", "k1", amount_minor)
        return refused.value.constraint_name, await conn.fetchval("SELECT count(*) FROM refunds")

    constraint, count = await pgfixtures.raw_sql(dsn, scenario)
    assert (constraint, count) == ("refunds_amount_positive", 0)


async def test_database_refuses_refund_of_unknown_order(dsn: str) -> None:
    async def scenario(conn: Any) -> str | None:
        with pytest.raises(asyncpg.ForeignKeyViolationError) as refused:
            await conn.execute(_REFUND, "r1", "k1", 100)
        name: str | None = refused.value.constraint_name
        return name

    assert await pgfixtures.raw_sql(dsn, scenario) == "refunds_order_fk"


@pytest.mark.parametrize(
    ("key", "second"),
    [("refunds.refund_id", ("r1", "k2", 5)), ("refunds.creation_key", ("r2", "k1", 5))],
)
async def test_database_refuses_duplicate_refund_key(
    dsn: str, key: str, second: tuple[Any, ...]
) -> None:
    async def scenario(conn: Any) -> BaseException:
        await conn.execute(_PAYMENT, "p1", "c1")
        await conn.execute(_ORDER, "o1")
        await conn.execute(_REFUND, "r1", "k1", 5)
        with pytest.raises(asyncpg.UniqueViolationError) as refused:
            await conn.execute(_REFUND, *second)
        error: BaseException = refused.value
        return error

    mapped = map_error(await pgfixtures.raw_sql(dsn, scenario))
    assert isinstance(mapped, DuplicateKey)
    assert mapped.key == key


# --- migrations -------------------------------------------------------------------------------


async def test_migrating_twice_applies_nothing_the_second_time(blank_dsn: str) -> None:
    shipped = [m.name for m in migrations.load_migrations()]
    assert await pgfixtures.raw_sql(blank_dsn, migrations.pending_migrations) == shipped
    assert await pgfixtures.raw_sql(blank_dsn, migrations.migrate) == shipped
    assert await pgfixtures.raw_sql(blank_dsn, migrations.migrate) == []
    assert await pgfixtures.raw_sql(blank_dsn, migrations.pending_migrations) == []


async def test_concurrent_migrations_apply_each_migration_once(blank_dsn: str) -> None:
    async def race() -> list[list[str]]:
        conns = [await asyncpg.connect(blank_dsn) for _ in range(4)]
        try:
            return list(await asyncio.gather(*(migrations.migrate(c) for c in conns)))
        finally:
            for conn in conns:
                await conn.close()

    applied = await pgfixtures.run_on_asyncio(race)
    shipped = [m.name for m in migrations.load_migrations()]
    assert sorted(applied, key=len) == [[], [], [], shipped]

    async def recorded(conn: Any) -> list[str]:
        return [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]

    assert sorted(await pgfixtures.raw_sql(blank_dsn, recorded)) == shipped


async def test_edited_migration_stops_start_up(dsn: str) -> None:
    async def tamper(conn: Any) -> None:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited'")

    await pgfixtures.raw_sql(dsn, tamper)
    with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
        await pgfixtures.raw_sql(dsn, migrations.migrate)
