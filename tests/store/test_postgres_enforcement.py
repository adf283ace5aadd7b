"""The database itself enforces the rules, whatever the code does (DESIGN.md section 4).

Most tests here talk raw SQL through asyncpg, bypassing the store, to show that PostgreSQL
refuses: changes to the ledger, unbalanced transactions (at commit), negative wallets and
duplicate keys. The rest cover what only the PostgreSQL store has: migrations, the trio-asyncio
bridge, increments under concurrency, and a unit the database has aborted.

Raw SQL runs as asyncio code in a worker thread (`on_asyncio`), so these tests need no
trio-asyncio loop of their own. They run against every PostgreSQL kind the session has.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import asyncpg
import attrs
import pytest
import trio
import trio_asyncio

from engine.errors import (
    AppendOnlyViolation,
    DuplicateKey,
    NegativeBalance,
    UnbalancedTransaction,
)
from engine.money import Money, split_bps
from engine.records import PaymentOrder
from engine.states import OrderStatus, PaymentStatus, is_terminal
from engine.store import migrate as migrations
from engine.store.pg_errors import map_error
from engine.store.postgres import open_postgres_store
from tests import pgfixtures
from tests.factories import capture_txn, message, payment_with_orders, psp_event

pytestmark = pytest.mark.postgres


async def on_asyncio(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    """Run an asyncio coroutine function in a worker thread with its own plain event loop."""

    def run() -> Any:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(fn(*args))

    return await trio.to_thread.run_sync(run)


async def _with_conn(dsn: str, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await fn(conn)
    finally:
        await conn.close()


async def sql(dsn: str, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """`fn(conn)` on a raw asyncpg connection to `dsn`."""
    return await on_asyncio(_with_conn, dsn, fn)


@pytest.fixture(params=pgfixtures.available_kinds())
async def blank_dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh database without the schema."""
    async with pgfixtures.fresh_database(request.param) as dsn:
        yield dsn


@pytest.fixture
async def dsn(blank_dsn: str) -> str:
    """A fresh database with the schema applied."""
    await sql(blank_dsn, migrations.migrate)
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

    refused, total_after = await sql(dsn, scenario)
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

    refused, transactions = await sql(dsn, scenario)
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

    assert await sql(dsn, scenario) == 5


# --- wallets never go below zero --------------------------------------------------------------


@pytest.mark.parametrize("column", ["available_minor", "reserved_minor"])
async def test_database_refuses_negative_wallet(dsn: str, column: str) -> None:
    async def scenario(conn: Any) -> tuple[BaseException, int]:
        await conn.execute("INSERT INTO wallets (merchant_id, currency) VALUES ('m1', 'USD')")
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await conn.execute(f"UPDATE wallets SET {column} = {column} - 1")
        return refused.value, await conn.fetchval(f"SELECT {column} FROM wallets")

    refused, balance = await sql(dsn, scenario)
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

    mapped = map_error(await sql(dsn, scenario))
    assert isinstance(mapped, DuplicateKey)
    assert mapped.key == key


# --- migrations -------------------------------------------------------------------------------


async def test_migrating_twice_applies_nothing_the_second_time(blank_dsn: str) -> None:
    shipped = [m.name for m in migrations.load_migrations()]
    assert await sql(blank_dsn, migrations.pending_migrations) == shipped
    assert await sql(blank_dsn, migrations.migrate) == shipped
    assert await sql(blank_dsn, migrations.migrate) == []
    assert await sql(blank_dsn, migrations.pending_migrations) == []


async def test_concurrent_migrations_apply_each_migration_once(blank_dsn: str) -> None:
    async def race() -> list[list[str]]:
        conns = [await asyncpg.connect(blank_dsn) for _ in range(4)]
        try:
            return list(await asyncio.gather(*(migrations.migrate(c) for c in conns)))
        finally:
            for conn in conns:
                await conn.close()

    applied = await on_asyncio(race)
    shipped = [m.name for m in migrations.load_migrations()]
    assert sorted(applied, key=len) == [[], [], [], shipped]

    async def recorded(conn: Any) -> list[str]:
        return [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]

    assert sorted(await sql(blank_dsn, recorded)) == shipped


async def test_edited_migration_stops_start_up(dsn: str) -> None:
    async def tamper(conn: Any) -> None:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited'")

    await sql(dsn, tamper)
    with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
        await sql(dsn, migrations.migrate)


# --- the store on PostgreSQL ------------------------------------------------------------------


async def test_unfinished_flags_match_the_transition_tables(dsn: str) -> None:
    """The generated `unfinished` columns repeat engine/states.py in SQL; they must agree."""
    async with open_postgres_store(dsn) as store:
        expected_payments: set[str] = set()
        expected_orders: set[str] = set()
        for payment_status in PaymentStatus:
            payment, orders = payment_with_orders([100])
            async with store.unit_of_work() as uow:
                await uow.insert_payment(attrs.evolve(payment, status=payment_status), orders)
            if not is_terminal(payment_status):
                expected_payments.add(payment.payment_id)
            expected_orders.update(o.order_id for o in orders if _order_unfinished(o))
        for order_status in OrderStatus:
            for ledger_booked in (False, True):
                for wallet_booked in (False, True):
                    payment, orders = payment_with_orders([100])
                    order = attrs.evolve(
                        orders[0],
                        status=order_status,
                        ledger_booked=ledger_booked,
                        wallet_booked=wallet_booked,
                    )
                    payment = attrs.evolve(payment, status=PaymentStatus.COMPLETED)
                    async with store.unit_of_work() as uow:
                        await uow.insert_payment(payment, [order])
                    if _order_unfinished(order):
                        expected_orders.add(order.order_id)
        unfinished = await store.list_unfinished_payments(1000)
        assert {p.payment_id for p in unfinished} == expected_payments
        unfinished_orders = await store.list_unfinished_orders(1000)
        assert {o.order_id for o in unfinished_orders} == expected_orders


