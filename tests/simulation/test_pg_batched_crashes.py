"""Write-behind units with crash points in the simulator's PostgreSQL tier (pg_batched.py).

What must hold, whatever crash point fires: a unit is written wholly or not at all; a crash at
or before the point that precedes the group commit writes nothing; a crash after it leaves all
written; and a caller never goes on after its block unless its unit committed. The engine
opens such units through `engine.store.batching`, which must find PgSimStore's.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import DuplicateKey, StoreUnavailable
from engine.records import Payment, PaymentOrder, PspEvent
from engine.store.batching import batched_unit_of_work
from engine.store.postgres import PostgresStore, open_postgres_store
from simulator.pg_store import PgSimStore
from tests import pgfixtures
from tests.factories import message, payment_with_orders, psp_event

pytestmark = pytest.mark.postgres

#: The crash points one unit of `_unit` passes: its start, a read, three writes, before the
#: group commit (nothing written up to here), after it.
POINTS_BEFORE_COMMIT = 6
POINTS = POINTS_BEFORE_COMMIT + 1


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with pgfixtures.fresh_database("embedded") as url:
        yield url


class Crasher:
    """The world's crash, in small: the n-th crash point cancels the incarnation's scope."""

    def __init__(self, at: int | None, *, outage_at: int | None = None) -> None:
        self.at = at
        self.outage_at = outage_at
        self.calls = 0
        self.scope = trio.CancelScope()

    async def checkpoint(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.scope.cancel()
        await trio.lowlevel.checkpoint()
        if self.calls == self.outage_at:
            raise StoreUnavailable("simulated database outage")


async def _unit(
    sim: PgSimStore, told: list[str], payment: Payment, orders: list[PaymentOrder], event: PspEvent
) -> None:
    """One unit as an actor opens it (a read, then writes); `told` learns of its success."""
    payment_id = payment.payment_id
    async with batched_unit_of_work(sim) as uow:  # type: ignore[arg-type]
        assert await uow.get_payment(payment_id) is None
        await uow.insert_payment(payment, orders)
        await uow.record_psp_event(event)
        await uow.append_outbox(message(key=payment_id))
    told.append(payment_id)


async def _written(pg: PostgresStore, payment_id: str, event: PspEvent) -> bool:
    """Whether the unit's rows are all there (True) or none (False); anything else fails."""
    payment = await pg.get_payment(payment_id)
    try:
        async with pg.unit_of_work() as uow:
            await uow.record_psp_event(event)
        event_there = False
    except DuplicateKey:
        event_there = True
    assert (payment is not None) == event_there, f"unit {payment_id} written in part"
    return event_there


async def test_each_crash_point_of_one_unit_writes_nothing_before_the_commit_and_all_after(
    dsn: str,
) -> None:
    async with open_postgres_store(dsn) as pg:
        for at in [*range(1, POINTS + 1), None]:
            crasher = Crasher(at)
            sim = PgSimStore(crasher.checkpoint, crash_point=crasher.checkpoint)
            sim.attach(pg)
            told: list[str] = []
            payment, orders = payment_with_orders([100, 250])
            payment_id, event = payment.payment_id, psp_event()
            with crasher.scope:
                await _unit(sim, told, payment, orders, event)
            assert crasher.calls == (POINTS if at is None else at)
            written = await _written(pg, payment_id, event)
            counts = sim.batched
            if at is None:
                assert told == [payment_id] and written
                assert counts.committed == 1 and counts.cancelled_after_commit == 0
            elif at <= POINTS_BEFORE_COMMIT:
                assert not told and not written
                assert counts.cancelled_before_commit == 1 and counts.committed == 0
            else:  # after the group commit: all written, the caller never went on
                assert not told and written
                assert counts.committed == 1 and counts.cancelled_after_commit == 1


async def test_a_crash_among_concurrent_units_leaves_each_whole_or_absent(dsn: str) -> None:
    await _concurrent(dsn, units=6, at=None)


@pytest.fixture(scope="module")
def shared_dsn() -> Iterator[str]:
    """One database for every example (each example's rows have ids of their own)."""
    url, name = pgfixtures.create_database_sync("embedded")
    try:
        yield url
    finally:
        pgfixtures.drop_database_sync("embedded", name)


@settings(max_examples=25, deadline=None)
@given(units=st.integers(min_value=1, max_value=8), at=st.integers(min_value=1, max_value=60))
def test_any_crash_point_among_concurrent_units_leaves_each_whole_or_absent(
    shared_dsn: str, units: int, at: int
) -> None:
    trio.run(functools.partial(_concurrent, shared_dsn, units=units, at=at))


async def _concurrent(dsn: str, *, units: int, at: int | None) -> None:
    """`units` units run together (their commits share groups); the `at`-th crash point of
    all of them cancels every one. Each is whole or absent, and only committed ones told."""
    async with open_postgres_store(dsn, pool_size_max=4) as pg:
        crasher = Crasher(at)
        sim = PgSimStore(crasher.checkpoint, crash_point=crasher.checkpoint)
        sim.attach(pg)
        told: list[str] = []
        ids: list[tuple[str, PspEvent]] = []

        async def one() -> None:
            # The ids are made before the unit runs, so a crashed unit's rows can be looked for.
            payment, orders = payment_with_orders([100])
            event = psp_event()
            ids.append((payment.payment_id, event))
            async with batched_unit_of_work(sim) as uow:  # type: ignore[arg-type]
                await uow.insert_payment(payment, orders)
                await uow.record_psp_event(event)
            told.append(payment.payment_id)

        with crasher.scope:
            async with trio.open_nursery() as nursery:
                for _ in range(units):
                    nursery.start_soon(one)
        written = {pid for pid, event in ids if await _written(pg, pid, event)}
        assert set(told) <= written
        counts = sim.batched
        assert counts.committed == len(written)
        if at is None or at > crasher.calls:
            assert len(told) == units == len(written)
        assert counts.committed + counts.cancelled_before_commit + counts.raised == units


async def test_an_outage_before_the_commit_writes_nothing_and_the_caller_learns_it(
    dsn: str,
) -> None:
    async with open_postgres_store(dsn) as pg:
        crasher = Crasher(None, outage_at=POINTS_BEFORE_COMMIT)
        sim = PgSimStore(crasher.checkpoint, crash_point=crasher.checkpoint)
        sim.attach(pg)
        told: list[str] = []
        with pytest.raises(StoreUnavailable):
            await _unit(sim, told, *payment_with_orders([100]), psp_event())
        assert not told and sim.batched.raised == 1 and sim.batched.committed == 0
        assert pg.group.statistics().units == 0  # nothing reached the group commit
