"""Payouts (migration 0006) behave the same in every store: unique payout id, creation key and
provider event id, optimistic versions, paging by merchant, recovery's in-flight list, one
schedule per merchant, and the payout delay's pending captures.
"""

from __future__ import annotations

import attrs
import pytest

from engine.errors import DuplicateKey, VersionConflict
from engine.ledger import Transaction, TransactionKind, capture_entries, payout_reserve_entries
from engine.money import Money
from engine.payouts import PayoutSchedule, ScheduleInterval
from engine.records import Payout
from engine.states import PayoutStatus
from engine.store.port import Store
from tests.factories import next_id


class Boom(Exception):
    pass


def payout_of(merchant_id: str = "m1", amount_minor: int = 100, **changes: object) -> Payout:
    payout = Payout(
        payout_id=next_id("po"),
        merchant_id=merchant_id,
        currency="USD",
        amount_minor=amount_minor,
        status=PayoutStatus.FUNDS_RESERVED,
        created_at_ms=5_000,
        updated_at_ms=5_000,
        creation_key=next_id("key"),
    )
    return attrs.evolve(payout, **changes)


def _txn(kind: TransactionKind, reference: str, entries: object, at_ms: int) -> Transaction:
    return Transaction(next_id("txn"), kind, reference, tuple(entries), at_ms)  # type: ignore[arg-type]


async def test_payout_round_trips_and_reads_see_own_writes(store: Store) -> None:
    payout = payout_of(provider_ref="po_x", trigger="scheduled")
    async with store.unit_of_work() as uow:
        await uow.insert_payout(payout)
        assert await uow.get_payout(payout.payout_id) == payout
        assert await uow.get_payout_by_creation_key(payout.creation_key) == payout
    assert await store.get_payout(payout.payout_id) == payout
    assert await store.list_payouts("m1", 10) == [payout]
    assert await store.list_payouts("m2", 10) == []


async def test_duplicate_payout_id_and_creation_key_are_refused(store: Store) -> None:
    payout = payout_of()
    async with store.unit_of_work() as uow:
        await uow.insert_payout(payout)
    for clash, key in (
        (attrs.evolve(payout, creation_key=next_id("key")), "payouts.payout_id"),
        (attrs.evolve(payout, payout_id=next_id("po")), "payouts.creation_key"),
    ):
        with pytest.raises(DuplicateKey) as caught:
            async with store.unit_of_work() as uow:
                await uow.insert_payout(clash)
        assert caught.value.key == key
    assert await store.list_payouts("m1", 10) == [payout]


async def test_update_is_optimistic_and_in_flight_follows_status(store: Store) -> None:
    payout = payout_of()
    async with store.unit_of_work() as uow:
        await uow.insert_payout(payout)
    assert await store.list_unfinished_payouts(10) == [payout]
    async with store.unit_of_work() as uow:
        paid = await uow.update_payout(attrs.evolve(payout, status=PayoutStatus.PAID, attempts=2))
    assert paid.version == 1 and paid.attempts == 2
    assert await store.list_unfinished_payouts(10) == []
    with pytest.raises(VersionConflict):
        async with store.unit_of_work() as uow:
            await uow.update_payout(attrs.evolve(payout, status=PayoutStatus.FAILED))
    assert await store.get_payout(payout.payout_id) == paid


async def test_a_rolled_back_unit_leaves_no_payout(store: Store) -> None:
    payout = payout_of()
    with pytest.raises(Boom):
        async with store.unit_of_work() as uow:
            await uow.insert_payout(payout)
            await uow.record_payout_event("evt_rb", "payout.paid", payout.payout_id, 1)
            raise Boom
    assert await store.get_payout(payout.payout_id) is None
    async with store.unit_of_work() as uow:
        await uow.record_payout_event("evt_rb", "payout.paid", payout.payout_id, 1)


async def test_provider_events_are_deduplicated(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.record_payout_event("evt_1", "payout.paid", "po_1", 1)
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.record_payout_event("evt_1", "payout.paid", "po_1", 2)
    assert caught.value.key == "payout_events.event_id"


async def test_one_schedule_per_merchant_and_manual_ones_are_not_listed(store: Store) -> None:
    daily = PayoutSchedule.of("m1", ScheduleInterval.DAILY, 2, {"USD": 1000, "JPY": 500}, 7)
    async with store.unit_of_work() as uow:
        await uow.put_payout_schedule(daily)
        await uow.put_payout_schedule(PayoutSchedule.of("m2", ScheduleInterval.MANUAL, 0, {}, 7))
        assert await uow.get_payout_schedule("m1") == daily
    weekly = attrs.evolve(daily, interval=ScheduleInterval.WEEKLY, minimums=())
    async with store.unit_of_work() as uow:
        await uow.put_payout_schedule(weekly)
    assert await store.get_payout_schedule("m1") == weekly
    assert await store.list_payout_schedules(10) == [weekly]
    assert await store.get_payout_schedule("m9") is None


async def test_pending_captures_count_only_recent_capture_credits(store: Store) -> None:
    old, _, _ = capture_entries("m1", Money(1000, "USD"), 1000)
    new, _, _ = capture_entries("m1", Money(500, "USD"), 1000)
    other, _, _ = capture_entries("m1", Money(700, "EUR"), 1000)
    async with store.unit_of_work() as uow:
        await uow.post_transaction(_txn(TransactionKind.CAPTURE, "o1", old, 1_000))
        await uow.post_transaction(_txn(TransactionKind.CAPTURE, "o2", new, 9_000))
        await uow.post_transaction(_txn(TransactionKind.CAPTURE, "o3", other, 9_000))
        reserve = payout_reserve_entries("m1", Money(100, "USD"))
        await uow.post_transaction(_txn(TransactionKind.PAYOUT_RESERVE, "po", reserve, 9_500))
        assert await uow.pending_capture_minor("m1", "USD", 5_000) == 450
    assert await _pending(store, 5_000) == 450
    assert await _pending(store, 0) == 900 + 450
    assert await _pending(store, 10_000) == 0


async def _pending(store: Store, since_ms: int) -> int:
    async with store.unit_of_work() as uow:
        return await uow.pending_capture_minor("m1", "USD", since_ms)
