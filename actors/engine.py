"""`open_engine`: the whole engine (pay-in, refunds) in one nursery, resumed on start.

Everything long-lived (the actor system, the timer heap, one consumer per outbox subscriber,
recovery) is a task of one nursery, so leaving the context cancels all of it within
`shutdown_timeout_s`; an in-flight unit of work is rolled back, exactly like a crash. Reopening
on the same store resumes every unfinished payment and refund: recovery pages through the
non-terminal ones and hands each to its actor, which takes it from wherever it stopped.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import cast

import attrs
import trio

from actors.checkout import CheckoutActor
from actors.context import Context, Doorbell
from actors.dispute import DISPUTE_ALERT, DISPUTE_TOPICS
from actors.engine_leases import Leases
from actors.merchant import PAYOUT_TOPICS, MerchantActor
from actors.messages import CHECKOUT, ORDER, REFUND, QueryDispute, QueryRefund, ResumeCheckout
from actors.order import OrderActor
from actors.outbox import OutboxConsumer, Subscriber
from actors.payout_messages import MERCHANT
from actors.payout_service import PayoutService
from actors.placement import FencedCalls
from actors.refund import REFUND_TOPICS, RefundActor
from actors.runtime import ActorFactory, ActorSystem
from actors.service import PaymentService
from actors.store_retry import when_store_answers
from actors.timers import Timers
from engine.gateway import Gateway
from engine.ids import Ids
from engine.leases import LeaseOptions
from engine.limits import EngineConfig
from engine.payout_gateway import PayoutGateway
from engine.ports import Clock, Rng
from engine.records import Delivery, OutboxMessage
from engine.store.port import Store

log = logging.getLogger("payengine.engine")

#: How many recent notifications the built-in recording notifier keeps.
NOTIFICATIONS_KEPT_MAX = 1000

PAYMENT_TOPICS = (
    "payment.created",
    "payment.rejected_by_risk",
    "payment.awaiting_payment",
    "payment.authorized",
    "payment.completed",
    "payment.failed",
    "payment.expired",
    "payment.authorized_after_close",
)
ORDER_TOPICS = ("order.succeeded", "order.failed", "order.conflicting_psp_event")
MERCHANT_TOPICS: tuple[str, ...] = (
    PAYMENT_TOPICS + ORDER_TOPICS + (*REFUND_TOPICS, "refund.conflicting_psp_event")
)
# Disputes (issue 11, the chargeback part; actors/dispute.py).
MERCHANT_TOPICS += (*DISPUTE_TOPICS, DISPUTE_ALERT)
# --- payouts (actors/merchant.py): merchants hear of their payouts too ----------------------
MERCHANT_TOPICS = (*MERCHANT_TOPICS, *PAYOUT_TOPICS)

Notifier = Callable[[OutboxMessage], Awaitable[None]]


class RecordingNotifier:
    """The default merchant notifier: keeps the latest notifications in memory (bounded).

    The HTTP layer replaces it with signed webhook delivery to each merchant's URL.
    """

    def __init__(self) -> None:
        self.sent: deque[OutboxMessage] = deque(maxlen=NOTIFICATIONS_KEPT_MAX)

    async def __call__(self, message: OutboxMessage) -> None:
        self.sent.append(message)


@attrs.define
class Analytics:
    """A minimal analytics subscriber: counts events and captured money per currency."""

    events: Counter[str] = attrs.Factory(Counter)
    captured_minor: Counter[str] = attrs.Factory(Counter)

    async def __call__(self, delivery: Delivery) -> None:
        message = delivery.message
        self.events[message.topic] += 1
        if message.topic == "order.succeeded":
            self.captured_minor[str(message.payload["currency"])] += int(
                message.payload["amount_minor"]
            )


class Engine:
    def __init__(self, ctx: Context, consumers: list[OutboxConsumer], analytics: Analytics) -> None:
        self.ctx = ctx
        self.service = PaymentService(ctx)
        self.payouts = PayoutService(ctx)
        self.consumers = {c.subscriber.name: c for c in consumers}
        self.analytics = analytics
        self.recovered = 0
        self.recovery_done = trio.Event()
        #: Several processes on one database (engine/leases.py); None: this one drives all.
        self.leases: Leases | None = None

    @property
    def system(self) -> ActorSystem:
        return self.ctx.system

    async def recover(self) -> None:
        """Hand every unfinished payment to its checkout actor and every unfinished refund to
        its order's refund actor (idempotent); an unavailable store is waited out
        (actors/store_retry.py), so an outage at start delays recovery instead of ending the
        engine."""
        after: str | None = None
        while True:
            page = await when_store_answers(
                self.ctx.config,
                "recovery",
                functools.partial(
                    self.ctx.store.list_unfinished_payments,
                    self.ctx.config.recovery_batch_size_max,
                    after,
                ),
            )
            if not page:
                break
            for payment in page:
                await self.ctx.system.tell(CHECKOUT, payment.payment_id, ResumeCheckout())
                self.recovered += 1
            after = page[-1].payment_id
        await self._recover_refunds()
        await self._recover_disputes()
        if self.ctx.payout_gateway is not None:
            self.recovered += await self.payouts.recover()
        self.recovery_done.set()
        log.info("recovery handed %d unfinished aggregates to their actors", self.recovered)

    async def _recover_refunds(self) -> None:
        """A REQUESTED refund may or may not have reached the PSP, a SUBMITTED one awaits its
        word: either way the refund actor asks the PSP by key first (and calls on NOT_FOUND)."""
        after: str | None = None
        while True:
            page = await when_store_answers(
                self.ctx.config,
                "refund recovery",
                functools.partial(
                    self.ctx.store.list_unfinished_refunds,
                    self.ctx.config.recovery_batch_size_max,
                    after,
                ),
            )
            if not page:
                break
            for refund in page:
                await self.ctx.system.tell(REFUND, refund.order_id, QueryRefund(refund.refund_id))
                self.recovered += 1
            after = page[-1].refund_id

    async def _recover_disputes(self) -> None:
        """An OPEN dispute waits for the PSP's close: its order's refund actor asks the PSP now
        and every `dispute_poll_interval_s` after (its poll timers died with the process)."""
        after: str | None = None
        while True:
            page = await when_store_answers(
                self.ctx.config,
                "dispute recovery",
                functools.partial(
                    self.ctx.store.list_unfinished_disputes,
                    self.ctx.config.recovery_batch_size_max,
                    after,
                ),
            )
            if not page:
                break
            for dispute in page:
                await self.ctx.system.tell(
                    REFUND, dispute.order_id, QueryDispute(dispute.dispute_id)
                )
                self.recovered += 1
            after = page[-1].dispute_id

    def health(self) -> list[str]:
        return self.ctx.system.health()


async def _set_after(first: trio.Event, then: trio.Event) -> None:
    await first.wait()
    then.set()


@asynccontextmanager
async def open_engine(
    store: Store,
    gateway: Gateway,
    clock: Clock,
    ids: Ids,
    rng: Rng,
    config: EngineConfig | None = None,
    *,
    notifier: Notifier | None = None,
    notifier_inline: bool = False,
    extra_subscribers: tuple[Subscriber, ...] = (),
    faults: frozenset[str] = frozenset(),
    recover: bool = True,
    payout_gateway: PayoutGateway | None = None,
    leases: LeaseOptions | None = None,
) -> AsyncIterator[Engine]:
    config = (config or EngineConfig()).check()
    notify = notifier or RecordingNotifier()
    async with trio.open_nursery() as nursery:
        system = ActorSystem(nursery, config)
        timers: Timers[None] = Timers()
        ctx = Context(store, gateway, clock, ids, rng, config, system, timers, Doorbell(), faults)
        # Several processes on one database: each actor is driven by its partition's owner.
        placed = None if leases is None else Leases(ctx, leases)

        def register(kind: str, factory: ActorFactory) -> None:
            wrapped = factory if placed is None else placed.placement.wrap(kind, factory)
            system.register(kind, wrapped)

        register(CHECKOUT, lambda key: CheckoutActor(ctx, str(key)))
        register(ORDER, lambda key: OrderActor(ctx, str(key)))
        register(REFUND, lambda key: RefundActor(ctx, str(key)))
        ctx.payout_gateway = payout_gateway
        register(MERCHANT, lambda key: MerchantActor(ctx, str(key)))
        if placed is not None:  # no PSP call for an entity whose lease may have moved
            ctx.gateway = cast(Gateway, FencedCalls(gateway, placed.manager))
            if payout_gateway is not None:
                fenced = FencedCalls(payout_gateway, placed.manager)
                ctx.payout_gateway = cast(PayoutGateway, fenced)
        await nursery.start(timers.run, nursery)

        async def notify_delivery(delivery: Delivery) -> None:
            if "notification_dropped" in faults and delivery.message.topic == "payment.expired":
                return  # planted bug, test-only seam: acknowledged, never sent
            await notify(delivery.message)

        analytics = Analytics()
        subscribers = [
            Subscriber(
                "notifications",
                MERCHANT_TOPICS,
                notify_delivery,
                attempts_max=config.notification_attempts_max,
                delay_s_base=config.notification_delay_s_base,
                delay_s_max=config.notification_delay_s_max,
                # The recording notifier only appends to a deque; so may a caller's
                # (`notifier_inline`): a handler that never blocks needs no task of its own.
                inline=notifier is None or notifier_inline,
            ),
            Subscriber("analytics", MERCHANT_TOPICS, analytics, inline=True),
            *extra_subscribers,
        ]
        consumers = [OutboxConsumer(ctx, s) for s in subscribers]
        for consumer in consumers:
            await nursery.start(consumer.run)
        engine = Engine(ctx, consumers, analytics)
        if payout_gateway is not None:
            await nursery.start(engine.payouts.run_scheduler)
        engine.leases = placed
        if placed is not None:  # recovery of the partitions this process gains, as it gains them
            if payout_gateway is not None:
                placed.extra_recovery = engine.payouts.recover
            await nursery.start(placed.run)
            nursery.start_soon(_set_after, placed.first_recovery, engine.recovery_done)
        elif recover:
            nursery.start_soon(engine.recover)
        else:
            engine.recovery_done.set()
        try:
            yield engine
        finally:
            nursery.cancel_scope.cancel()
