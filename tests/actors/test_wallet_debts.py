"""A seller's debts through the engine (issue 11, money out): refunds and lost disputes record
the seller's share as a debt, and only its merchant actor takes money from the wallet, paying
the debt first (actors/debts.py, engine/receivables.py).

Each test runs the real engine (actors, memory store, fake PSP, fake payout provider) on the
autojump clock.
"""

from __future__ import annotations

from trio.testing import MockClock

from actors.payout_messages import MERCHANT, SettleDebts
from actors.service import Rejection
from engine.ledger import (
    REFUNDS_CLEARING,
    Entry,
    Transaction,
    TransactionKind,
    merchant_receivable,
)
from engine.money import Money
from engine.records import Payout, Refund
from engine.states import PayoutStatus, RefundStatus
from simulator.oracle_wallet import check_wallet_at_commit
from tests.actors.harness import make_world
from tests.actors.test_payouts import account, payout_world, sold, wait_payout, wallet
from tests.actors.test_refunds import wait_refund


async def _order_of(world: object, engine: object, seller: str = "s1") -> str:
    store = world.store  # type: ignore[attr-defined]
    (payment,) = await store.list_payments(10)
    (order,) = await store.get_orders(payment.payment_id)
    assert order.seller_id == seller
    return str(order.order_id)


async def test_a_short_wallet_owes_and_pays_its_debt_before_any_payout(
    autojump_clock: MockClock,
) -> None:
    async with payout_world() as (world, engine, _):
        await sold(world, engine)  # 9000 available
        order_id = await _order_of(world, engine)
        payout = await engine.payouts.create_payout("s1", "USD", 9_000, idempotency_key="p1")
        assert isinstance(payout, Payout)
        await wait_payout(world, payout.payout_id, PayoutStatus.PAID)
        refund = await engine.service.create_refund(order_id, reason="damaged")
        assert isinstance(refund, Refund)
        # The platform covers the buyer; the seller, its wallet empty, owes its whole share.
        assert await wallet(world) == (0, 0)
        assert await account(world, merchant_receivable("s1")) == 9_000
        await sold(world, engine, 5_000)  # 4500 more: the debt comes first
        assert await wallet(world) == (4_500, 0)
        refused = await engine.payouts.create_payout("s1", "USD", None, idempotency_key="p2")
        assert isinstance(refused, Rejection) and refused.reason == "payout_exceeds_available"
        assert await wallet(world) == (0, 0)  # collected in the payout's own unit of work
        assert await account(world, merchant_receivable("s1")) == 4_500
        trial = await world.store.trial_balance()
        assert sum(v for (_, c), v in trial.items() if c == "USD") == 0


async def test_a_refund_with_money_in_the_wallet_is_paid_at_once(
    autojump_clock: MockClock,
) -> None:
    async with payout_world() as (world, engine, _):
        await sold(world, engine)
        order_id = await _order_of(world, engine)
        refund = await engine.service.create_refund(order_id, amount_minor=5_000)
        assert isinstance(refund, Refund)
        # The refund's unit recorded the 4500 debt; the merchant actor collected it at once.
        assert await wallet(world) == (4_500, 0)
        assert await account(world, merchant_receivable("s1")) == 0


async def _record_debt(world: object, amount_minor: int, reference: str) -> None:
    """What a refund's unit of work posts, with no request to settle after it (as if the engine
    crashed between the refund's commit and its ask to the merchant actor)."""
    store = world.store  # type: ignore[attr-defined]
    amount = Money(amount_minor, "USD")
    async with store.unit_of_work() as uow:
        await uow.post_transaction(
            Transaction(
                txn_id=f"txn_{reference}",
                kind=TransactionKind.REFUND,
                reference=reference,
                entries=(
                    Entry.debit(merchant_receivable("s1"), amount),
                    Entry.credit(REFUNDS_CLEARING, amount),
                ),
                created_at_ms=0,
            )
        )


async def test_a_lost_settle_request_loses_nothing_and_settling_twice_posts_once(
    autojump_clock: MockClock,
) -> None:
    async with payout_world() as (world, engine, _):
        await sold(world, engine)  # 9000 available
        await _record_debt(world, 2_000, "re_crashed")
        assert await wallet(world) == (9_000, 0)  # the ask was lost: the debt stays owed
        payout = await engine.payouts.create_payout("s1", "USD", None, idempotency_key="p1")
        assert isinstance(payout, Payout) and payout.amount_minor == 7_000  # the debt first
        assert await account(world, merchant_receivable("s1")) == 0
        count = await world.store.count_transactions()
        for _ in range(2):  # a retry after a crash, or two flows asking: nothing more
            reply = await engine.ctx.system.ask(MERCHANT, "s1", SettleDebts("USD"))
            assert reply == "settled"
        assert await world.store.count_transactions() == count


async def test_the_oracle_sees_a_payout_reserved_before_the_debt(
    autojump_clock: MockClock,
) -> None:
    """The planted bug `debt_not_collected_before_payout`: the payout's unit skips the debt, and
    the oracle's commit check names it."""
    world = make_world(faults=frozenset({"debt_not_collected_before_payout"}))
    async with payout_world(world) as (world, engine, _):
        await sold(world, engine)
        await _record_debt(world, 2_000, "re_owed")
        payout = await engine.payouts.create_payout("s1", "USD", None, idempotency_key="p1")
        assert isinstance(payout, Payout) and payout.amount_minor == 9_000  # the owed money too
        async with world.store.unit_of_work() as uow:
            reserve = await uow.get_transaction_by_reference(
                TransactionKind.PAYOUT_RESERVE, payout.payout_id
            )
        assert reserve is not None
        owed = await account(world, merchant_receivable("s1"))
        found, _ = check_wallet_at_commit([reserve], {("s1", "USD"): owed})
        assert [f[0] for f in found] == ["debt_collected_before_payout"]


async def test_a_failed_refund_gives_a_collected_share_back(autojump_clock: MockClock) -> None:
    async with payout_world() as (world, engine, _):
        await sold(world, engine)  # 9000 available
        order_id = await _order_of(world, engine)
        world.psp.script("refund", "pending")  # in flight at the PSP until it says otherwise
        refund = await engine.service.create_refund(order_id, amount_minor=5_000)
        assert isinstance(refund, Refund)
        await wait_refund(world, refund.refund_id, RefundStatus.SUBMITTED)
        assert await wallet(world) == (4_500, 0)  # the 4500 share was collected at once
        payout = await engine.payouts.create_payout("s1", "USD", None, idempotency_key="p1")
        assert isinstance(payout, Payout) and payout.amount_minor == 4_500
        assert world.psp.refund_fails(refund.refund_id, "card_closed") is not None
        await wait_refund(world, refund.refund_id, RefundStatus.FAILED)
        # The reversal cancels the debt the seller already paid: released to its wallet.
        assert await account(world, merchant_receivable("s1")) == 0
        assert (await wallet(world))[0] == 4_500
