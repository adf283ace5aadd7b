"""Refunds through the engine: exactly once at the PSP, never more than captured, always balanced.

Each test runs the real engine (actors, memory store, fake PSP) on the autojump clock.
"""

from __future__ import annotations

import attrs
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from actors.engine import Engine
from actors.messages import CreateRefund
from actors.refund import refund_rejection
from actors.service import Rejection
from engine.gateway import PspEventKind, PspNotification, PspRefundStatus
from engine.ledger import (
    PLATFORM_REVENUE,
    PSP_CLEARING,
    REFUNDS_CLEARING,
    Transaction,
    TransactionKind,
    merchant_payable,
    merchant_receivable,
    payout_reserve_entries,
)
from engine.money import Money
from engine.records import PaymentOrder, Refund
from engine.states import OrderStatus, RefundStatus
from tests.actors.harness import (
    World,
    checkout,
    completed,
    make_world,
    paid_checkout,
    wait_until,
)


async def captured_order(world: World, engine: Engine, amount_minor: int = 10_000) -> PaymentOrder:
    view = await paid_checkout(world, engine, checkout(f"chk-{amount_minor}", {"s1": amount_minor}))
    await wait_until(lambda: completed(world, view.payment.payment_id))
    (order,) = await world.store.get_orders(view.payment.payment_id)
    assert order.status is OrderStatus.SUCCESS and order.booked
    return order


async def refund_status(world: World, refund_id: str) -> RefundStatus:
    refund = await world.store.get_refund(refund_id)
    assert refund is not None
    return refund.status


async def wait_refund(world: World, refund_id: str, status: RefundStatus) -> Refund:
    async def reached() -> bool:
        return await refund_status(world, refund_id) is status

    await wait_until(reached)
    refund = await world.store.get_refund(refund_id)
    assert refund is not None
    return refund


async def assert_refund_books(world: World) -> None:
    """Balanced per currency; wallet = ledger; psp_clearing = PSP captured - PSP refunded;
    refunds_clearing holds exactly the refunds still in flight."""
    trial = await world.store.trial_balance()
    per_currency: dict[str, int] = {}
    for (_, currency), total in trial.items():
        per_currency[currency] = per_currency.get(currency, 0) + total
    assert all(v == 0 for v in per_currency.values()), per_currency
    for balance in await world.store.all_balances():
        assert balance.available_minor >= 0
        assert balance.available_minor == -trial.get(
            (merchant_payable(balance.merchant_id), balance.currency), 0
        )
    captured = world.psp.captured_total()
    refunded = world.psp.refund_book.total()
    for currency in set(captured) | {c for (a, c) in trial if a == PSP_CLEARING}:
        assert trial.get((PSP_CLEARING, currency), 0) == captured[currency] - refunded[currency]


async def test_full_refund_by_default_is_booked_and_paid_once(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 10_001)
        refund = await engine.service.create_refund(order.order_id, reason="damaged")
        assert isinstance(refund, Refund), refund
        assert (refund.amount_minor, refund.status) == (10_001, RefundStatus.REQUESTED)
        assert refund.reason == "damaged"
        done = await wait_refund(world, refund.refund_id, RefundStatus.SUCCEEDED)
        assert done.psp_refund_id is not None
        assert world.psp.refunds[refund.refund_id].status is PspRefundStatus.SUCCEEDED
        assert list(world.psp.refunds) == [refund.refund_id]  # keyed by our refund id
        await wait_until(lambda: not world.psp.webhook_receive.statistics().current_buffer_used)
        trial = await world.store.trial_balance()
        # The capture's split undone with the capture's rounding: nothing left anywhere.
        assert trial.get((merchant_payable("s1"), "USD"), 0) == 0
        assert trial.get((PLATFORM_REVENUE, "USD"), 0) == 0
        assert trial.get((REFUNDS_CLEARING, "USD"), 0) == 0
        assert trial.get((PSP_CLEARING, "USD"), 0) == 0
        again = await engine.service.create_refund(order.order_id, 1)
        assert isinstance(again, Rejection) and again.reason == "order_fully_refunded"
        # One message per step, written with it (the analytics subscriber counts them).
        await wait_until(lambda: engine.analytics.events["refund.succeeded"] == 1)
        assert engine.analytics.events["refund.requested"] == 1
        assert engine.analytics.events["refund.failed"] == 0
    await assert_refund_books(world)


