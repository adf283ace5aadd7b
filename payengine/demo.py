"""`payengine demo`: one marketplace checkout, narrated, on the real engine and a real database.

For people learning how payment systems work: it starts the embedded PostgreSQL (or uses
DATABASE_URL), applies the migrations, runs the engine with the in-process fake PSP, and walks
one buyer's cart with orders for three sellers from checkout to booked money, printing every
state change, the outbox events that other services hear, the double-entry ledger lines, each
seller's wallet and the trial balance. Then it shows a duplicate webhook doing nothing, a
partial refund with its ledger lines, and a payout of the seller's wallet with its own, sent
over real HTTP to the fake PSP's payouts API (payengine/demo_payout_http.py).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

import trio

from actors.clock import TrioClock
from actors.engine import Engine, open_engine
from actors.outbox import Subscriber
from actors.service import CreateCheckout, OrderLine, PaymentView
from engine.ids import Ids
from engine.ledger import TransactionKind, merchant_payable
from engine.money import format_amount
from engine.records import Delivery, PaymentOrder, Refund
from engine.states import TRANSITIONS, OrderStatus, PaymentStatus, RefundStatus
from engine.store.port import Store
from payengine.demo_payout import payout_step
from payengine.demo_payout_http import http_payouts
from simulator.fake_psp import FakePsp, process_namespace

#: How long the demo waits for the flow before it gives up and says so.
DEMO_TIMEOUT_S = 60.0

SELLERS = (("ceramics-studio", 4_500), ("linen-works", 2_999), ("tea-house", 1_250))


class Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, number: int, title: str, why: str) -> None:
        self()
        self(f"── {number}. {title}")
        self(f"   {why}")


def _table(machine: type, say: Callable[[str], None]) -> None:
    for source, targets in TRANSITIONS[machine].items():
        arrow = ", ".join(t.value for t in sorted(targets, key=lambda t: t.value)) or "(final)"
        say(f"     {source.value:<18} -> {arrow}")


async def _wait(predicate: Callable[[], object]) -> bool:
    """True when `predicate` came true within DEMO_TIMEOUT_S."""
    with trio.move_on_after(DEMO_TIMEOUT_S):
        while not await predicate():  # type: ignore[misc]  # noqa: ASYNC110
            await trio.sleep(0.01)
        return True
    return False


async def run_demo(
    store: Store,
    where: str,
    out: TextIO | None = None,
    keys: Mapping[str, str] | None = None,
    api_url: str | None = None,
) -> int:
    """The narrated checkout. `keys` (scope -> key text) are printed first so the reader can
    call the HTTP API afterwards; `api_url` says the demo will go on serving there."""
    # sys.stdout when called, not when imported (a test's captured stdout may be closed since).
    say = Narrator(out or sys.stdout)
    clock = TrioClock(int(time.time() * 1000))
    psp = FakePsp(clock, id_namespace=process_namespace(clock.now_ms()))
    heard: list[str] = []

    async def teach(delivery: Delivery) -> None:
        heard.append(delivery.message.topic)
        say(f"     [outbox → teaching subscriber] {delivery.message.topic}")

    say("payengine demo — one checkout, three sellers, from the buyer's click to booked money")
    say(f"   database: {where}")
    say("   Amounts are integers of minor units; on the wire they are decimal strings.")
    if keys:
        _print_keys(keys, say)
    async with (
        http_payouts() as payouts,
        open_engine(
            store,
            psp,
            clock,
            Ids(clock, random.SystemRandom()),
            random.Random(),
            extra_subscribers=(
                Subscriber(
                    "teaching",
                    ("payment.authorized", "payment.completed", "order.succeeded"),
                    teach,
                ),
            ),
            payout_gateway=payouts.gateway,
        ) as engine,
        trio.open_nursery() as nursery,
    ):
        payouts.engine = engine
        nursery.start_soon(_pump_webhooks, psp, engine)
        code = await _walk(engine, psp, store, say)
        nursery.cancel_scope.cancel()
    if keys and code == 0:
        _print_try_it(keys, api_url, say)
    return code


KEY_USES = {
    "storefront": "creates and reads payments (POST/GET /v1/payments)",
    "admin": "reads the ledger, balances and dead letters",
}


def _print_keys(keys: Mapping[str, str], say: Narrator) -> None:
    say()
    say("   API keys for this database (shown once: payengine stores only their hashes):")
    for scope, text in keys.items():
        say(f"     {scope:<10} {text}")
        say(f"     {'':<10} {KEY_USES.get(scope, scope)}")


def _print_try_it(keys: Mapping[str, str], api_url: str | None, say: Narrator) -> None:
    url = api_url or "http://127.0.0.1:8000"
    say()
    if api_url is None:
        say("Try the HTTP API with these keys: `payengine serve` (same database), then:")
    else:
        say(f"The API is starting on {api_url} with these keys (Ctrl-C stops it). Try:")
    storefront, admin = keys.get("storefront", "KEY"), keys.get("admin", "KEY")
    body = (
        '{"checkout_id":"try-1","buyer":"buyer-1","currency":"EUR",'
        '"orders":[{"seller_id":"s-1","amount":"12.50"}],"return_url":"https://shop.example/ok"}'
    )
    say(f"   curl -s {url}/v1/payments -H 'Authorization: Bearer {storefront}' \\")
    say(f"        -H 'Idempotency-Key: try-1' -H 'Content-Type: application/json' -d '{body}'")
    say(f"   curl -s {url}/v1/ledger/trial-balance -H 'Authorization: Bearer {admin}'")
    say(f"   open {url}/docs for every endpoint")


async def _pump_webhooks(psp: FakePsp, engine: Engine) -> None:
    async for event in psp.webhook_receive:
        await engine.service.handle_psp_event(event)


async def _walk(engine: Engine, psp: FakePsp, store: Store, say: Narrator) -> int:
    say.step(1, "The state machines", "Every status change is checked against these tables.")
    say("   payment (the checkout):")
    _table(PaymentStatus, say)
    say("   payment order (one per seller):")
    _table(OrderStatus, say)

    checkout_id = f"demo-{int(time.time() * 1000)}"
    command = CreateCheckout(
        checkout_id=checkout_id,
        buyer_id="buyer-ada",
        currency="USD",
        orders=tuple(OrderLine(seller, amount) for seller, amount in SELLERS),
        return_url="https://shop.example/thanks",
    )
    say.step(2, "POST /v1/payments", "The buyer clicks 'pay'. One checkout, one order per seller.")
    for line in command.orders:
        say(f"     order for {line.seller_id:<16} {format_amount(line.amount_minor, 'USD'):>8} USD")
    view = await engine.service.create_checkout(command)
    assert isinstance(view, PaymentView)
    payment = view.payment
    say(f"   payment {payment.payment_id} is {payment.status.value}")
    say(f"   the PSP's hosted page: {payment.hosted_url}")
    say("   (card data is typed there, never here: we only ever hold the PSP's session id)")

    say.step(3, "The same request again", "A double click: same checkout id, same cart.")
    again = await engine.service.create_checkout(command)
    assert isinstance(again, PaymentView)
    say(f"   -> the same payment {again.payment.payment_id}, created={again.created}")

    say.step(
        4,
        "The buyer pays on the PSP's page",
        "We learn it from a signed webhook, not from the browser.",
    )
    assert payment.psp_session_id is not None
    psp.buyer_pays(payment.psp_session_id)

    async def completed() -> bool:
        current = await store.get_payment(payment.payment_id)
        return current is not None and current.status is PaymentStatus.COMPLETED

    if not await _wait(completed):
        say(f"   the payment did not complete within {DEMO_TIMEOUT_S:.0f} s: something is wrong")
        return 1
    orders = await store.get_orders(payment.payment_id)
    say("   each order was captured separately, its order id as the PSP idempotency key:")
    for order in orders:
        say(
            f"     {order.order_id} {order.seller_id:<16} {order.status.value}, "
            f"booked={order.booked}, PSP calls={psp.capture_calls[order.order_id]}"
        )

    say.step(5, "The ledger", "Double entry: each transaction's debits (+) equal its credits (-).")
    for order in orders:
        async with store.unit_of_work() as uow:
            txn = await uow.get_transaction_by_reference("capture", order.order_id)
        assert txn is not None
        say(f"   {txn.txn_id} ({txn.description})")
        for entry in txn.entries:
            side = "Dr" if entry.amount_minor > 0 else "Cr"
            amount = format_amount(abs(entry.amount_minor), "USD")
            say(f"     {side} {entry.account:<34} {amount:>8}")

    say.step(
        6, "Wallets and the trial balance", "The wallet is kept in the same commit as the ledger."
    )
    trial = await store.trial_balance()
    for seller, _ in SELLERS:
        balances = {b.currency: b for b in await store.list_balances(seller)}
        ledger = -trial.get((merchant_payable(seller), "USD"), 0)
        say(
            f"     {seller:<16} wallet {format_amount(balances['USD'].available_minor, 'USD'):>8}"
            f"  ledger {format_amount(ledger, 'USD'):>8}"
        )
    total = sum(v for (_, c), v in trial.items() if c == "USD")
    say("   (balances include earlier demo runs on this database)")
    say(f"   sum of every entry in the ledger: {format_amount(total, 'USD')} (always zero)")

    say.step(7, "A duplicate webhook", "PSPs deliver at least once; we record each event id once.")
    outcome = await engine.service.handle_psp_event(psp.emitted[0])
    say(f"   redelivered {psp.emitted[0].event_id}: {outcome}; nothing changed")

    refunded = await _partial_refund(engine, store, orders[0], say)
    paid = refunded and await payout_step(engine, store, orders[0], say, say.step, _wait)

    ok = (
        total == 0
        and refunded
        and paid
        and all(o.status is OrderStatus.SUCCESS and o.booked for o in orders)
    )
    say()
    say(
        "Done: payment COMPLETED, every order captured once and booked once, a partial refund"
        " paid back exactly, the seller paid out, ledger balanced."
        if ok
        else "Something is wrong: see above."
    )
    return 0 if ok else 1


async def _partial_refund(engine: Engine, store: Store, order: PaymentOrder, say: Narrator) -> bool:
    """Step 8: the seller refunds part of one order; the money goes back by the same rules."""
    say.step(
        8,
        "A partial refund",
        "POST /v1/refunds: the seller gives back its share, we give back our commission.",
    )
    amount_minor = order.amount_minor // 3
    refund = await engine.service.create_refund(
        order.order_id, amount_minor, "demo: one item returned", currency=order.currency
    )
    if not isinstance(refund, Refund):
        say(f"   the refund was refused: {refund}")
        return False
    say(
        f"   refund {refund.refund_id} of {format_amount(amount_minor, order.currency)} "
        f"{order.currency} from {order.order_id} is {refund.status.value}"
    )
    say("   (its refund id is the PSP idempotency key: a retry can never refund twice)")

    async def settled() -> bool:
        current = await store.get_refund(refund.refund_id)
        return current is not None and current.status is RefundStatus.SUCCEEDED

    if not await _wait(settled):
        say(f"   the refund did not succeed within {DEMO_TIMEOUT_S:.0f} s: something is wrong")
        return False
    say("   the PSP paid it; its ledger lines:")
    for kind in (TransactionKind.REFUND, TransactionKind.REFUND_SETTLED):
        async with store.unit_of_work() as uow:
            txn = await uow.get_transaction_by_reference(kind, refund.refund_id)
        if txn is None:
            say(f"   no {kind} transaction for {refund.refund_id}: something is wrong")
            return False
        say(f"   {txn.txn_id} ({txn.description})")
        for entry in txn.entries:
            side = "Dr" if entry.amount_minor > 0 else "Cr"
            amount = format_amount(abs(entry.amount_minor), order.currency)
            say(f"     {side} {entry.account:<34} {amount:>8}")
    balances = {b.currency: b for b in await store.list_balances(order.seller_id)}
    wallet = format_amount(balances[order.currency].available_minor, order.currency)
    say(f"   {order.seller_id} wallet now {wallet} {order.currency}")
    return True
