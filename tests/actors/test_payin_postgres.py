"""The pay-in flows (and refunds) again, on PostgreSQL (embedded, and the service when
configured), in real time: the same guarantees must hold with a real database, real commits
and real latency."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from actors.service import PaymentView, Rejection
from engine.limits import EngineConfig
from engine.records import Refund
from engine.states import OrderStatus, RefundStatus
from engine.store.port import Store
from tests import pgfixtures
from tests.actors.harness import (
    assert_books_balanced,
    checkout,
    completed,
    make_world,
    paid_checkout,
    wait_until,
)

FAST = EngineConfig(
    retry_delay_s_base=0.01,
    retry_delay_s_max=0.2,
    status_poll_interval_s=0.2,
    outbox_poll_interval_s=0.05,
    psp_call_timeout_s=2.0,
    actor_idle_timeout_s=2.0,
    delivery_delay_s_base=0.01,
)
DEADLINE_S = 60.0

pytestmark = pytest.mark.postgres


@pytest.fixture(
    params=[k for k in pgfixtures.PG_KINDS if k == "embedded" or pgfixtures.service_url()]
)
async def pg(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    from engine.store.postgres import open_postgres_store

    async with pgfixtures.fresh_database(request.param) as dsn, open_postgres_store(dsn) as store:
        yield store


async def test_three_sellers_complete_on_postgres(pg: Store) -> None:
    world = make_world(store=pg, config=FAST)
    async with world.running() as engine:
        view = await paid_checkout(
            world, engine, checkout("chk-1", {"s1": 10_000, "s2": 2_550, "s3": 1_001})
        )
        await wait_until(lambda: completed(world, view.payment.payment_id), DEADLINE_S)
    balances = {b.merchant_id: b.available_minor for b in await pg.all_balances()}
    assert balances == {"s1": 9_000, "s2": 2_295, "s3": 901}
    assert set(world.psp.capture_calls.values()) == {1}
    await assert_books_balanced(world)


async def test_same_checkout_concurrently_is_one_payment_on_postgres(pg: Store) -> None:
    world = make_world(store=pg, config=FAST)
    views: list[PaymentView] = []
    async with world.running() as engine:

        async def create() -> None:
            view = await engine.service.create_checkout(checkout("chk-race", {"s1": 5, "s2": 7}))
            assert isinstance(view, PaymentView)
            views.append(view)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(create)
    assert len({v.payment.payment_id for v in views}) == 1
    assert sum(v.created for v in views) == 1
    assert len(await pg.list_payments(10)) == 1


async def test_duplicate_webhooks_and_timeouts_book_once_on_postgres(pg: Store) -> None:
    world = make_world(store=pg, config=FAST)
    world.psp.script("capture", "timeout_after", "unavailable", "timeout_after")
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("chk-dup", {"s1": 100, "s2": 200}))
        await wait_until(lambda: completed(world, view.payment.payment_id), DEADLINE_S)
        for event in world.psp.emitted * 2:
            assert await world.deliver(event) == "duplicate"
    orders = await pg.get_orders(view.payment.payment_id)
    assert all(o.status is OrderStatus.SUCCESS and o.booked for o in orders)
    assert len(world.psp.captures) == 2
    assert await pg.count_transactions() == 2
    await assert_books_balanced(world)


@pytest.mark.parametrize("crash_after_captures", [0, 1, 2])
async def test_engine_killed_after_psp_acted_resumes_on_postgres(
    pg: Store, crash_after_captures: int
) -> None:
    """Cancel the engine right after the PSP captured and before our commit, reopen it."""
    world = make_world(store=pg, config=FAST)
    original = world.psp.capture
    captured = 0
    crash = trio.CancelScope()

    async def capture_then_crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal captured
        result = await original(*args, **kwargs)
        captured += 1
        if captured > crash_after_captures:
            crash.cancel()
            await trio.sleep_forever()  # the answer never reaches the engine
        return result

    world.psp.capture = capture_then_crash  # type: ignore[method-assign]
    with crash:
        async with world.running() as engine:
            view = await paid_checkout(
                world, engine, checkout("chk-crash", {"s1": 100, "s2": 200, "s3": 300})
            )
            await trio.sleep(DEADLINE_S)
    assert crash.cancelled_caught
    world.psp.capture = original  # type: ignore[method-assign]
    async with world.running():
        await wait_until(lambda: completed(world, view.payment.payment_id), DEADLINE_S)
    assert len(world.psp.captures) == 3
    assert set(world.psp.capture_calls.values()) <= {1, 2}
    assert await pg.count_transactions() == 3
    await assert_books_balanced(world)


async def test_racing_refunds_refund_at_most_the_capture_once_on_postgres(pg: Store) -> None:
    """Refunds on PostgreSQL: racing requests decided one by one, lost answers retried under
    the same key, a shortfall-free full refund, the books balanced with the PSP's refunds."""
    world = make_world(store=pg, config=FAST)
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("chk-refund", {"s1": 1_000}))
        await wait_until(lambda: completed(world, view.payment.payment_id), DEADLINE_S)
        (order,) = await pg.get_orders(view.payment.payment_id)
        world.psp.script("refund", "timeout_after", "unavailable")
        replies: list[Refund | Rejection] = []

        async def request(amount: int) -> None:
            replies.append(await engine.service.create_refund(order.order_id, amount))

        async with trio.open_nursery() as nursery:
            for amount in (400, 400, 400):
                nursery.start_soon(request, amount)
        made = [r for r in replies if isinstance(r, Refund)]
        assert len(made) == 2 and [r.reason for r in replies if isinstance(r, Rejection)] == [
            "refund_exceeds_captured"
        ]

        async def all_succeeded() -> bool:
            rows = await pg.list_refunds(order.order_id, 10)
            return len(rows) == 2 and all(r.status is RefundStatus.SUCCEEDED for r in rows)

        await wait_until(all_succeeded, DEADLINE_S)
    assert sorted(world.psp.refunds) == sorted(r.refund_id for r in made)
    assert await pg.list_unfinished_refunds(10) == []
    trial = await pg.trial_balance()
    assert trial[("psp_clearing", "USD")] == 200  # captured 1,000, refunded 800
    assert trial[("refunds_clearing", "USD")] == 0
    assert sum(v for (_, c), v in trial.items() if c == "USD") == 0
    (balance,) = await pg.list_balances("s1")
    assert balance.available_minor == 900 - 720  # the seller gives back 90% of each refund
