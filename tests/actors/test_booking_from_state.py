"""The order actor books a capture without reading the ledger first when its state proves the
order unbooked (EXECUTING), issue 15. What must hold: a stale copy (the order was booked
behind the actor's back) still books exactly once and the actor never crashes: the ledger's
unique key refuses the second booking and the actor reloads, as for a version conflict."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from engine.ledger import Transaction, TransactionKind, capture_entries
from engine.limits import EngineConfig
from engine.records import evolve
from engine.states import OrderStatus
from tests.actors.harness import assert_books_balanced, checkout, make_world, paid_checkout


async def test_a_stale_executing_copy_books_once_and_never_crashes(
    autojump_clock: MockClock,
) -> None:
    # The PSP captures but the call times out; the actor then waits 10 minutes to ask the
    # PSP, live and idle, its copy of the order EXECUTING, while the webhook is held.
    config = EngineConfig(
        outbox_poll_interval_s=30.0,
        capture_attempts_max=1,
        status_poll_interval_s=600.0,
        actor_idle_timeout_s=3600.0,
    )
    world = make_world(config=config)
    world.psp.script("capture", "timeout_after")
    world.hold_webhooks = True
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("c", {"s1": 100}))
        authorized = [e for e in world.held_events() if e.kind.value == "session.authorized"]
        await world.deliver(authorized[0])
        await trio.sleep(60)
        [order] = await world.store.get_orders(view.payment.payment_id)
        assert order.status is OrderStatus.EXECUTING and order.attempts >= 1
        captured = [e for e in world.held_events() if e.kind.value == "capture.succeeded"]
        assert captured, "the PSP announced its capture"
        # Behind the actor's back: the order is booked and finished in one unit.
        entries, _, _ = capture_entries(order.seller_id, order.amount, world.config.commission_bps)
        async with world.store.unit_of_work() as uow:
            await uow.post_transaction(
                Transaction("txn-behind", TransactionKind.CAPTURE, order.order_id, entries, 1)
            )
            await uow.update_order(
                evolve(order, status=OrderStatus.SUCCESS, ledger_booked=True, wallet_booked=True)
            )
        # The actor's copy still says EXECUTING: it books without a read and is refused.
        # Reloaded after the refusal, it finds the order booked: the event is only recorded.
        assert await world.deliver(captured[0]) == "ignored"
        assert engine.system.statistics().restarts == 0
    assert await world.store.count_transactions() == 1
    [order] = await world.store.get_orders(view.payment.payment_id)
    assert order.status is OrderStatus.SUCCESS and order.booked
    await assert_books_balanced(world)
