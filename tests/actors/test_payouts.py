"""Payouts through the engine: one provider payout per payout id, never more than the wallet,
always balanced; timeouts retried under the same key, notices applied in any order.

Each test runs the real engine (actors, memory store, fake PSP, fake payout provider) on the
autojump clock.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from actors.engine import Engine
from actors.service import Rejection
from engine.ledger import (
    BANK_CASH,
    CHARGEBACKS,
    TransactionKind,
    merchant_payable,
    merchant_receivable,
    merchant_reserved,
)
from engine.money import Money
from engine.payout_gateway import PayoutEventKind, PayoutNotification
from engine.payouts import DAY_MS, ScheduleInterval, steps_to
from engine.records import Payout
from engine.states import PayoutStatus
from simulator.payout_provider import (
    FakePayoutProvider,
    OutcomePlan,
    PayoutAction,
    PayoutOutcome,
)
from tests.actors.harness import World, checkout, completed, make_world, paid_checkout, wait_until

PO = PayoutStatus


@asynccontextmanager
async def payout_world(
    world: World | None = None, *, pump: bool = True
) -> AsyncIterator[tuple[World, Engine, FakePayoutProvider]]:
    world = world or make_world()
    provider = world.payout_provider or FakePayoutProvider(world.clock)
    world.payout_provider = provider
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)
        async with world.running() as engine:
            if pump:
                nursery.start_soon(_pump, provider, engine)
            yield world, engine, provider
        nursery.cancel_scope.cancel()


async def _pump(provider: FakePayoutProvider, engine: Engine) -> None:
    async for notice in provider.notices_receive:
        await engine.payouts.apply_notice(notice)


async def sold(
    world: World, engine: Engine, amount_minor: int = 10_000, seller: str = "s1"
) -> None:
    """A captured order of `amount_minor` for `seller` (10% commission: 90% to its wallet)."""
    view = await paid_checkout(
        world, engine, checkout(f"chk-{seller}-{amount_minor}", {seller: amount_minor})
    )
    await wait_until(lambda: completed(world, view.payment.payment_id))


async def wait_payout(world: World, payout_id: str, *statuses: PayoutStatus) -> Payout:
    async def reached() -> bool:
        payout = await world.store.get_payout(payout_id)
        return payout is not None and payout.status in statuses

    with trio.fail_after(10 * 86_400):  # virtual seconds; polled coarsely (outcomes take hours)
        while not await reached():
            await trio.sleep(10.0)
    payout = await world.store.get_payout(payout_id)
    assert payout is not None
    return payout


async def wallet(world: World, seller: str = "s1", currency: str = "USD") -> tuple[int, int]:
    for balance in await world.store.list_balances(seller):
        if balance.currency == currency:
            return balance.available_minor, balance.reserved_minor
    return 0, 0


async def account(world: World, name: str, currency: str = "USD") -> int:
    return (await world.store.trial_balance()).get((name, currency), 0)


async def test_payout_reserves_then_posts_once(autojump_clock: MockClock) -> None:
    async with payout_world() as (world, engine, provider):
        await sold(world, engine)
        payout = await engine.payouts.create_payout("s1", "USD", 5_000, idempotency_key="k1")
        assert isinstance(payout, Payout) and payout.status is PO.FUNDS_RESERVED
        assert await wallet(world) == (4_000, 5_000)
        again = await engine.payouts.create_payout("s1", "USD", 5_000, idempotency_key="k1")
        assert isinstance(again, Payout) and again.payout_id == payout.payout_id  # the same one
        assert await wallet(world) in ((4_000, 5_000), (4_000, 0))  # nothing reserved twice
        paid = await wait_payout(world, payout.payout_id, PO.PAID)
        assert paid.provider_ref is not None
        assert await wallet(world) == (4_000, 0)
        assert await account(world, BANK_CASH) == -5_000  # left our bank account
        assert provider.submit_calls[payout.payout_id] == 1 and len(provider.payouts) == 1


async def test_racing_payouts_never_spend_the_same_money(autojump_clock: MockClock) -> None:
    async with payout_world() as (world, engine, _):
        await sold(world, engine)  # 9000 available
        replies: list[object] = []

        async def ask(key: str) -> None:
            reply = await engine.payouts.create_payout("s1", "USD", 6_000, idempotency_key=key)
            replies.append(reply)

        async with trio.open_nursery() as nursery:
            for key in ("a", "b", "c"):
                nursery.start_soon(ask, key)
        made = [r for r in replies if isinstance(r, Payout)]
        refused = [r for r in replies if isinstance(r, Rejection)]
        assert len(made) == 1 and len(refused) == 2
        assert {r.reason for r in refused} == {"payout_exceeds_available"}
        assert await wallet(world) == (3_000, 6_000)


async def test_refusals_write_nothing(autojump_clock: MockClock) -> None:
    async with payout_world() as (world, engine, _):
        await sold(world, engine)
        before = await world.store.count_transactions()
        cases = [
            ("nobody", "USD", 100, "merchant_not_found"),
            ("s1", "EUR", 100, "payout_currency_mismatch"),
            ("s1", "USD", 9_001, "payout_exceeds_available"),
            ("s1", "USD", 0, "payout_amount_not_positive"),
            ("s1", "USD", -5, "payout_amount_not_positive"),
        ]
        for merchant, currency, amount, reason in cases:
            reply = await engine.payouts.create_payout(merchant, currency, amount)
            assert isinstance(reply, Rejection) and reply.reason == reason, (reply, reason)
        assert await world.store.count_transactions() == before
        assert await world.store.list_payouts("s1", 10) == []
        assert await wallet(world) == (9_000, 0)


async def test_lost_answers_retry_the_same_key_and_pay_once(autojump_clock: MockClock) -> None:
    async with payout_world() as (world, engine, provider):
        await sold(world, engine)
        provider.script("submit", "timeout_after", "unavailable", "timeout_after")
        payout = await engine.payouts.create_payout("s1", "USD", 9_000)
        assert isinstance(payout, Payout)
        await wait_payout(world, payout.payout_id, PO.PAID)
        assert provider.submit_calls[payout.payout_id] == 4
        assert list(provider.payouts) == [payout.payout_id]  # one payout at the provider
        assert await wallet(world) == (0, 0)


async def test_refused_payout_is_voided(autojump_clock: MockClock) -> None:
    async with payout_world() as (world, engine, provider):
        await sold(world, engine)
        provider.script("submit", "reject")
        payout = await engine.payouts.create_payout("s1", "USD", 2_500)
        assert isinstance(payout, Payout)
        failed = await wait_payout(world, payout.payout_id, PO.FAILED)
        assert failed.failure_reason == "destination_refused"
        assert await wallet(world) == (9_000, 0)
        assert await account(world, BANK_CASH) == 0


async def test_returned_payout_is_credited_back(autojump_clock: MockClock) -> None:
    world = make_world()
    world.payout_provider = provider = FakePayoutProvider(world.clock)
    provider.outcome = lambda _: OutcomePlan(PayoutOutcome.RETURNED, 60.0, 86_400.0)
    async with payout_world(world) as (world, engine, _):
        await sold(world, engine)
        payout = await engine.payouts.create_payout("s1", "USD", 9_000)
        assert isinstance(payout, Payout)
        await wait_payout(world, payout.payout_id, PO.PAID)
        assert await wallet(world) == (0, 0)
        returned = await wait_payout(world, payout.payout_id, PO.RETURNED)
        assert returned.failure_reason == "returned_by_bank"
        assert await wallet(world) == (9_000, 0)
        assert await account(world, BANK_CASH) == 0


async def test_notices_in_any_order_and_twice(autojump_clock: MockClock) -> None:
    """A RETURNED notice heard before PAID applies both steps; the late PAID and a duplicate
    are kept and change nothing."""
    async with payout_world(pump=False) as (world, engine, _):
        await sold(world, engine)
        payout = await engine.payouts.create_payout("s1", "USD", 4_000)
        assert isinstance(payout, Payout)
        await wait_payout(world, payout.payout_id, PO.SUBMITTED)

        def notice(n: int, kind: PayoutEventKind) -> PayoutNotification:
            return PayoutNotification(f"evt-{n}", kind, payout.payout_id, "po_x", 0, "returned")

        returned, paid = notice(2, PayoutEventKind.RETURNED), notice(1, PayoutEventKind.PAID)
        assert await engine.payouts.apply_notice(returned) == "applied"
        assert await engine.payouts.apply_notice(returned) == "duplicate"
        assert await engine.payouts.apply_notice(paid) == "ignored"
        final = await world.store.get_payout(payout.payout_id)
        assert final is not None and final.status is PO.RETURNED
        assert await wallet(world) == (9_000, 0)
        foreign = PayoutNotification("evt-9", PayoutEventKind.PAID, "po-unknown", "x", 0)
        assert await engine.payouts.apply_notice(foreign) == "unknown_reference"


async def test_recovery_resumes_a_payout_in_flight(autojump_clock: MockClock) -> None:
    world = make_world()
    world.payout_provider = provider = FakePayoutProvider(world.clock)
    provider.chooser = lambda _: PayoutAction.HANG
    provider.hang_s = 5.0
    async with payout_world(world) as (world, engine, _):
        await sold(world, engine)
        payout = await engine.payouts.create_payout("s1", "USD", 1_000)
        assert isinstance(payout, Payout)
        await trio.sleep(1.0)  # the submit hangs: the engine goes down mid-call
    provider.chooser = None
    async with payout_world(world) as (world, engine, _):
        await wait_payout(world, payout.payout_id, PO.PAID)
    assert len(provider.payouts) == 1


async def test_daily_schedule_pays_what_the_delay_released_once(autojump_clock: MockClock) -> None:
    async with payout_world() as (world, engine, _):
        await engine.payouts.put_schedule("s1", ScheduleInterval.DAILY, 1, {"USD": 1_000})
        await sold(world, engine)  # 9000, pending for a day
        await engine.payouts.run_schedules_once()
        await trio.sleep(1.0)
        assert await world.store.list_payouts("s1", 10) == []
        await trio.sleep(DAY_MS / 1000)
        for _ in range(3):  # the scheduler looks three times in one period: one payout
            await engine.payouts.run_schedules_once()
            await trio.sleep(1.0)
        (payout,) = await world.store.list_payouts("s1", 10)
        assert payout.amount_minor == 9_000 and payout.trigger == "scheduled"
        await sold(world, engine, 500)  # 450: pending, and below the minimum anyway
        await trio.sleep(DAY_MS / 1000)
        await engine.payouts.run_schedules_once()
        await trio.sleep(1.0)
        assert len(await world.store.list_payouts("s1", 10)) == 1


async def test_take_from_wallet_covers_the_shortfall(autojump_clock: MockClock) -> None:
    async with payout_world() as (world, engine, _):
        await sold(world, engine)  # 9000 available
        take = Money(12_000, "USD")
        txn = await engine.payouts.take_from_wallet(
            "s1", TransactionKind.CHARGEBACK_RECOVERY, "dp_1", take, CHARGEBACKS
        )
        again = await engine.payouts.take_from_wallet(
            "s1", TransactionKind.CHARGEBACK_RECOVERY, "dp_1", take, CHARGEBACKS
        )
        assert again == txn
        assert await wallet(world) == (0, 0)
        assert await account(world, merchant_receivable("s1")) == 3_000
        assert await account(world, merchant_payable("s1")) == 0
        assert await account(world, merchant_reserved("s1")) == 0


_HISTORIES = [
    (PO.SUBMITTED, PO.FAILED),
    (PO.SUBMITTED, PO.PAID),
    (PO.SUBMITTED, PO.PAID, PO.RETURNED),
    (PO.FAILED,),
]


@given(st.sampled_from(_HISTORIES), st.data())
def test_any_order_of_the_providers_words_ends_at_its_last(
    history: tuple[PayoutStatus, ...], data: st.DataObject
) -> None:
    """Whatever order the provider's words arrive in (each perhaps twice), a payout walks to
    the provider's final word and never contradicts it."""
    words = data.draw(st.permutations(list(history) * 2))
    status = PO.FUNDS_RESERVED
    for word in words:
        steps = steps_to(status, word)
        assert steps is not None, (status, word)
        for step in steps:
            status = step
    assert status is history[-1]


def test_a_contradiction_is_not_applied() -> None:
    for current, word in itertools.product((PO.PAID, PO.RETURNED), (PO.FAILED,)):
        assert steps_to(current, word) is None
    assert steps_to(PO.FAILED, PO.PAID) is None
