"""The PostgreSQL store's bridge (engine/store/pg_bridge.py): what one unit of work costs in
crossings, deferred outbox acks, cancellation while a statement runs, and the loop's thread.

Counts, not timings: `Bridge.crossings` counts jobs handed to the asyncio thread (one trio
wake-up each), and a statement counter on the connection counts round trips.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from engine.store.pg_bridge import Bridge
from engine.store.postgres import PostgresStore, open_postgres_store
from tests import pgfixtures
from tests.factories import message, payment_with_orders, psp_event

pytestmark = pytest.mark.postgres

BRIDGE_THREAD = "payengine-asyncpg"


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with pgfixtures.fresh_database("embedded") as url:
        yield url


def crossings(store: PostgresStore) -> int:
    bridge = store._bridge
    assert isinstance(bridge, Bridge)
    return bridge.crossings


async def test_a_unit_crosses_once_per_operation_plus_once_to_end(dsn: str) -> None:
    async with open_postgres_store(dsn) as store:
        payment, orders = payment_with_orders([100, 200])
        before = crossings(store)
        async with store.unit_of_work() as uow:  # acquire + BEGIN ride with the first operation
            await uow.insert_payment(payment, orders)
            await uow.record_psp_event(psp_event())
        assert crossings(store) - before == 3
        before = crossings(store)
        async with store.unit_of_work():  # nothing run: nothing begun, nothing to end
            pass
        assert crossings(store) == before
        assert await store.get_payment(payment.payment_id) == payment
        assert crossings(store) == before + 1


async def test_a_units_acks_go_as_one_statement_with_its_end(dsn: str) -> None:
    async with open_postgres_store(dsn) as store:
        await store.register_subscriber("notify", ["order.succeeded"])
        sent = [message() for _ in range(5)]
        async with store.unit_of_work() as uow:
            for m in sent:
                await uow.append_outbox(m)
        due = await store.fetch_due_deliveries("notify", 10**15, 10)
        assert len(due) == 5
        before = crossings(store)
        async with store.unit_of_work() as uow:
            for d in due:
                await uow.ack_delivery("notify", d.message.message_id)
        assert crossings(store) - before == 1  # acks only: one autocommit statement
        assert await store.count_pending_deliveries("notify") == 0


async def test_acks_are_sent_before_the_units_next_operation_and_roll_back_with_it(
    dsn: str,
) -> None:
    async with open_postgres_store(dsn) as store:
        await store.register_subscriber("notify", ["order.succeeded"])
        first, second = message(), message()
        async with store.unit_of_work() as uow:
            await uow.append_outbox(first)
        with pytest.raises(RuntimeError, match="caller gave up"):
            async with store.unit_of_work() as uow:
                await uow.ack_delivery("notify", first.message_id)
                await uow.append_outbox(second)  # the ack went first, in this transaction
                raise RuntimeError("caller gave up")
        pending = await store.fetch_due_deliveries("notify", 10**15, 10)
        assert [d.message.message_id for d in pending] == [first.message_id]
        async with store.unit_of_work() as uow:
            await uow.ack_delivery("notify", first.message_id)
            await uow.append_outbox(second)
        pending = await store.fetch_due_deliveries("notify", 10**15, 10)
        assert [d.message.message_id for d in pending] == [second.message_id]


async def test_a_cancelled_caller_leaves_only_after_its_statement_stopped(dsn: str) -> None:
    """The caller waits for the asyncio side to cancel its statement, so by the time
    `trio.Cancelled` reaches it, its connection runs nothing and its unit rolled back."""

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
            stats = store.statistics()
            assert stats.pool_idle == stats.pool_size  # the connection is back in the pool

            async def sleeping(conn: Any) -> int:
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE state = 'active' AND query LIKE '%pg_sleep(30)%'"
                        " AND pid <> pg_backend_pid()"
                    )
                )

            assert await pgfixtures.raw_sql(dsn, sleeping) == 0
            async with store.unit_of_work() as uow:  # rolled back: the event is new again
                await uow.record_psp_event(event)


async def test_the_loops_thread_ends_with_the_store(dsn: str) -> None:
    async with open_postgres_store(dsn) as store:
        assert await store.get_payment("pay_nothing") is None
        assert any(t.name == BRIDGE_THREAD for t in threading.enumerate())
    assert not any(t.name == BRIDGE_THREAD and t.is_alive() for t in threading.enumerate())


async def test_a_job_the_loop_cancelled_is_an_outage_not_an_asyncio_error() -> None:
    """Only a trio caller's own cancellation becomes trio.Cancelled; a job the loop cancelled
    under it (a store closing) must not leak asyncio's CancelledError into trio code."""
    import asyncio

    from engine.errors import StoreUnavailable
    from engine.store.pg_bridge import open_bridge

    async def cancelled_by_the_loop() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    async def answer() -> int:
        return 42

    async with open_bridge() as bridge:
        with pytest.raises(StoreUnavailable):
            await bridge.run(cancelled_by_the_loop)
        assert await bridge.run(answer) == 42
