"""Disputes (chargebacks) as the engine records them (actors/dispute.py): the chargeback is
posted once when the PSP first speaks of a dispute; a lost one is recovered from the seller by
the wallet policy, a won one reinstated; events in any order, duplicated or lost end the same."""

from __future__ import annotations

import itertools

import attrs
from trio.testing import MockClock

from actors.engine import Engine
from actors.service import Rejection
from engine.gateway import PspEventKind, PspNotification
from engine.ledger import (
    CHARGEBACKS,
    PLATFORM_REVENUE,
    PSP_CLEARING,
    Transaction,
    TransactionKind,
    merchant_payable,
    merchant_receivable,
    payout_reserve_entries,
)
from engine.money import Money
from engine.records import Dispute, PaymentOrder
from engine.states import DisputeStatus, OrderStatus
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
    assert order.status is OrderStatus.SUCCESS and order.booked and order.psp_capture_id
    return order


async def wait_dispute(world: World, dispute_id: str, status: DisputeStatus) -> Dispute:
    async def reached() -> bool:
        dispute = await world.store.get_dispute(dispute_id)
        return dispute is not None and dispute.status is status

    await wait_until(reached)
    dispute = await world.store.get_dispute(dispute_id)
    assert dispute is not None
    return dispute


async def hold_webhooks(world: World) -> None:
    """Stop the harness's webhook pump: it waits on the PSP's channel, so it is handed one
    already-delivered event (answered "duplicate") to see the flag."""
    world.hold_webhooks = True
    seen = len(world.delivered)
    world.psp.webhook_send.send_nowait(world.delivered[-1][0])
    await wait_until(lambda: len(world.delivered) > seen)


async def account(world: World, name: str, currency: str = "USD") -> int:
    return (await world.store.trial_balance()).get((name, currency), 0)


async def kinds_of(world: World, dispute_id: str) -> list[TransactionKind]:
    found = []
    async with world.store.unit_of_work() as uow:
        for kind in (
            TransactionKind.CHARGEBACK,
            TransactionKind.CHARGEBACK_RECOVERY,
            TransactionKind.CHARGEBACK_REINSTATED,
        ):
            if await uow.get_transaction_by_reference(kind, dispute_id) is not None:
                found.append(kind)
    return found


async def assert_psp_clearing_matches(world: World) -> None:
    """psp_clearing = PSP captured - refunded - what disputes keep withdrawn."""
    psp = world.psp
    expected = psp.captured_total() - psp.refunded_total() - psp.dispute_book.withdrawn_total()
    trial = await world.store.trial_balance()
    ledger = {c: v for (a, c), v in trial.items() if a == PSP_CLEARING and v}
    assert dict(expected) == ledger


