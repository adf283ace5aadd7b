"""The pay-in flow end to end on the autojump clock: checkout to booked ledger, exactly once."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from actors.service import PaymentView, Rejection
from engine.errors import InvalidInput
from engine.ledger import merchant_payable
from engine.limits import EngineConfig
from engine.states import OrderStatus, PaymentStatus
from tests.actors.harness import (
    assert_books_balanced,
    checkout,
    completed,
    make_world,
    orders_of,
    paid_checkout,
    payment_status,
    wait_until,
)


async def test_three_sellers_checkout_completes_and_books_each_wallet(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    async with world.running() as engine:
        view = await paid_checkout(
            world, engine, checkout("chk-1", {"s1": 10_000, "s2": 2_550, "s3": 1_001})
        )
        await wait_until(lambda: completed(world, view.payment.payment_id))
    balances = {b.merchant_id: b.available_minor for b in await world.store.all_balances()}
    assert balances == {"s1": 9_000, "s2": 2_295, "s3": 901}  # 10% commission, half-even
    assert set(world.psp.capture_calls.values()) == {1}
    assert len(world.psp.captures) == 3
    await assert_books_balanced(world)
    assert await world.store.count_transactions() == 3
    orders = await world.store.get_orders(view.payment.payment_id)
    assert all(o.status is OrderStatus.SUCCESS and o.booked for o in orders)


async def test_same_checkout_twice_sequentially_is_one_payment(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        first = await engine.service.create_checkout(checkout("chk-dup", {"s1": 500}))
        second = await engine.service.create_checkout(checkout("chk-dup", {"s1": 500}))
        assert isinstance(first, PaymentView) and isinstance(second, PaymentView)
        assert first.created and not second.created
        assert first.payment.payment_id == second.payment.payment_id
        assert len(await world.store.list_payments(10)) == 1
        assert world.psp.calls["register"] == 1


async def test_same_checkout_concurrently_is_one_payment(autojump_clock: MockClock) -> None:
    world = make_world()
    views: list[PaymentView] = []
    async with world.running() as engine:

        async def create() -> None:
            view = await engine.service.create_checkout(checkout("chk-race", {"s1": 500, "s2": 7}))
            assert isinstance(view, PaymentView)
            views.append(view)

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(create)
        assert len({v.payment.payment_id for v in views}) == 1
        assert sum(v.created for v in views) == 1
        assert len(await world.store.list_payments(10)) == 1


async def test_reused_checkout_id_with_another_cart_is_rejected(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        await engine.service.create_checkout(checkout("chk-x", {"s1": 500}))
        other = await engine.service.create_checkout(checkout("chk-x", {"s1": 501}))
        assert isinstance(other, Rejection) and other.reason == "checkout_id_reused"


async def test_bad_commands_are_refused_and_write_nothing(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        for command, rule in [
            (checkout("c1", {}), "cart is empty"),
            (checkout("c2", {"s1": 0}), "must be positive"),
            (checkout("c3", {"s1": 5}, currency="XYZ"), "ISO 4217"),
            (checkout("", {"s1": 5}), "checkout_id must be"),
        ]:
            with pytest.raises(InvalidInput, match=rule):
                await engine.service.create_checkout(command)
        assert await world.store.list_payments(10) == []


async def test_risk_rules_reject_with_a_reason(autojump_clock: MockClock) -> None:
    config = EngineConfig(
        risk_amount_minor_max=1_000,
        blocked_sellers=frozenset({"bad"}),
        risk_velocity_checkouts_max=2,
    )
    world = make_world(config=config)
    async with world.running() as engine:
        big = await engine.service.create_checkout(checkout("r1", {"s1": 1_001}, buyer="b1"))
        blocked = await engine.service.create_checkout(checkout("r2", {"bad": 5}, buyer="b2"))
        fast = [
            await engine.service.create_checkout(checkout(f"v{i}", {"s1": 5}, buyer="b3"))
            for i in range(3)
        ]
    reasons = [
        v.payment.failure_reason for v in (big, blocked, *fast) if isinstance(v, PaymentView)
    ]
    assert reasons == [
        "amount_exceeds_limit",
        "seller_blocked",
        None,
        None,
        "buyer_velocity_exceeded",
    ]
    assert isinstance(big, PaymentView)
    assert big.payment.status is PaymentStatus.REJECTED_BY_RISK
    assert world.psp.calls["register"] == 2


async def test_unpaid_checkout_expires_and_its_orders_fail(autojump_clock: MockClock) -> None:
    world = make_world(config=EngineConfig(checkout_expiry_s=600))
    async with world.running() as engine:
        view = await engine.service.create_checkout(checkout("chk-exp", {"s1": 100, "s2": 200}))
        assert isinstance(view, PaymentView)
        await trio.sleep(601)
        await wait_until(lambda: _status_is(world, view.payment.payment_id, PaymentStatus.EXPIRED))
        assert await orders_of(world, view.payment.payment_id) == [OrderStatus.FAILED] * 2
        # The page is closed: a late payment attempt changes nothing.
        assert world.psp.buyer_pays(view.payment.psp_session_id or "") is None
    assert world.psp.captures == {}


async def _status_is(world, payment_id: str, status: PaymentStatus) -> bool:  # type: ignore[no-untyped-def]
    return await payment_status(world, payment_id) is status


async def test_declined_card_fails_the_checkout(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        view = await engine.service.create_checkout(checkout("chk-dec", {"s1": 100}))
        assert isinstance(view, PaymentView) and view.payment.psp_session_id
        world.psp.buyer_declined(view.payment.psp_session_id)
        await wait_until(lambda: _status_is(world, view.payment.payment_id, PaymentStatus.FAILED))
    assert await world.store.trial_balance() == {}


async def test_capture_decline_fails_one_order_and_completes_the_rest(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    world.psp.script("capture", "ok", "decline")
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("chk-part", {"s1": 100, "s2": 200}))
        await wait_until(lambda: completed(world, view.payment.payment_id))
    statuses = sorted(s.value for s in await orders_of(world, view.payment.payment_id))
    assert statuses == ["FAILED", "SUCCESS"]
    await assert_books_balanced(world)


async def test_payment_expired_at_psp_but_paid_is_authorized_not_expired(
    autojump_clock: MockClock,
) -> None:
    """The buyer paid, the webhook was lost, then our expiry asked the PSP: the PSP decides."""
    world = make_world(config=EngineConfig(checkout_expiry_s=600))
    async with world.running() as engine:
        view = await engine.service.create_checkout(checkout("chk-lost", {"s1": 100}))
        assert isinstance(view, PaymentView) and view.payment.psp_session_id
        world.hold_webhooks = True
        world.psp.buyer_pays(view.payment.psp_session_id)
        world.held_events()  # the authorization webhook is lost
        world.hold_webhooks = False
        await wait_until(lambda: completed(world, view.payment.payment_id))
    await assert_books_balanced(world)


async def test_wallet_balance_for_jpy_and_bhd(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        jpy = await paid_checkout(world, engine, checkout("j", {"s1": 1_500}, currency="JPY"))
        bhd = await paid_checkout(world, engine, checkout("b", {"s1": 1_005}, currency="BHD"))
        await wait_until(lambda: completed(world, jpy.payment.payment_id))
        await wait_until(lambda: completed(world, bhd.payment.payment_id))
    trial = await world.store.trial_balance()
    assert trial[(merchant_payable("s1"), "JPY")] == -1_350
    assert trial[(merchant_payable("s1"), "BHD")] == -905  # commission 100.5 -> 100 (half-even)


async def test_shutdown_finishes_within_the_deadline_while_a_psp_call_hangs(
    autojump_clock: MockClock,
) -> None:
    world = make_world(config=EngineConfig(shutdown_timeout_s=2, psp_call_timeout_s=600))
    world.psp.script("capture", "hang")
    world.psp.hang_s = 10_000
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("c", {"s1": 100}))
        await trio.sleep(5)  # the capture call is hanging now
        started = trio.current_time()
    assert trio.current_time() - started <= 2
    [order] = await world.store.get_orders(view.payment.payment_id)
    assert order.status is OrderStatus.EXECUTING  # unknown, and resumable on the next start
