"""Exactly-once under retries, duplicates, reordering and timeouts after the PSP acted."""

from __future__ import annotations

import random

import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from actors.service import PaymentView
from engine.states import OrderStatus
from tests.actors.harness import (
    World,
    assert_books_balanced,
    checkout,
    completed,
    make_world,
    paid_checkout,
    wait_until,
)


async def _assert_exactly_once(world: World, payment_id: str) -> None:
    orders = await world.store.get_orders(payment_id)
    assert all(o.status is OrderStatus.SUCCESS and o.booked for o in orders)
    assert len([k for k in world.psp.captures if k in {o.order_id for o in orders}]) == len(orders)
    assert await world.store.count_transactions() == len(orders)
    await assert_books_balanced(world)


async def test_duplicate_webhooks_book_once(autojump_clock: MockClock) -> None:
    world = make_world()
    world.hold_webhooks = True
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("c", {"s1": 100, "s2": 200}))
        for _ in range(50):
            events = world.held_events()
            for event in events * 3:  # every event delivered three times
                await world.deliver(event)
            await trio.sleep(1)
            if await completed(world, view.payment.payment_id):
                break
        await wait_until(lambda: completed(world, view.payment.payment_id))
    outcomes = [o for _, o in world.delivered]
    assert outcomes.count("duplicate") >= 2 * outcomes.count("applied")
    await _assert_exactly_once(world, view.payment.payment_id)


async def test_late_webhooks_after_completion_change_nothing(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("c", {"s1": 100, "s2": 200}))
        await wait_until(lambda: completed(world, view.payment.payment_id))
        before = await world.store.trial_balance()
        for event in world.psp.emitted:
            assert await world.deliver(event) == "duplicate"
        assert await world.store.trial_balance() == before
    await _assert_exactly_once(world, view.payment.payment_id)


async def test_capture_timeout_after_psp_captured_is_not_a_failure(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    world.psp.script("capture", "timeout_after")
    world.hold_webhooks = True  # and the capture webhook is lost too
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("c", {"s1": 100}))
        authorized = [e for e in world.held_events() if e.kind.value == "session.authorized"]
        await world.deliver(authorized[0])
        await trio.sleep(5)
        world.held_events()  # drop every capture webhook
        world.hold_webhooks = False
        await wait_until(lambda: completed(world, view.payment.payment_id))
    [order] = await world.store.get_orders(view.payment.payment_id)
    assert world.psp.capture_calls[order.order_id] >= 2  # retried with the same key
    assert order.attempts >= 1
    await _assert_exactly_once(world, view.payment.payment_id)


async def test_psp_failing_twice_then_succeeding_captures_once(autojump_clock: MockClock) -> None:
    world = make_world()
    world.psp.script("capture", "unavailable", "unavailable")
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("c", {"s1": 100}))
        await wait_until(lambda: completed(world, view.payment.payment_id))
    [order] = await world.store.get_orders(view.payment.payment_id)
    assert world.psp.capture_calls[order.order_id] == 3
    assert order.attempts == 2
    await _assert_exactly_once(world, view.payment.payment_id)


async def test_psp_hanging_then_answering_stays_executing_meanwhile(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    world.psp.script("capture", *["hang"] * 14)  # past capture_attempts_max: polling begins
    world.psp.script("query", "hang", "hang")
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("c", {"s1": 100}))
        await trio.sleep(30)
        [order] = await world.store.get_orders(view.payment.payment_id)
        assert order.status is OrderStatus.EXECUTING  # unknown, not failed
        await wait_until(lambda: completed(world, view.payment.payment_id))
    await _assert_exactly_once(world, view.payment.payment_id)


async def test_webhook_before_capture_call_returns_converges(autojump_clock: MockClock) -> None:
    world = make_world()
    world.psp.script("capture", "timeout_after", "timeout_after", "timeout_after")
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("c", {"s1": 100, "s2": 5}))
        await wait_until(lambda: completed(world, view.payment.payment_id))
    await _assert_exactly_once(world, view.payment.payment_id)


def _run(world_seed: int, delivery_seed: int, faults: list[str], copies: int) -> None:
    async def scenario() -> None:
        world = make_world(seed=world_seed)
        world.psp.script("capture", *faults)
        world.hold_webhooks = True
        rng = random.Random(delivery_seed)
        async with world.running() as engine:
            views = []
            for i in range(3):
                view = await engine.service.create_checkout(
                    checkout(f"c{i}", {f"s{j}": 100 + i + j for j in range(1 + i % 3)})
                )
                assert isinstance(view, PaymentView) and view.payment.psp_session_id
                world.psp.buyer_pays(view.payment.psp_session_id)
                views.append(view)
            for _ in range(200):
                events = world.held_events()
                batch = [e for e in events for _ in range(rng.randint(0, copies))]
                # lost events are repaired by status queries and the expiry check
                rng.shuffle(batch)
                for event in batch:
                    await world.deliver(event)
                await trio.sleep(rng.choice([0, 0.5, 3, 60]))
                done = [await completed(world, v.payment.payment_id) for v in views]
                if all(done):
                    break
            world.hold_webhooks = False
            for v in views:
                await wait_until(lambda v=v: completed(world, v.payment.payment_id))
            total_orders = sum(len(v.orders) for v in views)
            assert len(world.psp.captures) == total_orders
            assert await world.store.count_transactions() == total_orders
            await assert_books_balanced(world)

    trio.run(scenario, clock=MockClock(autojump_threshold=0))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 1_000),
    st.integers(0, 1_000),
    st.lists(st.sampled_from(["ok", "unavailable", "timeout_after", "hang"]), max_size=8),
    st.integers(1, 3),
)
def test_any_interleaving_of_webhooks_and_faults_converges(
    world_seed: int, delivery_seed: int, faults: list[str], copies: int
) -> None:
    _run(world_seed, delivery_seed, faults, copies)
