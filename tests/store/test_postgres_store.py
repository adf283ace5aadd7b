"""What only the PostgreSQL store has: the trio-asyncio bridge, connections and transactions
under cancellation, increments under concurrency, a unit the database aborted, the SQL copy of
the transition tables, and the embedded server manager (payengine/database.py).

The conformance suite (test_conformance.py) covers the behaviour both stores share.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import attrs
import pytest
import trio
import trio_asyncio

from engine.errors import (
    AppendOnlyViolation,
    DuplicateKey,
    StoreUnavailable,
    UnbalancedTransaction,
)
from engine.money import Money, split_bps
from engine.records import IdempotencyRecord, PaymentOrder
from engine.states import OrderStatus, PaymentStatus, is_terminal
from engine.store import migrate as migrations
from engine.store.postgres import open_postgres_store, unavailable
from payengine import database
from tests import pgfixtures
from tests.factories import capture_txn, message, payment_with_orders, psp_event

pytestmark = pytest.mark.postgres


@pytest.fixture(params=pgfixtures.available_kinds())
async def dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh database with the schema applied."""
    async with pgfixtures.fresh_database(request.param) as fresh:
        await pgfixtures.raw_sql(fresh, migrations.migrate)
        yield fresh


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


async def test_store_runs_inside_a_trio_asyncio_loop_too(dsn: str) -> None:
    """The store no longer needs trio-asyncio (pg_bridge.py), but a caller that still opens
    its loop (code written for the earlier bridge) works unchanged."""
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
        await conn.execute(
            "INSERT INTO ledger_transactions (txn_id, kind, reference, created_at_ms)"
            " VALUES ('t1', 'capture', 'r1', 1)"
        )
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


# --- the embedded server manager (payengine/database.py) ---------------------------------------

_ATTACH = """
import sys
from pathlib import Path
from payengine.database import embedded_status, start_embedded
start_embedded(Path(sys.argv[1]))
print(embedded_status(Path(sys.argv[1])).pid)
"""


def test_database_url_wins_over_the_embedded_server(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://u@db.example/x", "PAYENGINE_DATA_DIR": str(tmp_path)}
    assert database.resolve_database_url(environ=env) == "postgresql://u@db.example/x"
    assert not (tmp_path / "pg").exists()


async def test_processes_on_one_data_dir_share_one_embedded_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    try:
        async with trio.open_nursery() as nursery:
            results: list[subprocess.CompletedProcess[bytes]] = []

            async def attach() -> None:
                command = [sys.executable, "-c", _ATTACH, str(data_dir)]
                results.append(await trio.run_process(command, capture_stdout=True))

            for _ in range(3):
                nursery.start_soon(attach)
        pids = {int(r.stdout.split()[-1]) for r in results}
        assert len(pids) == 1
        dsn = await trio.to_thread.run_sync(database.start_embedded, data_dir)
        current = await pgfixtures.raw_sql(dsn, lambda c: c.fetchval("SELECT current_database()"))
        assert current == database.DATABASE_NAME
        assert database.embedded_status(data_dir).pid in pids
    finally:
        assert await trio.to_thread.run_sync(database.stop_embedded, data_dir)
    assert not database.embedded_status(data_dir).running
    assert not await trio.to_thread.run_sync(database.stop_embedded, data_dir)


@pytest.mark.parametrize("kind", pgfixtures.available_kinds())
async def test_migration_0003_retires_the_booking_subscriber(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written before booking moved into the capture's unit of work: its pending
    'booking' deliveries and subscription go, every other subscriber's stay."""
    shipped = migrations.load_migrations()
    assert [m.name for m in shipped][:3] == [
        "0001_initial",
        "0002_api",
        "0003_retire_booking_subscriber",
    ]

    async def older_schema_with_booking_rows(conn: Any) -> None:
        monkeypatch.setattr(migrations, "load_migrations", lambda: shipped[:2])
        assert await migrations.migrate(conn) == ["0001_initial", "0002_api"]
        monkeypatch.setattr(migrations, "load_migrations", lambda: shipped[:3])
        await conn.execute(
            "INSERT INTO outbox (message_id, topic, key, payload, created_at_ms)"
            " VALUES ('msg_1', 'order.succeeded', 'ord_1', '{}', 1)"
        )
        for subscriber in ("booking", "analytics"):
            await conn.execute(
                "INSERT INTO outbox_subscriptions (subscriber, topic)"
                " VALUES ($1, 'order.succeeded')",
                subscriber,
            )
            await conn.execute(
                "INSERT INTO outbox_deliveries (subscriber, message_id, next_attempt_at_ms)"
                " VALUES ($1, 'msg_1', 1)",
                subscriber,
            )
        assert await migrations.migrate(conn) == ["0003_retire_booking_subscriber"]
        left = await conn.fetch("SELECT subscriber FROM outbox_deliveries ORDER BY subscriber")
        assert [row["subscriber"] for row in left] == ["analytics"]
        subscribed = await conn.fetch("SELECT subscriber FROM outbox_subscriptions")
        assert [row["subscriber"] for row in subscribed] == ["analytics"]

    async with pgfixtures.fresh_database(kind) as fresh:
        await pgfixtures.raw_sql(fresh, older_schema_with_booking_rows)


async def test_dropping_a_connection_the_pool_already_has_back_raises_nothing(dsn: str) -> None:
    """A failed rollback has already given its connection back (`_end_unit` releases in a
    `finally`); dropping it then must not raise over the caller's own error, and the pool must
    go on serving."""
    from engine.store.pg_txn import terminate as _terminate

    async def released_then_dropped() -> int:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            conn = await pool.acquire()
            await pool.release(conn)
            with pytest.raises(asyncpg.InterfaceError):
                conn.terminate()  # what _end did before: this replaced the caller's error
            _terminate(conn)
            async with pool.acquire() as again:
                return int(await again.fetchval("SELECT 41 + 1"))
        finally:
            await pool.close()

    assert await pgfixtures.run_on_asyncio(released_then_dropped) == 42


@pytest.mark.parametrize("kind", pgfixtures.available_kinds())
async def test_migration_0004_keeps_claims_made_before_owners_existed(kind: str) -> None:
    """A claim written before 0004 has no owner: only the in-flight timeout takes it over."""
    shipped = migrations.load_migrations()
    assert [m.name for m in shipped][3] == "0004_idempotency_owners"
    async with pgfixtures.fresh_database(kind) as dsn:

        async def claim_before_0004(conn: Any) -> None:
            for migration in shipped[:3]:
                await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO idempotency (scope, key, fingerprint, created_at_ms)"
                " VALUES ('scope', 'k', 'fp', 1000)"
            )
            await conn.execute(shipped[3].sql)

        await pgfixtures.raw_sql(dsn, claim_before_0004)
        async with open_postgres_store(dsn, migrate=False) as store:
            retry = IdempotencyRecord("scope", "k", "fp", created_at_ms=2_000, owner="inc_b")
            assert not await store.take_over_idempotent(retry, abandoned_before_ms=1_000)
            assert await store.take_over_idempotent(retry, abandoned_before_ms=1_001)
            async with store.unit_of_work() as uow:
                claim = await uow.get_idempotency("scope", "k")
            assert claim is not None and claim.owner == "inc_b"


@pytest.mark.parametrize(
    ("error", "is_outage"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (FileNotFoundError(2, "no socket"), True),  # the embedded server's socket is gone
        (TimeoutError("connect timed out"), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.exceptions.InterfaceError("connection is closed"), True),
        (asyncpg.exceptions.InterfaceError("connection has been released back to the pool"), True),
        (asyncpg.exceptions.InterfaceError("another operation is in progress"), False),
        (asyncpg.exceptions.TargetServerAttributeNotMatched("no read-write host"), True),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), False),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (asyncpg.exceptions.UndefinedTableError("no such table"), False),
    ],
)
def test_only_connection_failures_are_store_unavailable(
    error: BaseException, is_outage: bool
) -> None:
    assert isinstance(unavailable(error), StoreUnavailable) is is_outage


