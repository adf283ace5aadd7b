"""The lease table (migration 0009) behaves the same in every store: takeover bumps the epoch,
expiry is on the store's clock, a process renews only what it still owns, two processes never
take the same partition, and (PostgreSQL) a unit of work commits only under its fence.

Lease times here are short real times: the PostgreSQL table expires on the database's clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import NotFound
from engine.leases import CURRENT_FENCE, Fence, Grant, LeaseLost, LeaseStore
from engine.store.batching import batched_unit_of_work
from engine.store.memory_leases import MemoryLeases
from engine.store.port import Store
from tests.factories import payment_with_orders

TTL_S = 0.4
PARTITIONS = 8


class TrioWallClock:
    def monotonic(self) -> float:
        return trio.current_time()

    def now_ms(self) -> int:
        return int(trio.current_time() * 1000)


@pytest.fixture
async def leases(store: Store) -> AsyncIterator[LeaseStore]:
    if store.name == "postgres":
        from engine.store.pg_leases import PgLeases

        table: LeaseStore = PgLeases(store)
    else:
        table = MemoryLeases(TrioWallClock())
    await table.ensure_partitions(PARTITIONS)
    await table.ensure_partitions(PARTITIONS)  # idempotent
    yield table


async def test_free_partitions_are_taken_at_epoch_one_and_shared_out(leases: LeaseStore) -> None:
    a = await leases.acquire("inc_a", 5, TTL_S)
    b = await leases.acquire("inc_b", 5, TTL_S)
    assert [g.epoch for g in a + b] == [1] * PARTITIONS
    assert {g.partition for g in a} | {g.partition for g in b} == set(range(PARTITIONS))
    assert not {g.partition for g in a} & {g.partition for g in b}
    assert await leases.acquire("inc_c", 5, TTL_S) == []
    rows = await leases.table()
    assert [r.owner for r in rows] == ["inc_a"] * 5 + ["inc_b"] * 3
    assert all(r.live for r in rows)


async def test_renew_keeps_only_what_is_still_owned(leases: LeaseStore) -> None:
    a = await leases.acquire("inc_a", 2, TTL_S)
    assert await leases.renew("inc_a", [0, 1, 5], TTL_S) == a  # 5 is nobody's: not renewed
    assert await leases.renew("inc_b", [0, 1], TTL_S) == []


async def test_an_expired_lease_is_taken_over_at_the_next_epoch(leases: LeaseStore) -> None:
    await leases.acquire("inc_a", PARTITIONS, TTL_S)
    assert await leases.acquire("inc_b", 1, TTL_S) == []
    await trio.sleep(TTL_S + 0.2)
    taken = await leases.acquire("inc_b", 2, TTL_S)
    assert taken == [Grant(0, 2), Grant(1, 2)]
    # The old owner (paused past its lease) renews the rest, not what was taken.
    assert [g.partition for g in await leases.renew("inc_a", range(PARTITIONS), TTL_S)] == list(
        range(2, PARTITIONS)
    )


async def test_release_frees_at_once_and_the_next_taker_bumps_the_epoch(
    leases: LeaseStore,
) -> None:
    await leases.acquire("inc_a", 3, TTL_S)
    await leases.release("inc_a", [1])
    await leases.release("inc_b", [0])  # not b's: nothing happens
    assert await leases.acquire("inc_b", 3, TTL_S) == [Grant(1, 2), Grant(3, 1), Grant(4, 1)]
    await leases.leave("inc_a")
    assert {r.partition for r in await leases.table() if r.owner is None} == {0, 2, 5, 6, 7}


async def test_members_and_the_owners_url(leases: LeaseStore) -> None:
    assert await leases.join("inc_a", "http://a", TTL_S) == 1
    assert await leases.join("inc_b", "http://b", TTL_S) == 2
    assert await leases.join("inc_a", "http://a", TTL_S) == 2
    await leases.acquire("inc_b", 1, TTL_S)
    assert await leases.owner_url(0) == "http://b"
    assert await leases.owner_url(1) is None
    await trio.sleep(TTL_S + 0.2)
    assert await leases.owner_url(0) is None  # lapsed
    assert await leases.join("inc_a", "http://a", TTL_S) == 1
    await leases.leave("inc_a")
    assert await leases.join("inc_c", "http://c", TTL_S) == 1


async def test_concurrent_takers_never_take_the_same_partition(leases: LeaseStore) -> None:
    taken: dict[str, list[Grant]] = {}

    async def take(me: str) -> None:
        taken[me] = await leases.acquire(me, 3, TTL_S)

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(take, f"inc_{n}")
    partitions = [g.partition for grants in taken.values() for g in grants]
    assert sorted(partitions) == list(range(PARTITIONS))


async def test_a_unit_commits_only_under_its_fence(store: Store, leases: LeaseStore) -> None:
    [grant] = await leases.acquire("inc_a", 1, TTL_S)
    if store.name != "postgres":
        # One process: nobody to fence off, so the memory store's fence is a no-op.
        stale = CURRENT_FENCE.set(Fence(grant.partition, "inc_gone", grant.epoch + 7))
        try:
            payment, orders = payment_with_orders([100])
            async with store.unit_of_work() as uow:
                await uow.insert_payment(payment, orders)
            assert await store.get_payment(payment.payment_id) is not None
        finally:
            CURRENT_FENCE.reset(stale)
        return
    payment, orders = payment_with_orders([100])
    token = CURRENT_FENCE.set(Fence(grant.partition, "inc_a", grant.epoch))
    try:
        async with store.unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
        assert await store.get_payment(payment.payment_id) is not None
        await trio.sleep(TTL_S + 0.2)
        assert await leases.acquire("inc_b", 1, TTL_S) == [Grant(grant.partition, 2)]
        other, other_orders = payment_with_orders([200])
        with pytest.raises(LeaseLost):
            async with store.unit_of_work() as uow:
                await uow.insert_payment(other, other_orders)
        assert await store.get_payment(other.payment_id) is None  # nothing written
        # A unit that wrote nothing needs no fence; an aborted one keeps its own error.
        async with store.unit_of_work():
            pass
        with pytest.raises(NotFound):
            async with store.unit_of_work() as uow:
                await uow.update_payment(other)
    finally:
        CURRENT_FENCE.reset(token)


async def test_a_write_behind_unit_commits_only_under_its_fence(
    store: Store, leases: LeaseStore
) -> None:
    """Group commit's units (pg_batch.py) check the fence too, in the group's transaction: a
    stale one fails alone and writes nothing; a unit beside it in the group commits."""
    [grant] = await leases.acquire("inc_a", 1, TTL_S)
    mine, mine_orders = payment_with_orders([100])
    token = CURRENT_FENCE.set(Fence(grant.partition, "inc_a", grant.epoch))
    try:
        async with batched_unit_of_work(store) as uow:
            await uow.insert_payment(mine, mine_orders)
        assert await store.get_payment(mine.payment_id) is not None
    finally:
        CURRENT_FENCE.reset(token)
    if store.name != "postgres":
        return  # one process: the memory store's fence is a no-op (test above)
    await trio.sleep(TTL_S + 0.2)
    assert await leases.acquire("inc_b", 1, TTL_S) == [Grant(grant.partition, 2)]
    stale, stale_orders = payment_with_orders([200])
    free, free_orders = payment_with_orders([300])
    outcomes: dict[str, BaseException | None] = {}

    async def commit(name: str, fence: Fence | None, payment: Any, orders: Any) -> None:
        token = CURRENT_FENCE.set(fence)
        try:
            async with batched_unit_of_work(store) as uow:
                await uow.insert_payment(payment, orders)
            outcomes[name] = None
        except LeaseLost as exc:
            outcomes[name] = exc
        finally:
            CURRENT_FENCE.reset(token)

    async with trio.open_nursery() as nursery:  # together: likely one group
        nursery.start_soon(commit, "stale", Fence(grant.partition, "inc_a", 1), stale, stale_orders)
        nursery.start_soon(commit, "free", None, free, free_orders)
    assert isinstance(outcomes["stale"], LeaseLost)
    assert outcomes["free"] is None
    assert await store.get_payment(stale.payment_id) is None
    assert await store.get_payment(free.payment_id) is not None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["acquire", "renew", "release", "tick"]),
            st.sampled_from(["inc_a", "inc_b", "inc_c"]),
            st.integers(0, PARTITIONS),
        ),
        max_size=40,
    )
)
def test_epochs_only_grow_and_a_partition_has_one_live_owner(
    ops: list[tuple[str, str, int]],
) -> None:
    """Any sequence of takers, renewals, releases and time passing (the memory table, on a
    clock the test moves): epochs never go down, and they go up exactly on a change of hands."""

    class Clock:
        ms = 0

        def monotonic(self) -> float:
            return self.ms / 1000

        def now_ms(self) -> int:
            return self.ms

    clock = Clock()
    table = MemoryLeases(clock)

    async def go() -> None:
        await table.ensure_partitions(PARTITIONS)
        before = await table.table()
        for op, me, n in ops:
            if op == "acquire":
                await table.acquire(me, n, 1.0)
            elif op == "renew":
                await table.renew(me, range(n), 1.0)
            elif op == "release":
                await table.release(me, [n])
            else:
                clock.ms += 300 * n
            after = await table.table()
            for old, new in zip(before, after, strict=True):
                assert new.epoch >= old.epoch
                if new.epoch > old.epoch:
                    assert new.epoch == old.epoch + 1 and new.owner == me and op == "acquire"
                if new.owner is not None and new.owner != old.owner:
                    assert new.epoch == old.epoch + 1  # a change of hands is a takeover
            before = after

    trio.run(go)