async def test_partial_refunds_never_exceed_captured(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 1_000)
        world.psp.script("refund", "pending")  # the first one stays in flight at the PSP
        first = await engine.service.create_refund(order.order_id, 600)
        assert isinstance(first, Refund)
        await wait_refund(world, first.refund_id, RefundStatus.SUBMITTED)
        over = await engine.service.create_refund(order.order_id, 401)
        assert isinstance(over, Rejection) and over.reason == "refund_exceeds_captured"
        rest = await engine.service.create_refund(order.order_id)  # what is left: 400
        assert isinstance(rest, Refund) and rest.amount_minor == 400
        await wait_refund(world, rest.refund_id, RefundStatus.SUCCEEDED)
        # The pending one fails at the PSP: its 600 is refundable again, and booked back.
        event = world.psp.refund_fails(first.refund_id, "card_closed")
        assert event is not None
        failed = await wait_refund(world, first.refund_id, RefundStatus.FAILED)
        assert failed.failure_reason == "card_closed"
        third = await engine.service.create_refund(order.order_id, 600)
        assert isinstance(third, Refund)
        await wait_refund(world, third.refund_id, RefundStatus.SUCCEEDED)
        listed = await engine.service.list_refunds(order.order_id, 10)
        assert [r.refund_id for r in listed] == sorted(
            [first.refund_id, rest.refund_id, third.refund_id]
        )
    await assert_refund_books(world)


async def test_racing_refunds_of_one_order_refund_at_most_the_capture(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 1_000)
        replies: list[Refund | Rejection] = []

        async def request(n: int) -> None:
            replies.append(await engine.service.create_refund(order.order_id, 300 + n))

        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(request, n)
        made = [r for r in replies if isinstance(r, Refund)]
        assert sum(r.amount_minor for r in made) <= 1_000 and len(made) == 3
        assert {r.reason for r in replies if isinstance(r, Rejection)} == {
            "refund_exceeds_captured"
        }
        for refund in made:
            await wait_refund(world, refund.refund_id, RefundStatus.SUCCEEDED)
        assert world.psp.captures_by_id[order.psp_capture_id or ""].refunded_minor <= 1_000
    await assert_refund_books(world)


async def test_lost_answers_retry_the_same_key_and_refund_once(autojump_clock: MockClock) -> None:
    world = make_world()
    world.hold_webhooks = True  # else the PSP's webhook would settle it after the first call
    async with world.running() as engine:
        order = await captured_order_held(world, engine)
        world.psp.script("refund", "timeout_after", "unavailable", "timeout_after")
        refund = await engine.service.create_refund(order.order_id, 2_500)
        assert isinstance(refund, Refund)
        done = await wait_refund(world, refund.refund_id, RefundStatus.SUCCEEDED)
        assert world.psp.refund_calls[refund.refund_id] == 4
        assert list(world.psp.refunds) == [refund.refund_id]
        assert done.attempts == 3
        settled = await world.store.list_entries(REFUNDS_CLEARING, 10)
        assert len(settled) == 2  # Cr at creation, Dr once paid: one refund, booked once
    await assert_refund_books(world)


