"""The fake payout provider: idempotent submits, its faults, and asynchronous outcomes that the
bank statement shows."""

from __future__ import annotations

import datetime as dt

import pytest
import trio
from trio.testing import MockClock

from actors.clock import TrioClock
from engine.gateway import GatewayUnavailable
from engine.money import Money
from engine.payout_gateway import PayoutEventKind, PayoutGateway, ProviderPayoutStatus
from simulator.bank import Direction, FakeBank, Statement, parse_statement
from simulator.payout_provider import (
    PAID_AFTER_S,
    FakePayoutProvider,
    OutcomePlan,
    PayoutAction,
    PayoutOutcome,
    ProviderPayout,
)
from simulator.statement_text import date_of_ms

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
USD_100 = Money(10_000, "USD")


def _provider(bank: FakeBank | None = None) -> FakePayoutProvider:
    clock = TrioClock(EPOCH_MS)
    if bank is None:
        return FakePayoutProvider(clock)
    bank.open_account("platform_usd", "USD", 1_000_000)
    return FakePayoutProvider(clock, bank=bank, bank_account="platform_usd")


async def test_the_same_key_twice_is_one_payout(autojump_clock: MockClock) -> None:
    provider = _provider()
    gateway: PayoutGateway = provider
    first = await gateway.submit_payout("po_1", "seller_1", USD_100)
    again = await gateway.submit_payout("po_1", "seller_1", USD_100)
    assert first == again and first.status is ProviderPayoutStatus.PENDING
    assert len(provider.payouts) == 1 and provider.submit_calls["po_1"] == 2
    assert (await gateway.query_payout("po_2")).status is ProviderPayoutStatus.NOT_FOUND


async def test_outcomes_arrive_later_and_the_bank_shows_them(autojump_clock: MockClock) -> None:
    bank = FakeBank()
    provider = _provider(bank)
    fates = {
        "po_paid": OutcomePlan(PayoutOutcome.PAID, 600.0),
        "po_failed": OutcomePlan(PayoutOutcome.FAILED, 900.0),
        "po_returned": OutcomePlan(PayoutOutcome.RETURNED, 1200.0, returned_after_s=86_400.0),
    }

    def outcome(payout: ProviderPayout) -> OutcomePlan:
        return fates[payout.key]

    provider.outcome = outcome
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)
        for key in fates:
            await provider.submit_payout(key, "seller_1", USD_100)
        await trio.sleep(2000.0)
        statuses = {k: (await provider.query_payout(k)).status for k in fates}
        assert statuses == {
            "po_paid": ProviderPayoutStatus.PAID,
            "po_failed": ProviderPayoutStatus.FAILED,
            "po_returned": ProviderPayoutStatus.PAID,
        }
        await trio.sleep(86_400.0)
        assert (await provider.query_payout("po_returned")).status is ProviderPayoutStatus.RETURNED
        nursery.cancel_scope.cancel()
    kinds = [(n.reference, n.kind) for n in provider.emitted]
    assert kinds == [
        ("po_paid", PayoutEventKind.PAID),
        ("po_failed", PayoutEventKind.FAILED),
        ("po_returned", PayoutEventKind.PAID),
        ("po_returned", PayoutEventKind.RETURNED),
    ]
    notices = []
    while True:
        try:
            notices.append(provider.notices_receive.receive_nowait())
        except trio.WouldBlock:
            break
    assert notices == provider.emitted
    # The bank: two debits on day one, the return credited on day two; balances continue.
    entries = bank.accounts["platform_usd"].entries
    assert [(e.direction, date_of_ms(e.booked_at_ms).day) for e in entries] == [
        (Direction.DEBIT, 1),
        (Direction.DEBIT, 1),
        (Direction.CREDIT, 2),
    ]
    day1 = parse_statement(bank.statement_file("platform_usd", dt.date(2026, 1, 1))[1])
    day2 = parse_statement(bank.statement_file("platform_usd", dt.date(2026, 1, 2))[1])
    assert isinstance(day1, Statement) and isinstance(day2, Statement)
    assert day1.closing_minor == 1_000_000 - 2 * 10_000 == day2.opening_minor
    assert day2.closing_minor == 1_000_000 - 10_000 == bank.balance_minor("platform_usd")
    assert provider.paid_total() == {"USD": 10_000}


async def test_by_default_a_payout_is_paid_after_an_hour(autojump_clock: MockClock) -> None:
    provider = _provider()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)
        await provider.submit_payout("po_1", "seller_1", USD_100)
        await trio.sleep(PAID_AFTER_S - 1)
        assert provider.payouts["po_1"].status is ProviderPayoutStatus.PENDING
        await trio.sleep(2)
        assert provider.payouts["po_1"].status is ProviderPayoutStatus.PAID
        nursery.cancel_scope.cancel()


async def test_unavailable_and_hang_do_not_act(autojump_clock: MockClock) -> None:
    provider = _provider()
    provider.script("submit", "unavailable", "hang")
    with pytest.raises(GatewayUnavailable):
        await provider.submit_payout("po_1", "seller_1", USD_100)
    with trio.move_on_after(30.0) as scope:
        await provider.submit_payout("po_1", "seller_1", USD_100)
    assert scope.cancelled_caught
    assert provider.payouts == {}
    assert (await provider.submit_payout("po_1", "seller_1", USD_100)).status is (
        ProviderPayoutStatus.PENDING
    )


async def test_a_lost_answer_still_pays_once(autojump_clock: MockClock) -> None:
    provider = _provider()
    provider.script("submit", "timeout_after")
    with pytest.raises(GatewayUnavailable):
        await provider.submit_payout("po_1", "seller_1", USD_100)
    assert (await provider.query_payout("po_1")).status is ProviderPayoutStatus.PENDING
    retry = await provider.submit_payout("po_1", "seller_1", USD_100)
    assert retry.payout_id == provider.payouts["po_1"].payout_id and len(provider.payouts) == 1


async def test_a_refused_destination_fails_at_once(autojump_clock: MockClock) -> None:
    provider = _provider()
    provider.script("submit", "reject")
    result = await provider.submit_payout("po_1", "seller_x", USD_100)
    assert result.status is ProviderPayoutStatus.FAILED and result.reason == "destination_refused"
    assert [n.kind for n in provider.emitted] == [PayoutEventKind.FAILED]


async def test_the_chooser_and_latency_hooks_drive_each_call(autojump_clock: MockClock) -> None:
    provider = _provider()
    seen: list[str] = []

    def chooser(operation: str) -> PayoutAction:
        seen.append(operation)
        return PayoutAction.OK

    provider.chooser = chooser
    provider.latency = lambda operation: 2.5
    start = trio.current_time()
    await provider.submit_payout("po_1", "seller_1", USD_100)
    await provider.query_payout("po_1")
    assert seen == ["submit", "query"] and trio.current_time() - start == 5.0
