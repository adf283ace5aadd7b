"""A PSP refund event that names no refund of ours (a refund made at the PSP by hand, or one
whose reference is an order id, which an order would read as a failed capture) is recorded once,
for investigation, and changes nothing. Refunds the engine makes: tests/actors/test_refunds.py."""

from __future__ import annotations

import attrs
from trio.testing import MockClock

from engine.gateway import PspEventKind, PspNotification, PspRefundStatus
from engine.money import Money
from engine.states import OrderStatus, PaymentStatus
from tests.actors.harness import (
    assert_books_balanced,
    checkout,
    make_world,
    paid_checkout,
    payment_status,
    wait_until,
)


async def test_unknown_refund_events_are_recorded_and_change_nothing(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("chk-1", {"s1": 10_000}))
        payment_id = view.payment.payment_id

        async def completed() -> bool:
            return await payment_status(world, payment_id) is PaymentStatus.COMPLETED

        await wait_until(completed)
        await wait_until(lambda: world.store.count_transactions())
        trial_before = await world.store.trial_balance()
        (order,) = await world.store.get_orders(payment_id)
        assert order.psp_capture_id is not None

        # A refund made at the PSP by hand: its webhook reaches the engine and is only kept.
        result = await world.psp.refund("rf_1", order.psp_capture_id, Money(2500, "USD"))
        assert result.status is PspRefundStatus.SUCCEEDED
        await wait_until(
            lambda: any(e.kind is PspEventKind.REFUND_SUCCEEDED for e, _ in world.delivered)
        )
        refund_outcomes = [o for e, o in world.delivered if e.reference == "rf_1"]
        assert refund_outcomes == ["unknown_reference"]

        # A refund event that names the order itself: kept, then a duplicate.
        event = PspNotification(
            event_id="evt_refund_on_order",
            kind=PspEventKind.REFUND_FAILED,
            reference=order.order_id,
            occurred_at_ms=world.clock.now_ms(),
            capture_id=order.psp_capture_id,
            reason="card_closed",
            refund_id="re_x",
        )
        assert await world.deliver(event) == "unknown_reference"
        assert await world.deliver(attrs.evolve(event)) == "duplicate"

        (after,) = await world.store.get_orders(payment_id)
        assert after.status is OrderStatus.SUCCESS and after == order
        assert await payment_status(world, payment_id) is PaymentStatus.COMPLETED
        assert await world.store.trial_balance() == trial_before
        assert await world.store.count_transactions() == 1
    await assert_books_balanced(world)
