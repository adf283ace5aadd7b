"""A small world for engine tests: memory store (or PostgreSQL), fake PSP, seeded ids."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from actors.clock import TrioClock
from actors.engine import Engine, open_engine
from actors.outbox import Subscriber
from actors.service import CreateCheckout, OrderLine, PaymentView
from engine.gateway import PspNotification
from engine.ids import Ids
from engine.ledger import merchant_payable
from engine.limits import EngineConfig
from engine.states import OrderStatus, PaymentStatus
from engine.store.memory import MemoryStore
from engine.store.port import Store
from simulator.fake_psp import FakePsp

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@attrs.define(eq=False)
class World:
    store: Store
    psp: FakePsp
    clock: TrioClock
    ids: Ids
    rng: random.Random
    config: EngineConfig
    #: When set, webhooks are not delivered automatically; tests deliver them by hand.
    hold_webhooks: bool = False
    delivered: list[tuple[PspNotification, str]] = attrs.Factory(list)
    engine: Engine | None = None
    faults: frozenset[str] = frozenset()
    #: A payout provider (simulator/payout_provider.py) for tests of payouts; None: no payouts.
    payout_provider: Any = None

    @asynccontextmanager
    async def running(self, extra_subscribers: Sequence[Subscriber] = ()) -> AsyncIterator[Engine]:
        async with (
            open_engine(
                self.store,
                self.psp,
                self.clock,
                self.ids,
                self.rng,
                self.config,
                faults=self.faults,
                extra_subscribers=tuple(extra_subscribers),
                payout_gateway=self.payout_provider,
            ) as engine,
            trio.open_nursery() as nursery,
        ):
            self.engine = engine
            nursery.start_soon(self._pump_webhooks, engine)
            try:
                yield engine
            finally:
                nursery.cancel_scope.cancel()
                self.engine = None

    async def _pump_webhooks(self, engine: Engine) -> None:
        while True:
            if self.hold_webhooks:
                await trio.sleep(5)
                continue
            event = await self.psp.webhook_receive.receive()
            outcome = None
            try:
                outcome = await self.deliver(event, engine)
            except Exception:  # the endpoint answered 5xx: the PSP retries
                outcome = "retry_later"
            finally:
                # Like a real PSP: an event not acknowledged (a crash mid-request, or a
                # "retry later" answer) is delivered again.
                if outcome is None or outcome == "retry_later":
                    self.psp.webhook_send.send_nowait(event)
            if outcome == "retry_later":
                await trio.sleep(1)

    async def deliver(self, event: PspNotification, engine: Engine | None = None) -> str:
        engine = engine or self.engine
        assert engine is not None
        outcome = await engine.service.handle_psp_event(event)
        self.delivered.append((event, outcome))
        return outcome

    def held_events(self) -> list[PspNotification]:
        events = []
        while True:
            try:
                events.append(self.psp.webhook_receive.receive_nowait())
            except trio.WouldBlock:
                return events


def make_world(
    store: Store | None = None,
    seed: int = 1,
    config: EngineConfig | None = None,
    faults: frozenset[str] = frozenset(),
) -> World:
    clock = TrioClock(EPOCH_MS)
    rng = random.Random(seed)
    return World(
        store=store or MemoryStore(checkpoint=trio.lowlevel.checkpoint),
        psp=FakePsp(clock),
        clock=clock,
        ids=Ids(clock, random.Random(seed + 1)),
        rng=rng,
        # Nothing else writes this store, so the doorbell is enough: poll rarely.
        config=config or EngineConfig(outbox_poll_interval_s=30.0),
        faults=faults,
    )


def checkout(
    checkout_id: str, amounts: dict[str, int], currency: str = "USD", buyer: str = "buyer-1"
) -> CreateCheckout:
    return CreateCheckout(
        checkout_id=checkout_id,
        buyer_id=buyer,
        currency=currency,
        orders=tuple(OrderLine(s, a) for s, a in amounts.items()),
        return_url="https://shop.example/return",
    )


async def wait_until(predicate: Callable[[], object], timeout_s: float = 3600) -> None:
    with trio.fail_after(timeout_s):
        while not await _call(predicate):
            await trio.sleep(0.05)


async def _call(predicate: Callable[[], object]) -> bool:
    value = predicate()
    if hasattr(value, "__await__"):
        value = await value  # type: ignore[misc]
    return bool(value)


async def payment_status(world: World, payment_id: str) -> PaymentStatus:
    payment = await world.store.get_payment(payment_id)
    assert payment is not None
    return payment.status


async def completed(world: World, payment_id: str) -> bool:
    """The payment exists and is COMPLETED (a predicate for `wait_until`)."""
    payment = await world.store.get_payment(payment_id)
    return payment is not None and payment.status is PaymentStatus.COMPLETED


async def assert_books_balanced(world: World) -> None:
    """Ledger balances per currency, wallet = ledger, PSP captured = ledger captured."""
    trial = await world.store.trial_balance()
    per_currency: dict[str, int] = {}
    for (_, currency), total in trial.items():
        per_currency[currency] = per_currency.get(currency, 0) + total
    assert all(v == 0 for v in per_currency.values()), per_currency
    for balance in await world.store.all_balances():
        assert balance.available_minor == -trial.get(
            (merchant_payable(balance.merchant_id), balance.currency), 0
        )
    psp_captured = world.psp.captured_total()
    ledger_captured = {c: v for (a, c), v in trial.items() if a == "psp_clearing" and v}
    assert dict(psp_captured) == ledger_captured


async def paid_checkout(world: World, engine: Engine, command: CreateCheckout) -> PaymentView:
    view = await engine.service.create_checkout(command)
    assert isinstance(view, PaymentView), view
    assert view.payment.psp_session_id is not None
    world.psp.buyer_pays(view.payment.psp_session_id)
    return view


async def orders_of(world: World, payment_id: str) -> list[OrderStatus]:
    return [o.status for o in await world.store.get_orders(payment_id)]