async def test_silence_never_fails_a_refund(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        limit = world.config.refund_attempts_max
        world.psp.script("refund", *["unavailable"] * limit)
        world.psp.script("query_refund", *["unavailable"] * 3)
        refund = await engine.service.create_refund(order.order_id, 100)
        assert isinstance(refund, Refund)

        async def gave_up_calling() -> bool:
            current = await world.store.get_refund(refund.refund_id)
            return current is not None and current.attempts >= limit

        await wait_until(gave_up_calling)
        assert await refund_status(world, refund.refund_id) is RefundStatus.REQUESTED
        # The PSP answers queries again: NOT_FOUND (it never got one), so the call is made.
        await wait_refund(world, refund.refund_id, RefundStatus.SUCCEEDED)
        assert list(world.psp.refunds) == [refund.refund_id]
    await assert_refund_books(world)


async def test_declined_refund_is_reversed_exactly(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 9_999)
        trial_before = await world.store.trial_balance()
        world.psp.script("refund", "decline")
        refund = await engine.service.create_refund(order.order_id, 3_333)
        assert isinstance(refund, Refund)
        failed = await wait_refund(world, refund.refund_id, RefundStatus.FAILED)
        assert failed.failure_reason == "declined"
        after = {k: v for k, v in (await world.store.trial_balance()).items() if v}
        assert after == {k: v for k, v in trial_before.items() if v}
        posted = await _txn(world, TransactionKind.REFUND, refund.refund_id)
        reversed_ = await _txn(world, TransactionKind.REFUND_REVERSED, refund.refund_id)
        assert [(e.account, -e.amount_minor) for e in posted.entries] == [
            (e.account, e.amount_minor) for e in reversed_.entries
        ]
    await assert_refund_books(world)


async def test_refund_webhooks_drive_state_once(autojump_clock: MockClock) -> None:
    world = make_world()
    world.hold_webhooks = True
    async with world.running() as engine:
        order = await captured_order_held(world, engine)
        world.psp.script("refund", "pending")
        refund = await engine.service.create_refund(order.order_id, 700)
        assert isinstance(refund, Refund)
        await wait_refund(world, refund.refund_id, RefundStatus.SUBMITTED)
        event = world.psp.refund_succeeds(refund.refund_id)
        assert event is not None
        assert await world.deliver(event) == "applied"
        assert await world.deliver(attrs.evolve(event)) == "duplicate"
        assert await refund_status(world, refund.refund_id) is RefundStatus.SUCCEEDED
        contradiction = attrs.evolve(
            event, event_id="evt_contradiction", kind=PspEventKind.REFUND_FAILED
        )
        assert await world.deliver(contradiction) == "ignored"
        assert await refund_status(world, refund.refund_id) is RefundStatus.SUCCEEDED
        unknown = PspNotification(
            "evt_unknown", PspEventKind.REFUND_SUCCEEDED, "re_unknown", world.clock.now_ms()
        )
        assert await world.deliver(unknown) == "unknown_reference"
        assert await world.deliver(unknown) == "duplicate"
        settled = await world.store.list_entries(REFUNDS_CLEARING, 10)
        assert len(settled) == 2
    await assert_refund_books(world)


async def captured_order_held(world: World, engine: Engine) -> PaymentOrder:
    """A captured order while webhooks are held (the capture's answer books it)."""
    view = await paid_checkout(world, engine, checkout("chk-held", {"s1": 5_000}))
    for event in world.held_events():
        await world.deliver(event)
    await wait_until(lambda: completed(world, view.payment.payment_id))
    (order,) = await world.store.get_orders(view.payment.payment_id)
    return order


async def test_recovery_resumes_a_refund_cut_off_mid_call(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        world.psp.script("refund", "hang")
        refund = await engine.service.create_refund(order.order_id, 1_234)
        assert isinstance(refund, Refund)
        await wait_until(lambda: world.psp.refund_calls[refund.refund_id] == 1)
    # The engine stopped mid-call; the PSP never acted. A new engine asks, then calls.
    assert await refund_status(world, refund.refund_id) is RefundStatus.REQUESTED
    async with world.running():
        await wait_refund(world, refund.refund_id, RefundStatus.SUCCEEDED)
    assert list(world.psp.refunds) == [refund.refund_id]
    await assert_refund_books(world)


async def test_seller_short_of_its_share_owes_the_platform(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 10_000)  # the seller's net: 9,000
        async with world.store.unit_of_work() as uow:  # 8,500 of it leaves for a payout
            await uow.post_transaction(
                Transaction(
                    "txn_payout",
                    TransactionKind.PAYOUT_RESERVE,
                    "po_1",
                    payout_reserve_entries("s1", Money(8_500, "USD")),
                    world.clock.now_ms(),
                )
            )
        refund = await engine.service.create_refund(order.order_id, 10_000)
        assert isinstance(refund, Refund)
        await wait_refund(world, refund.refund_id, RefundStatus.SUCCEEDED)
        (balance,) = await world.store.list_balances("s1")
        assert balance.available_minor == 0
        trial = await world.store.trial_balance()
        assert trial[(merchant_receivable("s1"), "USD")] == 8_500
        assert trial[(PLATFORM_REVENUE, "USD")] == 0
    await assert_refund_books(world)


async def test_creation_is_idempotent_on_its_key(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        first = await engine.service.create_refund(order.order_id, 500, idempotency_key="k1")
        again = await engine.service.create_refund(order.order_id, 500, idempotency_key="k1")
        assert isinstance(first, Refund) and isinstance(again, Refund)
        assert again.refund_id == first.refund_id
        other = await engine.service.create_refund(order.order_id, 501, idempotency_key="k1")
        assert isinstance(other, Rejection) and other.reason == "creation_key_reused"
        assert len(await engine.service.list_refunds(order.order_id, 10)) == 1


async def test_bad_refunds_are_rejected_and_write_nothing(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        world.psp.script("capture", "decline")
        view = await paid_checkout(world, engine, checkout("chk-declined", {"s2": 700}))
        await wait_until(lambda: _order_failed(world, view.payment.payment_id))
        (declined,) = await world.store.get_orders(view.payment.payment_id)
        trial = await world.store.trial_balance()
        cases = [
            ("ord_unknown", None, None, "order_not_found"),
            (declined.order_id, None, None, "order_not_captured"),
            (order.order_id, 100, "EUR", "refund_currency_mismatch"),
            (order.order_id, 0, None, "refund_amount_not_positive"),
            (order.order_id, -5, None, "refund_amount_not_positive"),
            (order.order_id, 10_001, None, "refund_exceeds_captured"),
        ]
        for order_id, amount, currency, reason in cases:
            reply = await engine.service.create_refund(order_id, amount, currency=currency)
            assert isinstance(reply, Rejection) and reply.reason == reason, (order_id, reply)
        assert await world.store.list_unfinished_refunds(10) == []
        assert await engine.service.list_refunds(order.order_id, 10) == []
        assert await world.store.trial_balance() == trial
        assert world.psp.refunds == {}


async def _order_failed(world: World, payment_id: str) -> bool:
    orders = await world.store.get_orders(payment_id)
    return bool(orders) and orders[0].status is OrderStatus.FAILED


async def _txn(world: World, kind: TransactionKind, reference: str) -> Transaction:
    async with world.store.unit_of_work() as uow:
        txn = await uow.get_transaction_by_reference(kind, reference)
    assert txn is not None
    return txn


def _captured(amount_minor: int) -> PaymentOrder:
    return PaymentOrder(
        order_id="ord_x",
        payment_id="pay_x",
        seller_id="s",
        currency="USD",
        amount_minor=amount_minor,
        status=OrderStatus.SUCCESS,
        created_at_ms=1,
        updated_at_ms=1,
        ledger_booked=True,
        wallet_booked=True,
        psp_capture_id="cap_x",
    )


@given(
    st.integers(min_value=1, max_value=10**9),
    st.lists(
        st.tuples(st.none() | st.integers(min_value=-5, max_value=10**9), st.booleans()),
        max_size=30,
    ),
)
def test_accepted_refunds_never_exceed_the_capture(
    captured: int, requests: list[tuple[int | None, bool]]
) -> None:
    """Whatever is asked, in any order, with some refunds failing at the PSP afterwards: the
    refunds not FAILED never add up to more than was captured, and what is refused is only
    what would have gone over (or was not positive)."""
    order = _captured(captured)
    refunds: list[Refund] = []
    for n, (amount, fails) in enumerate(requests):
        decided, rejection = refund_rejection(order, refunds, CreateRefund(f"k{n}", amount), 50)
        held = sum(r.amount_minor for r in refunds if r.status is not RefundStatus.FAILED)
        if rejection is None:
            assert decided > 0 and held + decided <= captured
            assert amount in (None, decided)
            status = RefundStatus.FAILED if fails else RefundStatus.SUCCEEDED
            refunds.append(
                Refund(f"re_{n}", "ord_x", "USD", decided, status, 1, 1, creation_key=f"k{n}")
            )
        elif len(refunds) < 50:
            positive = amount is None or amount > 0
            assert not positive or held + (amount or 0) > captured or held == captured
        assert sum(r.amount_minor for r in refunds if r.status is not RefundStatus.FAILED) <= (
            captured
        )