async def test_lost_dispute_posts_the_chargeback_then_recovers_it_from_the_seller(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        assert order.psp_capture_id is not None
        opened = world.psp.dispute_book.open(order.psp_capture_id)
        assert opened is not None and opened.amount == Money(10_000, "USD")
        dispute = await wait_dispute(world, opened.dispute_id, DisputeStatus.OPEN)
        assert (dispute.order_id, dispute.amount_minor) == (order.order_id, 10_000)
        assert await account(world, CHARGEBACKS) == 10_000  # Dr chargebacks: open, withdrawn
        await assert_psp_clearing_matches(world)

        assert world.psp.dispute_book.close(opened.dispute_id, won=False)
        await wait_dispute(world, opened.dispute_id, DisputeStatus.LOST)
        # Recovered: the seller's 90.00 from its wallet, our 10.00 commission given back.
        assert await account(world, CHARGEBACKS) == 0
        assert await account(world, merchant_payable("s1")) == 0
        assert await account(world, PLATFORM_REVENUE) == 0
        assert await account(world, merchant_receivable("s1")) == 0
        assert await kinds_of(world, opened.dispute_id) == [
            TransactionKind.CHARGEBACK,
            TransactionKind.CHARGEBACK_RECOVERY,
        ]
        await assert_psp_clearing_matches(world)
        # A disputed order is refunded no more: the PSP would refuse it.
        refused = await engine.service.create_refund(order.order_id, idempotency_key="r1")
        assert isinstance(refused, Rejection) and refused.reason == "order_disputed"
        outcomes = {o for e, o in world.delivered if e.kind.value.startswith("charge.dispute")}
        assert outcomes <= {"applied", "ignored"}


async def test_won_dispute_reinstates_the_funds_and_the_seller_keeps_its_share(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        assert order.psp_capture_id is not None
        opened = world.psp.dispute_book.open(order.psp_capture_id)
        assert opened is not None
        await wait_dispute(world, opened.dispute_id, DisputeStatus.OPEN)
        assert world.psp.dispute_book.close(opened.dispute_id, won=True)
        await wait_dispute(world, opened.dispute_id, DisputeStatus.WON)
        assert await account(world, CHARGEBACKS) == 0
        assert await account(world, merchant_payable("s1")) == -9_000  # untouched
        assert await kinds_of(world, opened.dispute_id) == [
            TransactionKind.CHARGEBACK,
            TransactionKind.CHARGEBACK_REINSTATED,
        ]
        await assert_psp_clearing_matches(world)
    await assert_books_balanced_with_disputes(world)


async def assert_books_balanced_with_disputes(world: World) -> None:
    trial = await world.store.trial_balance()
    per_currency: dict[str, int] = {}
    for (_, currency), total in trial.items():
        per_currency[currency] = per_currency.get(currency, 0) + total
    assert all(v == 0 for v in per_currency.values()), per_currency


async def _final_books_after(kinds: list[PspEventKind], won: bool) -> tuple[object, ...]:
    """A fresh world that sees a dispute's events in the given order (each twice)."""
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        await hold_webhooks(world)
        assert order.psp_capture_id is not None
        opened = world.psp.dispute_book.open(order.psp_capture_id)
        assert opened is not None
        world.psp.dispute_book.close(opened.dispute_id, won=won)
        produced = world.held_events()
        by_kind = {e.kind: e for e in produced}
        outcomes = []
        for kind in kinds:
            outcomes.append(await world.deliver(by_kind[kind]))
            assert await world.deliver(attrs.evolve(by_kind[kind])) == "duplicate"
        # The first word records it; later ones apply the close or repeat what is known.
        assert outcomes[0] == "applied" and set(outcomes) <= {"applied", "ignored"}, outcomes
        dispute = await world.store.get_dispute(opened.dispute_id)
        assert dispute is not None
        trial = await world.store.trial_balance()
        return (
            dispute.status,
            await kinds_of(world, opened.dispute_id),
            {k: v for k, v in trial.items() if v},
        )


async def test_events_in_any_order_end_the_same(autojump_clock: MockClock) -> None:
    for won, kinds in (
        (
            True,
            [
                PspEventKind.DISPUTE_CREATED,
                PspEventKind.DISPUTE_FUNDS_WITHDRAWN,
                PspEventKind.DISPUTE_CLOSED,
                PspEventKind.DISPUTE_FUNDS_REINSTATED,
            ],
        ),
        (
            False,
            [
                PspEventKind.DISPUTE_CREATED,
                PspEventKind.DISPUTE_FUNDS_WITHDRAWN,
                PspEventKind.DISPUTE_CLOSED,
            ],
        ),
    ):
        finals = set()
        for order in itertools.permutations(kinds):
            status, kinds_posted, trial = await _final_books_after(list(order), won)
            assert status is (DisputeStatus.WON if won else DisputeStatus.LOST)
            recovery = (
                TransactionKind.CHARGEBACK_REINSTATED
                if won
                else TransactionKind.CHARGEBACK_RECOVERY
            )
            assert kinds_posted == [TransactionKind.CHARGEBACK, recovery], order
            finals.add(repr(sorted(trial.items())))
        assert len(finals) == 1  # every order of the events leaves the same books


async def test_a_short_wallet_leaves_the_seller_owing_the_rest(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        assert order.psp_capture_id is not None
        # The seller reserved 80.00 of its 90.00 for a payout: 10.00 is available.
        async with world.store.unit_of_work() as uow:
            await uow.post_transaction(
                Transaction(
                    "txn_reserve",
                    TransactionKind.PAYOUT_RESERVE,
                    "po_1",
                    payout_reserve_entries("s1", Money(8_000, "USD")),
                    world.clock.now_ms(),
                )
            )
        opened = world.psp.dispute_book.open(order.psp_capture_id)
        assert opened is not None
        world.psp.dispute_book.close(opened.dispute_id, won=False)
        await wait_dispute(world, opened.dispute_id, DisputeStatus.LOST)
        (balance,) = await world.store.list_balances("s1")
        assert (balance.available_minor, balance.reserved_minor) == (0, 8_000)
        assert await account(world, merchant_receivable("s1")) == 8_000  # the seller owes it
        assert await account(world, CHARGEBACKS) == 0
        assert await account(world, PLATFORM_REVENUE) == 0


async def test_a_lost_close_webhook_is_found_by_asking_the_psp(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        assert order.psp_capture_id is not None
        await hold_webhooks(world)
        opened = world.psp.dispute_book.open(order.psp_capture_id)
        assert opened is not None
        created, _withdrawn = world.held_events()
        assert await world.deliver(created) == "applied"
        world.psp.dispute_book.close(opened.dispute_id, won=False)
        assert len(world.held_events()) == 1  # the close is lost
        await wait_dispute(world, opened.dispute_id, DisputeStatus.LOST)
        assert world.clock.now_ms() - created.occurred_at_ms >= (
            world.config.dispute_poll_interval_s * 1000
        )
        assert await account(world, CHARGEBACKS) == 0


async def test_recovery_asks_the_psp_about_every_open_dispute(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine)
        assert order.psp_capture_id is not None
        opened = world.psp.dispute_book.open(order.psp_capture_id)
        assert opened is not None
        await wait_dispute(world, opened.dispute_id, DisputeStatus.OPEN)
        await hold_webhooks(world)
    # The engine is gone; the dispute is won while it is down, and its webhooks are lost.
    world.psp.dispute_book.close(opened.dispute_id, won=True)
    world.held_events()
    async with world.running():
        await wait_dispute(world, opened.dispute_id, DisputeStatus.WON)
        assert (
            world.clock.now_ms() - opened.created_at_ms
            < world.config.dispute_poll_interval_s * 1000
        )
    assert await account(world, CHARGEBACKS) == 0


async def test_dispute_event_for_no_order_of_ours_is_kept_and_changes_nothing(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    async with world.running():
        event = PspNotification(
            "evt_dp_x",
            PspEventKind.DISPUTE_CREATED,
            "ord_not_ours",
            world.clock.now_ms(),
            capture_id="cap_x",
            dispute_id="dp_x",
            amount_minor=100,
            currency="USD",
            dispute_status="needs_response",
        )
        assert await world.deliver(event) == "unknown_reference"
        assert await world.deliver(attrs.evolve(event)) == "duplicate"
        assert await world.store.list_disputes(10) == []
        assert await world.store.count_transactions() == 0
