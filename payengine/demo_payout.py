"""`payengine demo`, step 9: the seller is paid out, with the ledger lines of each phase.

Apart from demo.py so that file keeps to the checkout and its refund. The payout provider is
the fake PSP's payouts API over real HTTP (payengine/demo_payout_http.py), paying after a
moment and saying so by a signed `payout.paid` webhook.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from actors.engine import Engine
from actors.service import Rejection
from engine.ledger import TransactionKind
from engine.money import format_amount
from engine.records import PaymentOrder
from engine.states import PayoutStatus
from engine.store.port import Store


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
    say("   sent to the PSP's POST /v1/payouts over HTTP, Idempotency-Key: the payout id")
    say("   (its payout id is the provider's idempotency key: a retry never pays twice)")

    async def paid() -> bool:
        current = await store.get_payout(payout.payout_id)
        return current is not None and current.status is PayoutStatus.PAID

    if not await wait(paid):
        say("   the payout was not paid in time: something is wrong")
        return False
    say("   the PSP paid it and said so by a signed payout.paid webhook; its ledger lines:")
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
