"""The reconciler on the real engine (actors, memory store, fake PSP) and the autojump clock:
a night's Stripe report settles what it proves once, repairs a capture we never heard of
through the order actor, and leaves money differences open for a person."""

from __future__ import annotations

import attrs
import pytest
import trio
from trio.testing import MockClock

from actors.engine import Engine
from actors.reconciler import Outcome, Reconciler, Window
from engine.ledger import BANK_CASH, PSP_CLEARING, PSP_FEES, TransactionKind
from engine.money import Money
from engine.reconciliation import Format, ParseError, write_stripe
from engine.reconciliation.match import ItemClass, Reason
from engine.reconciliation.run import ItemStatus, RunStatus
from engine.records import PaymentOrder
from engine.states import OrderStatus
from simulator.psp_reports import CONTRACT, psp_lines
from tests.actors.harness import (
    EPOCH_MS,
    World,
    checkout,
    completed,
    make_world,
    paid_checkout,
    wait_until,
)

END_MS = EPOCH_MS + 10 * 86_400_000


async def captured_order(world: World, engine: Engine, amount_minor: int) -> PaymentOrder:
    view = await paid_checkout(world, engine, checkout(f"chk-{amount_minor}", {"s1": amount_minor}))
    await wait_until(lambda: completed(world, view.payment.payment_id))
    (order,) = await world.store.get_orders(view.payment.payment_id)
    assert order.status is OrderStatus.SUCCESS and order.booked
    return order


def reconciler(world: World, engine: Engine) -> Reconciler:
    store = world.store
    return Reconciler(
        store,  # type: ignore[arg-type]
        world.clock,
        world.ids,
        tell=engine.system.tell,
        contract=CONTRACT,
    )


async def nightly(world: World, engine: Engine, **changes: object) -> tuple[bytes, Outcome]:
    lines = psp_lines(world.psp, EPOCH_MS, END_MS, "20260101")
    data = write_stripe([attrs.evolve(line, **changes) for line in lines])
    outcome = await reconciler(world, engine).reconcile(data, window=Window(EPOCH_MS, END_MS))
    return data, outcome


async def account(world: World, name: str, currency: str = "USD") -> int:
    return (await world.store.trial_balance()).get((name, currency), 0)


async def test_a_clean_report_settles_each_capture_once(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 10_000)
        data, outcome = await nightly(world, engine)
        assert outcome.run.status is RunStatus.CLEAN and not outcome.repeated
        assert [(i.klass, i.reference) for i in outcome.items] == [
            (ItemClass.MATCHED, order.order_id)
        ]
        assert outcome.posted == 1 and outcome.stored == ()
        fee = 290 + 30  # 2.9% of 100.00 plus 0.30
        assert await account(world, PSP_CLEARING) == 0
        assert await account(world, BANK_CASH) == 10_000 - fee
        assert await account(world, PSP_FEES) == fee
        again = await reconciler(world, engine).reconcile(data)
        assert again.repeated and again.run == outcome.run and again.posted == 0
        assert await account(world, BANK_CASH) == 10_000 - fee


async def test_a_capture_we_never_heard_of_is_completed_by_its_order_actor(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    world.hold_webhooks = True
    # The capture happens but its answer is lost, every retry fails and the status poll is
    # far away: only the night's report tells us.
    world.psp.script("capture", "timeout_after", *["unavailable"] * 11)
    world.psp.script("query", *["unavailable"] * 50)
    async with world.running() as engine:
        view = await paid_checkout(world, engine, checkout("chk-lost", {"s1": 5_000}))
        await wait_until(lambda: len(world.psp.captures) == 1)
        (order,) = await world.store.get_orders(view.payment.payment_id)
        assert order.status is OrderStatus.EXECUTING
        world.psp._scripts["query"].clear()
        _, outcome = await nightly(world, engine)
        (item,) = outcome.stored
        assert (item.klass, item.reason, item.status) == (
            ItemClass.AUTO_FIXED,
            Reason.CAPTURE_NOT_HEARD,
            ItemStatus.RESOLVED,
        )
        assert outcome.run.status is RunStatus.CLEAN

        async def booked() -> bool:
            got = await world.store.get_order(order.order_id)
            return got is not None and got.status is OrderStatus.SUCCESS and got.booked

        await wait_until(booked)
        assert await account(world, PSP_CLEARING) == 0  # captured, then settled: nothing owed
        assert await account(world, BANK_CASH) == 5_000 - (145 + 30)


async def test_an_amount_that_differs_is_left_open_and_nothing_is_posted(
    autojump_clock: MockClock,
) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 10_000)
        gross, fee = Money(12_000, "USD"), Money(320, "USD")
        _, outcome = await nightly(world, engine, gross=gross, fee=fee, net=gross - fee)
        (item,) = outcome.stored
        assert (item.klass, item.reason, item.reference) == (
            ItemClass.MANUAL_REVIEW,
            Reason.AMOUNT_DIFFERS,
            order.order_id,
        )
        assert outcome.run.status is RunStatus.NEEDS_REVIEW and outcome.posted == 0
        assert await account(world, PSP_CLEARING) == 10_000
        store = world.store
        resolved = await store.resolve_recon_item(item.item_id, "PSP confirmed 100.00", 1)  # type: ignore[attr-defined]
        assert resolved.status is ItemStatus.RESOLVED


