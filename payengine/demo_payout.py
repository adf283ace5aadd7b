"""`payengine demo`, step 9: the seller is paid out, with the ledger lines of each phase.

Apart from demo.py so that file keeps to the checkout and its refund. The payout provider is
the simulator's in-process fake (simulator/payout_provider.py), paying after a moment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from actors.engine import Engine
from actors.service import Rejection
from engine.ledger import TransactionKind
from engine.money import format_amount
from engine.ports import Clock
from engine.records import PaymentOrder
from engine.states import PayoutStatus
from engine.store.port import Store
from simulator.fake_psp import process_namespace
from simulator.payout_provider import FakePayoutProvider, OutcomePlan, PayoutOutcome

#: How long after a submit the demo's provider says the payout is paid (real seconds).
DEMO_PAID_AFTER_S = 0.2


class _DemoProvider(FakePayoutProvider):
    """Ids of this process's own (as the demo's FakePsp has): a second demo on the same
    database must not have its provider's notices taken for the first one's duplicates."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self._namespace = process_namespace(clock.now_ms())

    def _new_id(self, prefix: str) -> str:
        return super()._new_id(f"{prefix}_{self._namespace}")


def demo_provider(clock: Clock) -> FakePayoutProvider:
    provider = _DemoProvider(clock)
    provider.outcome = lambda _: OutcomePlan(PayoutOutcome.PAID, DEMO_PAID_AFTER_S)
    return provider


async def pump_payout_notices(provider: FakePayoutProvider, engine: Engine) -> None:
    async for notice in provider.notices_receive:
        await engine.payouts.apply_notice(notice)


async def payout_step(
    engine: Engine,
    store: Store,
    order: PaymentOrder,
    say: Callable[..., None],
    step: Callable[[int, str, str], None],
    wait: Callable[[Callable[[], Awaitable[bool]]], Awaitable[bool]],
) -> bool:
    """Step 9: pay the seller what its wallet holds, in two phases: reserve, then post."""
    step(
        9,
        "A payout to the seller",
        "POST /v1/payouts: reserve the money, send it by the payout provider, post when paid.",
    )
    balances = {b.currency: b for b in await store.list_balances(order.seller_id)}
    available = balances[order.currency].available_minor
    payout = await engine.payouts.create_payout(
        order.seller_id, order.currency, available, idempotency_key=f"demo-{order.order_id}"
    )
    if isinstance(payout, Rejection):
        say(f"   the payout was refused: {payout}")
        return False
    amount = format_amount(payout.amount_minor, payout.currency)
    say(f"   payout {payout.payout_id} of {amount} {payout.currency} is {payout.status.value}")
    say("   (its payout id is the provider's idempotency key: a retry never pays twice)")

    async def paid() -> bool:
        current = await store.get_payout(payout.payout_id)
        return current is not None and current.status is PayoutStatus.PAID

    if not await wait(paid):
        say("   the payout was not paid in time: something is wrong")
        return False
    say("   the provider paid it; its ledger lines:")
    for kind in (TransactionKind.PAYOUT_RESERVE, TransactionKind.PAYOUT_POST):
        async with store.unit_of_work() as uow:
            txn = await uow.get_transaction_by_reference(kind, payout.payout_id)
        if txn is None:
            say(f"   no {kind} transaction for {payout.payout_id}: something is wrong")
            return False
        say(f"   {txn.txn_id} ({txn.description})")
        for entry in txn.entries:
            side = "Dr" if entry.amount_minor > 0 else "Cr"
            money = format_amount(abs(entry.amount_minor), payout.currency)
            say(f"     {side} {entry.account:<34} {money:>8}")
    balances = {b.currency: b for b in await store.list_balances(order.seller_id)}
    left = balances[order.currency]
    say(
        f"   {order.seller_id} wallet now {format_amount(left.available_minor, order.currency)}"
        f" available, {format_amount(left.reserved_minor, order.currency)} reserved"
    )
    await trio.lowlevel.checkpoint()
    return True
