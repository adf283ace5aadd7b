"""Write-behind units and group commit on PostgreSQL (engine/store/pg_batch.py, issue 15).

What must hold: a write-only unit costs one crossing; its writes are atomic (an expected error
at the end keeps none of them); units that commit together share one transaction, yet each
learns exactly whether its own work committed (a conflicting unit fails alone); reads see
committed state; operations that cannot be queued are refused; stores without write-behind
hand out their ordinary unit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
import trio

from engine.errors import DuplicateKey, VersionConflict
from engine.records import PspEvent
from engine.store.batching import batched_unit_of_work
from engine.store.memory import MemoryStore
from engine.store.pg_bridge import Bridge
from engine.store.postgres import PostgresLimits, PostgresStore, open_postgres_store
from tests import pgfixtures
from tests.factories import message, payment_with_orders, psp_event

pytestmark = pytest.mark.postgres

#: Long enough that units started together in one trio tick share a group on a loaded VM.
LINGER_S = 0.2


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with pgfixtures.fresh_database("embedded") as url:
        yield url


def crossings(store: PostgresStore) -> int:
    bridge = store._bridge
    assert isinstance(bridge, Bridge)
    return bridge.crossings


async def test_a_write_only_unit_crosses_once_and_commits_atomically(dsn: str) -> None:
    async with open_postgres_store(dsn) as store:
        payment, orders = payment_with_orders([100, 200])
        before = crossings(store)
        async with store.batched_unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
            await uow.record_psp_event(psp_event())
            await uow.append_outbox(message())
        assert crossings(store) - before == 1
        assert await store.get_payment(payment.payment_id) == payment
        async with store.batched_unit_of_work() as uow:
            assert await uow.get_payment(payment.payment_id) == payment  # committed state
            updated = await uow.update_payment(attrs.evolve(payment, updated_at_ms=9_000))
        assert updated.version == payment.version + 1
        assert await store.get_payment(payment.payment_id) == updated


async def test_an_expected_error_surfaces_at_the_end_and_keeps_nothing(dsn: str) -> None:
    async with open_postgres_store(dsn) as store:
        payment, orders = payment_with_orders([100])
        async with store.batched_unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
        kept = psp_event()
        with pytest.raises(VersionConflict):
            async with store.batched_unit_of_work() as uow:
                await uow.record_psp_event(kept)
                await uow.update_payment(attrs.evolve(payment, version=payment.version + 5))
        async with store.unit_of_work() as uow:  # the event went with the failed unit
            await uow.record_psp_event(kept)
        stats = store.statistics()
        assert stats.units_rolled_back >= 1


@pytest.mark.parametrize("failing", [(), (0,), (3,), (7,), (0, 4, 7)])
async def test_units_committed_together_each_learn_their_own_outcome(
    dsn: str, failing: tuple[int, ...]
) -> None:
    """Eight units in one group; those whose PSP event is a duplicate fail with
    DuplicateKey, alone: every other unit's writes are committed."""
    limits = PostgresLimits(group_linger_s=LINGER_S)
    async with open_postgres_store(dsn, limits=limits) as store:
        taken = [psp_event() for _ in failing]
        async with store.unit_of_work() as uow:
            for event in taken:
                await uow.record_psp_event(event)
        duplicates = dict(zip(failing, taken, strict=True))
        payments = [payment_with_orders([100 + i]) for i in range(8)]
        outcomes: dict[int, BaseException | None] = {}

        async def one(i: int) -> None:
            payment, orders = payments[i]
            event = duplicates.get(i, psp_event())
            try:
                async with store.batched_unit_of_work() as uow:
                    await uow.insert_payment(payment, orders)
                    await uow.record_psp_event(event)
            except DuplicateKey as exc:
                outcomes[i] = exc
            else:
                outcomes[i] = None

        before = store.group.statistics()
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
        stats = store.group.statistics()
        assert stats.units - before.units == 8
        assert stats.groups - before.groups < 8  # they shared transactions
        if not failing:
            assert stats.fallbacks == before.fallbacks
        for i, (payment, _) in enumerate(payments):
            committed = await store.get_payment(payment.payment_id)
            if i in failing:
                assert isinstance(outcomes[i], DuplicateKey), outcomes
                assert committed is None
            else:
                assert outcomes[i] is None, outcomes
                assert committed == payment


async def test_a_batched_unit_refuses_what_it_cannot_queue(dsn: str) -> None:
    async with open_postgres_store(dsn) as store:
        with pytest.raises(AssertionError, match="not batched"):
            async with store.batched_unit_of_work() as uow:
                await uow.retry_delivery("notify", "msg-1", 1, "boom")


async def test_the_group_limits_are_checked() -> None:
    with pytest.raises(Exception, match="group_linger_s"):
        PostgresLimits(group_linger_s=-1.0).check()
    with pytest.raises(Exception, match="group_size_max"):
        PostgresLimits(group_size_max=0).check()


async def test_a_store_without_write_behind_hands_out_its_ordinary_unit() -> None:
    store = MemoryStore()
    event = PspEvent("evt-mem", "charge.captured", {}, 1)
    async with batched_unit_of_work(store) as uow:
        await uow.record_psp_event(event)
    with pytest.raises(DuplicateKey):  # raised by the call itself, as the memory unit does
        async with batched_unit_of_work(store) as uow:
            await uow.record_psp_event(event)


async def test_units_arriving_while_a_group_ends_are_never_left_waiting(dsn: str) -> None:
    """Waves of concurrent units: each arrives at some moment of a group's life (while
    it gathers, commits, or has just found nothing more to take); every one commits."""
    async with open_postgres_store(dsn) as store:
        done = 0

        async def worker() -> None:
            nonlocal done
            for _ in range(25):
                async with store.batched_unit_of_work() as uow:
                    await uow.record_psp_event(psp_event())
                done += 1

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for _ in range(16):
                    nursery.start_soon(worker)
        assert done == 16 * 25
        assert store.group.statistics().units == 16 * 25