def _order_unfinished(order: PaymentOrder) -> bool:
    return not is_terminal(order.status) or (
        order.status is OrderStatus.SUCCESS and not order.booked
    )


async def test_concurrent_postings_to_one_wallet_lose_no_update(dsn: str) -> None:
    postings = 40
    async with open_postgres_store(dsn, pool_size_max=8) as store:

        async def post(amount_minor: int) -> None:
            async with store.unit_of_work() as uow:
                await uow.post_transaction(capture_txn("seller-hot", amount_minor))

        async with trio.open_nursery() as nursery:
            for n in range(postings):
                nursery.start_soon(post, 100 + n)
        balance = (await store.list_balances("seller-hot"))[0]
        expected = sum(split_bps(Money(100 + n, "USD"), 1000)[1].minor for n in range(postings))
        assert balance.available_minor == expected
        trial = await store.trial_balance()
        assert trial[("merchant_payable:seller-hot", "USD")] == -expected
        assert await store.count_transactions() == postings


async def test_cancelled_unit_of_work_rolls_back_and_the_store_stays_usable(dsn: str) -> None:
    async with open_postgres_store(dsn, pool_size_max=1) as store:
        payment, orders = payment_with_orders([100])
        with trio.move_on_after(0.5) as scope:
            async with store.unit_of_work() as uow:
                await uow.insert_payment(payment, orders)
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert await store.get_payment(payment.payment_id) is None
        async with store.unit_of_work() as uow:  # the one pooled connection came back clean
            await uow.insert_payment(payment, orders)
        assert await store.get_payment(payment.payment_id) == payment


async def test_unit_aborted_by_the_database_refuses_to_commit(dsn: str) -> None:
    """A refused statement aborts the database transaction: swallowing the error must not
    turn the unit's exit into a silent rollback that looks like a commit."""

    async def tamper(conn: Any) -> None:
        await conn.execute("TRUNCATE ledger_entries")

    async with open_postgres_store(dsn) as store:
        event = psp_event()
        with pytest.raises(AppendOnlyViolation):
            async with store.unit_of_work() as uow:
                await uow.record_psp_event(event)
                with pytest.raises(AppendOnlyViolation):
                    await uow._run(tamper)
        async with store.unit_of_work() as uow:
            await uow.record_psp_event(event)  # the first one was rolled back


async def test_caught_expected_error_leaves_the_unit_usable(dsn: str) -> None:
    """Unlike a refused statement, an expected outcome does not abort the transaction."""
    async with open_postgres_store(dsn) as store:
        event, later = psp_event(), message()
        async with store.unit_of_work() as uow:
            await uow.record_psp_event(event)
        async with store.unit_of_work() as uow:
            with pytest.raises(DuplicateKey):
                await uow.record_psp_event(event)
            await uow.append_outbox(later)
        async with store.unit_of_work() as uow:
            with pytest.raises(DuplicateKey):
                await uow.append_outbox(later)


async def test_store_runs_inside_the_callers_trio_asyncio_loop(dsn: str) -> None:
    async with trio_asyncio.open_loop(), open_postgres_store(dsn) as store:
        payment, orders = payment_with_orders([100])
        async with store.unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
        assert await store.get_payment(payment.payment_id) == payment


async def test_errors_leave_a_store_with_its_own_loop_unwrapped(dsn: str) -> None:
    payment, orders = payment_with_orders([100])
    with pytest.raises(DuplicateKey):
        async with open_postgres_store(dsn) as store:
            async with store.unit_of_work() as uow:
                await uow.insert_payment(payment, orders)
            async with store.unit_of_work() as uow:
                await uow.insert_payment(payment, orders)


async def test_unbalanced_rows_fail_the_commit_as_unbalanced_transaction(dsn: str) -> None:
    """The deferred trigger speaks at COMMIT; the store maps it and nothing is kept."""

    async def half_a_transaction(conn: Any) -> None:
        await conn.execute(_TXN, "t1", "r1")
        await conn.execute(
            "INSERT INTO ledger_entries (txn_id, entry_no, account, currency, amount_minor)"
            " VALUES ('t1', 0, 'psp_clearing', 'USD', 100)"
        )

    async with open_postgres_store(dsn) as store:
        with pytest.raises(UnbalancedTransaction, match="does not balance"):
            async with store.unit_of_work() as uow:
                await uow._run(half_a_transaction)
        assert await store.count_transactions() == 0


async def test_cancelling_a_running_statement_rolls_back_the_unit(dsn: str) -> None:
    async def slow(conn: Any) -> None:
        await conn.execute("SELECT pg_sleep(30)")

    async with open_postgres_store(dsn, pool_size_max=1) as store:
        event = psp_event()
        with trio.fail_after(10):
            with trio.move_on_after(0.3) as scope:
                async with store.unit_of_work() as uow:
                    await uow.record_psp_event(event)
                    await uow._run(slow)
            assert scope.cancelled_caught
            async with store.unit_of_work() as uow:  # same connection, back in service
                await uow.record_psp_event(event)