async def test_a_missing_capture_is_flagged_in_its_window_only(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 7_000)
        empty = write_stripe([])
        rec = reconciler(world, engine)
        outside = await rec.reconcile(empty, Format.STRIPE, window=Window(0, EPOCH_MS))
        assert outside.stored == ()
        inside = await rec.reconcile(empty + b"\n", Format.STRIPE, window=Window(0, END_MS))
        (item,) = inside.stored
        assert (item.klass, item.reason, item.reference, item.expected) == (
            ItemClass.INVESTIGATE,
            Reason.MISSING_FROM_FILE,
            order.order_id,
            Money(7_000, "USD"),
        )
        async with world.store.unit_of_work() as uow:
            settled = await uow.get_transaction_by_reference(
                TransactionKind.SETTLEMENT, order.order_id
            )
        assert settled is None


async def test_a_dry_run_and_an_unusable_file_write_nothing(autojump_clock: MockClock) -> None:
    world = make_world()
    async with world.running() as engine:
        await captured_order(world, engine, 10_000)
        lines = psp_lines(world.psp, EPOCH_MS, END_MS, "20260101")
        data = write_stripe(lines)
        rec = reconciler(world, engine)
        dry = await rec.reconcile(data, dry_run=True)
        assert dry.dry_run and dry.items[0].klass is ItemClass.MATCHED
        assert await world.store.get_recon_run(dry.run.run_id) is None  # type: ignore[attr-defined]
        assert await account(world, PSP_CLEARING) == 10_000
        with pytest.raises(ParseError) as refused:
            await rec.reconcile(data.replace(b"charge", b"chorge"))
        assert refused.value.line == 2
        assert await account(world, PSP_CLEARING) == 10_000


async def test_a_dispute_never_heard_of_is_recorded_by_its_refund_actor_and_settled(
    autojump_clock: MockClock,
) -> None:
    """Both webhooks of a dispute are lost; the night's report lists its withdrawal: the run
    repairs it (auto_fixed dispute_not_heard) through the order's refund actor, which asks the
    PSP and records it OPEN with its chargeback, and settles the line once; psp_clearing ends
    at 0 (captured, withdrawn, both settled)."""
    world = make_world()
    async with world.running() as engine:
        order = await captured_order(world, engine, 10_000)
        # The dispute's webhooks are lost: the PSP sends them where nobody listens.
        lost, _ = trio.open_memory_channel[object](100)
        world.psp.webhook_send = lost  # type: ignore[assignment]
        assert order.psp_capture_id is not None
        opened = world.psp.dispute_book.open(order.psp_capture_id)
        assert opened is not None
        assert await world.store.get_dispute(opened.dispute_id) is None
        _, outcome = await nightly(world, engine)
        got = [(i.klass, i.reason, i.reference) for i in outcome.items]
        assert got == [
            (ItemClass.MATCHED, Reason.AS_EXPECTED, order.order_id),
            (ItemClass.AUTO_FIXED, Reason.DISPUTE_NOT_HEARD, opened.dispute_id),
        ]
        assert outcome.run.status is RunStatus.CLEAN

        async def recorded() -> bool:
            return await world.store.get_dispute(opened.dispute_id) is not None

        await wait_until(recorded)
        dispute = await world.store.get_dispute(opened.dispute_id)
        assert dispute is not None and dispute.order_id == order.order_id
        assert await account(world, PSP_CLEARING) == 0
        assert await account(world, "chargebacks") == 10_000
