"""Disputes (migration 0007) behave the same in every store: a unique dispute id, a dispute
needs an existing order, optimistic versions, paging by id (all, one seller's, one order's) and
recovery's unfinished list, kept in step with the transition table."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import DuplicateKey, NotFound, VersionConflict
from engine.records import Dispute, PaymentOrder
from engine.states import DisputeStatus, is_terminal
from engine.store.memory import MemoryStore
from engine.store.port import Store
from tests.factories import next_id, payment_with_orders


class Boom(Exception):
    pass


def dispute_of(order: PaymentOrder, amount_minor: int = 100, **changes: object) -> Dispute:
    dispute = Dispute(
        dispute_id=next_id("dp"),
        order_id=order.order_id,
        psp_capture_id="cap_1",
        currency=order.currency,
        amount_minor=amount_minor,
        status=DisputeStatus.OPEN,
        created_at_ms=5_000,
        updated_at_ms=5_000,
        reason="fraudulent",
    )
    return attrs.evolve(dispute, **changes)


async def _stored_orders(store: Store, amounts: list[int] | None = None) -> list[PaymentOrder]:
    payment, orders = payment_with_orders(amounts or [1000])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
    return orders


async def test_dispute_round_trips(store: Store) -> None:
    (order,) = await _stored_orders(store)
    dispute = dispute_of(order, reason=None)
    async with store.unit_of_work() as uow:
        await uow.insert_dispute(dispute)
        assert await uow.get_dispute(dispute.dispute_id) == dispute  # reads see own writes
        assert await uow.list_order_disputes(order.order_id, 10) == [dispute]
    assert await store.get_dispute(dispute.dispute_id) == dispute
    assert await store.list_disputes(10) == [dispute]
    assert await store.get_dispute("dp_missing") is None


async def test_failed_unit_keeps_no_dispute(store: Store) -> None:
    (order,) = await _stored_orders(store)
    dispute = dispute_of(order)
    with pytest.raises(Boom):
        async with store.unit_of_work() as uow:
            await uow.insert_dispute(dispute)
            raise Boom
    assert await store.get_dispute(dispute.dispute_id) is None
    assert await store.list_disputes(10) == []
    assert await store.list_unfinished_disputes(10) == []
    async with store.unit_of_work() as uow:  # the id is free again
        await uow.insert_dispute(dispute)


async def test_dispute_id_is_unique_and_the_refusal_leaves_the_unit_usable(store: Store) -> None:
    (order,) = await _stored_orders(store)
    first = dispute_of(order)
    async with store.unit_of_work() as uow:
        await uow.insert_dispute(first)
    clash = dispute_of(order, dispute_id=first.dispute_id, amount_minor=5)
    async with store.unit_of_work() as uow:
        with pytest.raises(DuplicateKey) as caught:
            await uow.insert_dispute(clash)
        assert caught.value.key == "disputes.dispute_id"
        assert await uow.get_dispute(first.dispute_id) == first
    assert await store.list_disputes(10) == [first]


async def test_concurrent_inserts_of_one_dispute_make_one(store: Store) -> None:
    (order,) = await _stored_orders(store)
    dispute_id = next_id("dp")
    made: list[int] = []

    async def insert(n: int) -> None:
        try:
            async with store.unit_of_work() as uow:
                await trio.lowlevel.checkpoint()
                await uow.insert_dispute(dispute_of(order, n, dispute_id=dispute_id))
            made.append(n)
        except DuplicateKey as exc:
            assert exc.key == "disputes.dispute_id"

    async with trio.open_nursery() as nursery:
        for n in range(1, 5):
            nursery.start_soon(insert, n)
    assert len(made) == 1
    stored = await store.get_dispute(dispute_id)
    assert stored is not None and stored.amount_minor == made[0]


async def test_dispute_of_unknown_order_is_not_found(store: Store) -> None:
    (order,) = await _stored_orders(store)
    with pytest.raises(NotFound):
        async with store.unit_of_work() as uow:
            await uow.insert_dispute(dispute_of(order, order_id="ord_unknown"))
    assert await store.list_unfinished_disputes(10) == []


async def test_dispute_updates_are_optimistic(store: Store) -> None:
    (order,) = await _stored_orders(store)
    dispute = dispute_of(order)
    async with store.unit_of_work() as uow:
        await uow.insert_dispute(dispute)
    async with store.unit_of_work() as uow:
        lost = await uow.update_dispute(
            attrs.evolve(dispute, status=DisputeStatus.LOST, updated_at_ms=6_000)
        )
        assert lost.version == 1
    with pytest.raises(VersionConflict):
        async with store.unit_of_work() as uow:
            await uow.update_dispute(attrs.evolve(dispute, status=DisputeStatus.WON))
    with pytest.raises(NotFound):
        async with store.unit_of_work() as uow:
            await uow.update_dispute(dispute_of(order))
    assert await store.get_dispute(dispute.dispute_id) == lost


async def test_disputes_list_by_seller_and_by_order(store: Store) -> None:
    orders = await _stored_orders(store, [1000, 2000, 3000])
    made = [dispute_of(orders[i % 3], 10 + i) for i in range(7)]
    async with store.unit_of_work() as uow:
        for dispute in made:
            await uow.insert_dispute(dispute)
    everything = sorted(made, key=lambda d: d.dispute_id)
    assert await store.list_disputes(100) == everything
    first_page = await store.list_disputes(3)
    assert first_page == everything[:3]
    assert await store.list_disputes(100, first_page[-1].dispute_id) == everything[3:]
    for order in orders:
        mine = [d for d in everything if d.order_id == order.order_id]
        assert await store.list_disputes(100, seller_id=order.seller_id) == mine
        assert await store.list_disputes(1, seller_id=order.seller_id) == mine[:1]
        async with store.unit_of_work() as uow:
            assert await uow.list_order_disputes(order.order_id, 100) == mine
    assert await store.list_disputes(100, seller_id="seller-nobody") == []


async def test_unfinished_disputes_drive_recovery(store: Store) -> None:
    (order,) = await _stored_orders(store)
    disputes = {status: dispute_of(order, status=status) for status in DisputeStatus}
    async with store.unit_of_work() as uow:
        for dispute in disputes.values():
            await uow.insert_dispute(dispute)
    unfinished = await store.list_unfinished_disputes(10)
    expected = sorted(d.dispute_id for s, d in disputes.items() if not is_terminal(s))
    assert [d.dispute_id for d in unfinished] == expected
    async with store.unit_of_work() as uow:
        await uow.update_dispute(
            attrs.evolve(disputes[DisputeStatus.OPEN], status=DisputeStatus.WON)
        )
    assert await store.list_unfinished_disputes(10) == []


@given(st.lists(st.sampled_from(list(DisputeStatus)), min_size=1, max_size=12))
def test_memory_unfinished_follows_the_transition_table(statuses: list[DisputeStatus]) -> None:
    async def run() -> None:
        store = MemoryStore(checkpoint=trio.lowlevel.checkpoint)
        payment, orders = payment_with_orders([500])
        async with store.unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
            for status in statuses:
                await uow.insert_dispute(dispute_of(orders[0], status=status))
        unfinished = {d.dispute_id for d in await store.list_unfinished_disputes(1000)}
        for dispute in await store.list_disputes(1000):
            assert (dispute.dispute_id in unfinished) is (not is_terminal(dispute.status))

    trio.run(run)


@given(st.integers(max_value=0))
def test_dispute_amount_must_be_positive(amount_minor: int) -> None:
    _payment, orders = payment_with_orders([100])
    with pytest.raises(ValueError, match="amount_minor must be a positive integer"):
        dispute_of(orders[0], amount_minor=amount_minor)
