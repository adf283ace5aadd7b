"""Refunds (migration 0004) behave the same in every store: unique refund id and creation key,
a refund needs an existing order, optimistic versions, paging by id, recovery's unfinished list.

The database's own refusal of a non-positive amount is in test_postgres_enforcement.py; here
the record refuses it before any store sees it.
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import DuplicateKey, NotFound, VersionConflict
from engine.records import PaymentOrder, Refund
from engine.states import RefundStatus, is_terminal
from engine.store.memory import MemoryStore
from engine.store.port import Store
from tests.factories import next_id, payment_with_orders


class Boom(Exception):
    pass


def refund_of(order: PaymentOrder, amount_minor: int = 100, **changes: object) -> Refund:
    refund = Refund(
        refund_id=next_id("re"),
        order_id=order.order_id,
        currency=order.currency,
        amount_minor=amount_minor,
        status=RefundStatus.REQUESTED,
        created_at_ms=5_000,
        updated_at_ms=5_000,
        creation_key=next_id("key"),
        reason="damaged",
    )
    return attrs.evolve(refund, **changes)


async def _stored_order(store: Store, amount_minor: int = 1000) -> PaymentOrder:
    payment, orders = payment_with_orders([amount_minor])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
    return orders[0]


async def test_refund_round_trips(store: Store) -> None:
    order = await _stored_order(store)
    refund = refund_of(order, psp_refund_id=None, reason=None)
    async with store.unit_of_work() as uow:
        await uow.insert_refund(refund)
        assert await uow.get_refund(refund.refund_id) == refund  # reads see own writes
        assert await uow.get_refund_by_creation_key(refund.creation_key) == refund
        assert await uow.list_refunds(order.order_id, 10) == [refund]
    assert await store.get_refund(refund.refund_id) == refund
    assert await store.list_refunds(order.order_id, 10) == [refund]
    assert await store.get_refund("re_missing") is None


async def test_failed_unit_keeps_no_refund(store: Store) -> None:
    order = await _stored_order(store)
    refund = refund_of(order)
    with pytest.raises(Boom):
        async with store.unit_of_work() as uow:
            await uow.insert_refund(refund)
            raise Boom
    assert await store.get_refund(refund.refund_id) is None
    assert await store.list_refunds(order.order_id, 10) == []
    assert await store.list_unfinished_refunds(10) == []
    async with store.unit_of_work() as uow:  # the creation key is free again
        await uow.insert_refund(refund)


async def test_refund_id_and_creation_key_are_unique(store: Store) -> None:
    order = await _stored_order(store)
    first = refund_of(order)
    async with store.unit_of_work() as uow:
        await uow.insert_refund(first)
    same_id = refund_of(order, refund_id=first.refund_id)
    same_key = refund_of(order, creation_key=first.creation_key)
    for clash, key in ((same_id, "refunds.refund_id"), (same_key, "refunds.creation_key")):
        with pytest.raises(DuplicateKey) as caught:
            async with store.unit_of_work() as uow:
                await uow.insert_refund(clash)
        assert caught.value.key == key
    # The refusal leaves the unit usable: the caller may catch it and read the first refund.
    async with store.unit_of_work() as uow:
        with pytest.raises(DuplicateKey):
            await uow.insert_refund(same_key)
        assert await uow.get_refund_by_creation_key(first.creation_key) == first
    assert await store.list_refunds(order.order_id, 10) == [first]


async def test_concurrent_creations_with_one_key_make_one_refund(store: Store) -> None:
    order = await _stored_order(store)
    key = next_id("key")
    made: list[str] = []
    refused: list[str] = []

    async def create() -> None:
        refund = refund_of(order, creation_key=key)
        try:
            async with store.unit_of_work() as uow:
                await trio.lowlevel.checkpoint()
                await uow.insert_refund(refund)
            made.append(refund.refund_id)
        except DuplicateKey as exc:
            assert exc.key == "refunds.creation_key"
            refused.append(refund.refund_id)

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(create)
    assert len(made) == 1 and len(refused) == 3
    assert [r.refund_id for r in await store.list_refunds(order.order_id, 10)] == made


async def test_refund_of_unknown_order_is_not_found(store: Store) -> None:
    order = await _stored_order(store)
    with pytest.raises(NotFound):
        async with store.unit_of_work() as uow:
            await uow.insert_refund(refund_of(order, order_id="ord_unknown"))
    assert await store.list_unfinished_refunds(10) == []


async def test_refund_of_order_inserted_in_the_same_unit(store: Store) -> None:
    payment, orders = payment_with_orders([700])
    refund = refund_of(orders[0])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
        await uow.insert_refund(refund)
    assert await store.get_refund(refund.refund_id) == refund


async def test_refund_updates_are_optimistic(store: Store) -> None:
    order = await _stored_order(store)
    refund = refund_of(order)
    async with store.unit_of_work() as uow:
        await uow.insert_refund(refund)
    async with store.unit_of_work() as uow:
        submitted = await uow.update_refund(
            attrs.evolve(refund, status=RefundStatus.SUBMITTED, attempts=1, updated_at_ms=6_000)
        )
        assert submitted.version == 1
        done = await uow.update_refund(
            attrs.evolve(submitted, status=RefundStatus.SUCCEEDED, psp_refund_id="re_psp_1")
        )
        assert done.version == 2
    with pytest.raises(VersionConflict):
        async with store.unit_of_work() as uow:
            await uow.update_refund(attrs.evolve(refund, status=RefundStatus.FAILED))
    with pytest.raises(NotFound):
        async with store.unit_of_work() as uow:
            await uow.update_refund(refund_of(order))
    stored = await store.get_refund(refund.refund_id)
    assert stored == done


async def test_concurrent_refund_updates_let_exactly_one_win(store: Store) -> None:
    order = await _stored_order(store)
    refund = refund_of(order)
    async with store.unit_of_work() as uow:
        await uow.insert_refund(refund)
    wins: list[int] = []

    async def bump(n: int) -> None:
        try:
            async with store.unit_of_work() as uow:
                current = await uow.get_refund(refund.refund_id)
                assert current is not None
                await trio.lowlevel.checkpoint()
                await uow.update_refund(attrs.evolve(current, attempts=n))
            wins.append(n)
        except VersionConflict:
            pass

    async with trio.open_nursery() as nursery:
        for n in range(1, 5):
            nursery.start_soon(bump, n)
    stored = await store.get_refund(refund.refund_id)
    assert stored is not None and wins and stored.version == len(wins)


async def test_unfinished_refunds_drive_recovery(store: Store) -> None:
    order = await _stored_order(store)
    refunds = {status: refund_of(order, status=status) for status in RefundStatus}
    async with store.unit_of_work() as uow:
        for refund in refunds.values():
            await uow.insert_refund(refund)
    unfinished = await store.list_unfinished_refunds(10)
    expected = sorted(r.refund_id for s, r in refunds.items() if not is_terminal(s))
    assert [r.refund_id for r in unfinished] == expected
    async with store.unit_of_work() as uow:
        requested = refunds[RefundStatus.REQUESTED]
        await uow.update_refund(attrs.evolve(requested, status=RefundStatus.FAILED))
    after = await store.list_unfinished_refunds(10)
    assert [r.refund_id for r in after] == [refunds[RefundStatus.SUBMITTED].refund_id]


async def test_refund_lists_page_by_id(store: Store) -> None:
    order = await _stored_order(store)
    other = await _stored_order(store)
    mine = [refund_of(order, amount_minor=n) for n in range(1, 8)]
    async with store.unit_of_work() as uow:
        for refund in mine:
            await uow.insert_refund(refund)
        await uow.insert_refund(refund_of(other))
    seen: list[str] = []
    after: str | None = None
    while page := await store.list_refunds(order.order_id, 3, after):
        assert len(page) <= 3
        seen.extend(r.refund_id for r in page)
        after = page[-1].refund_id
    assert seen == sorted(r.refund_id for r in mine)
    unfinished: list[str] = []
    cursor: str | None = None
    while batch := await store.list_unfinished_refunds(2, cursor):
        unfinished.extend(r.refund_id for r in batch)
        cursor = batch[-1].refund_id
    assert len(unfinished) == 8 and unfinished == sorted(unfinished)
    async with store.unit_of_work() as uow:
        in_unit = await uow.list_refunds(order.order_id, 3, mine[2].refund_id)
    assert [r.refund_id for r in in_unit] == sorted(r.refund_id for r in mine)[3:6]


@given(st.integers(max_value=0))
def test_refund_amount_must_be_positive(amount_minor: int) -> None:
    _payment, orders = payment_with_orders([100])
    with pytest.raises(ValueError, match="amount_minor must be a positive integer"):
        refund_of(orders[0], amount_minor=amount_minor)


async def test_memory_store_refund_indexes_follow_commits() -> None:
    """The memory store's own indexes: a refund read back by key after a status change."""
    store = MemoryStore(checkpoint=trio.lowlevel.checkpoint)
    order = await _stored_order(store)
    refund = refund_of(order)
    async with store.unit_of_work() as uow:
        await uow.insert_refund(refund)
    async with store.unit_of_work() as uow:
        await uow.update_refund(attrs.evolve(refund, status=RefundStatus.FAILED))
    async with store.unit_of_work() as uow:
        found = await uow.get_refund_by_creation_key(refund.creation_key)
    assert found is not None and found.status is RefundStatus.FAILED and found.version == 1