@pytest.mark.parametrize("kind", pgfixtures.available_kinds())
async def test_terminated_connections_are_store_unavailable_then_the_pool_reconnects(
    kind: str,
) -> None:
    """`pg_terminate_backend` of every connection mid-unit: that unit raises StoreUnavailable
    (nothing committed), and the next unit gets a fresh connection and works."""
    async with pgfixtures.fresh_database(kind) as dsn, open_postgres_store(dsn) as store:
        payment, orders = payment_with_orders([100])
        database = dsn.rsplit("/", 1)[1].split("?")[0]

        async def terminate_all(conn: Any) -> None:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )

        with pytest.raises(StoreUnavailable):
            async with store.unit_of_work() as uow:
                await uow.insert_payment(payment, orders)
                await pgfixtures.raw_sql(pgfixtures.admin_url(kind), terminate_all)
                await uow.get_payment(payment.payment_id)
        assert await store.get_payment(payment.payment_id) is None  # nothing was committed
        async with store.unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
        assert await store.get_payment(payment.payment_id) is not None


def test_a_lost_connections_leftover_asyncio_error_is_logged_not_raised() -> None:
    """asyncpg may leave `ConnectionError('unexpected connection_lost() call')` in a future
    nobody awaits when the server drops a connection; trio-asyncio's default handler would
    raise it into the loop's nursery and end the engine. Other errors still go to it."""
    from engine.store.postgres import tolerate_lost_connections

    class Loop:
        def __init__(self) -> None:
            self.handler: Any = None
            self.passed_on: list[dict[str, Any]] = []

        def set_exception_handler(self, handler: Any) -> None:
            self.handler = handler

        def default_exception_handler(self, context: dict[str, Any]) -> None:
            self.passed_on.append(context)

    loop = Loop()
    tolerate_lost_connections(loop)
    lost = {
        "message": "Future exception was never retrieved",
        "exception": ConnectionError("unexpected connection_lost() call"),
    }
    loop.handler(loop, lost)
    assert loop.passed_on == []
    bug = {"message": "Future exception was never retrieved", "exception": ValueError("bug")}
    loop.handler(loop, bug)
    assert loop.passed_on == [bug]
    first = loop.handler
    tolerate_lost_connections(loop)  # once per loop
    assert loop.handler is first
