"""Outbox subscribers: independent cursors, retry with backoff, dead letters, replay."""

from __future__ import annotations

import itertools

import pytest
import trio
from trio.testing import MockClock

from actors.outbox import Subscriber
from actors.service import PaymentView
from engine.limits import EngineConfig
from engine.records import Delivery
from engine.states import PaymentStatus
from tests.actors.harness import checkout, make_world, paid_checkout, payment_status, wait_until


@pytest.mark.parametrize("inline", [False, True], ids=["task_per_delivery", "inline"])
async def test_poisoned_message_is_dead_lettered_and_others_keep_flowing(
    autojump_clock: MockClock, inline: bool
) -> None:
    world = make_world(config=EngineConfig(delivery_attempts_max=4, outbox_poll_interval_s=30))
    poison_checkouts = ["poison"]
    handled: list[str] = []
    attempts: list[float] = []

    async def fragile(delivery: Delivery) -> None:
        if delivery.message.payload["checkout_id"] in poison_checkouts:
            attempts.append(trio.current_time())
            raise ValueError("cannot parse this message")
        handled.append(delivery.message.message_id)

    subscriber = Subscriber("fragile", ("payment.created",), fragile, inline=inline)
    async with world.running(extra_subscribers=[subscriber]) as engine:
        first = await engine.service.create_checkout(checkout("poison", {"s1": 100}))
        assert isinstance(first, PaymentView)
        views = [
            await paid_checkout(world, engine, checkout(f"ok{i}", {"s1": 100 + i}))
            for i in range(5)
        ]
        await trio.sleep(3600)
        dead = await world.store.list_dead_letters(10)
        assert [(d.subscriber, d.message.key, d.attempts) for d in dead] == [
            ("fragile", first.payment.payment_id, 4)
        ]
        assert "ValueError: cannot parse this message" in dead[0].last_error
        assert len(handled) == 5  # the others flowed past the poisoned one
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps == sorted(gaps) and gaps[0] >= 0.5  # exponential backoff between attempts
        for view in views:  # and the booking subscriber was never blocked
            assert await payment_status(world, view.payment.payment_id) is PaymentStatus.COMPLETED
        assert engine.consumers["fragile"].stats.dead_lettered == 1
        # Fixed: replay it, and it is delivered.
        poison_checkouts.clear()
        async with world.store.unit_of_work() as uow:
            assert await uow.replay_dead_letter("fragile", dead[0].message.message_id, 0)
        engine.ctx.doorbell.ring()
        await wait_until(lambda: len(handled) == 6)
        assert await world.store.list_dead_letters(10) == []


async def test_capture_booking_survives_crashes_while_settling(autojump_clock: MockClock) -> None:
    """A capture is booked in the unit of work that records it: a crash there loses both,
    the order stays EXECUTING, and the PSP's word (answer or webhook) books it exactly once."""
    world = make_world()
    async with world.running() as engine:
        from engine.store import memory_unit

        original = memory_unit.MemoryUnitOfWork.post_transaction
        crashes = []

        async def flaky(self, txn):  # type: ignore[no-untyped-def]
            if len(crashes) < 2:
                crashes.append(txn.reference)
                raise RuntimeError("disk on fire")
            return await original(self, txn)

        memory_unit.MemoryUnitOfWork.post_transaction = flaky  # type: ignore[method-assign]
        try:
            view = await paid_checkout(world, engine, checkout("c", {"s1": 100}))
            await wait_until(lambda: _is(world, view.payment.payment_id, PaymentStatus.COMPLETED))
        finally:
            memory_unit.MemoryUnitOfWork.post_transaction = original  # type: ignore[method-assign]
        assert len(crashes) == 2
        assert engine.system.statistics().restarts == 2
        assert await world.store.count_transactions() == 1
        [order] = await world.store.get_orders(view.payment.payment_id)
        assert order.booked
        assert sum(b.available_minor for b in await world.store.list_balances("s1")) == 90


async def _is(world, payment_id: str, status: PaymentStatus) -> bool:  # type: ignore[no-untyped-def]
    return await payment_status(world, payment_id) is status


class _FlakyFetch:
    """The memory store, except that fetching one subscriber's deliveries fails `failures`
    times first (a full pool, a lost connection): what a database does under load."""

    def __init__(self, store: object, subscriber: str, failures: int) -> None:
        self._store = store
        self._subscriber = subscriber
        self.failures_left = failures

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def fetch_due_deliveries(self, subscriber: str, now_ms: int, limit: int) -> object:
        if subscriber == self._subscriber and self.failures_left > 0:
            self.failures_left -= 1
            await trio.lowlevel.checkpoint()
            raise trio.TooSlowError("no free connection in the pool")
        return await self._store.fetch_due_deliveries(subscriber, now_ms, limit)  # type: ignore[attr-defined]


@pytest.mark.parametrize("inline", [False, True], ids=["task_per_delivery", "inline"])
async def test_a_failing_store_delays_a_consumer_but_never_stops_the_engine(
    autojump_clock: MockClock, inline: bool
) -> None:
    base = make_world(config=EngineConfig(outbox_poll_interval_s=30))
    flaky = _FlakyFetch(base.store, "watcher", failures=3)
    world = make_world(store=flaky, config=EngineConfig(outbox_poll_interval_s=30))
    heard: list[str] = []

    async def watcher(delivery: Delivery) -> None:
        heard.append(delivery.message.payload["checkout_id"])

    subscriber = Subscriber("watcher", ("payment.created",), watcher, inline=inline)
    async with world.running(extra_subscribers=[subscriber]) as engine:
        views = [
            await paid_checkout(world, engine, checkout(f"c{i}", {"s1": 100 + i})) for i in range(3)
        ]
        await wait_until(lambda: len(heard) == 3)
        assert sorted(heard) == ["c0", "c1", "c2"]
        assert flaky.failures_left == 0
        assert engine.consumers["watcher"].stats.store_errors == 3
        for view in views:  # the rest of the engine went on meanwhile
            assert await payment_status(world, view.payment.payment_id) is PaymentStatus.COMPLETED
