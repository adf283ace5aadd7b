"""The engine's side of several processes on one database: the lease manager's task, the
placement of actors, recovery scoped to the partitions this process gains, and the sweep.

Why a sweep: any process accepts a new checkout (the API's unit of work records it, whoever owns
its partition), but only the owner registers it with the PSP. The owner finds the checkouts
created elsewhere in its partitions every `sweep_s` (unfinished payments still CREATED that no
actor of its own is driving) and hands them to their checkout actor, as recovery does.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import trio

from actors.context import Context
from actors.lease_manager import LeaseManager
from actors.messages import CHECKOUT, REFUND, QueryDispute, QueryRefund, ResumeCheckout
from actors.placement import Placement
from actors.store_retry import when_store_answers
from engine.errors import StoreUnavailable
from engine.leases import LeaseOptions, LeaseStore
from engine.records import Payment
from engine.states import PaymentStatus
from engine.store.memory_leases import MemoryLeases
from engine.store.port import Store

log = logging.getLogger("payengine.leases")


def lease_store(store: Store, ctx: Context) -> LeaseStore:
    if store.name == "postgres":
        from engine.store.pg_leases import PgLeases

        return PgLeases(store)
    return MemoryLeases(ctx.clock)


class Leases:
    """The lease manager and the placement of one engine, and its scoped recovery."""

    def __init__(self, ctx: Context, options: LeaseOptions) -> None:
        self.ctx = ctx
        self.me = options.incarnation or ctx.ids.new("inc")
        self.manager = LeaseManager(
            lease_store(ctx.store, ctx), self.me, options.url, options.limits, self._gained
        )
        self.placement = Placement(self.manager, ctx.store)
        if ctx.store.name == "postgres":  # outbox deliveries claimed (SKIP LOCKED), not read
            from engine.store.pg_leases import DELIVERY_CLAIM_MS

            cast(Any, ctx.store).delivery_claim_ms = DELIVERY_CLAIM_MS
        self.recovered = 0
        self.first_recovery = trio.Event()
        #: Recovery beyond the partitions' aggregates (the payouts': actors/payout_service.py),
        #: run with each recovery; what it hands to actors of other partitions they refuse.
        self.extra_recovery: Callable[[], Awaitable[int]] | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.manager.run)
            if not self.first_recovery.is_set() and not self.manager.held():
                self.first_recovery.set()  # nothing to recover until a partition comes
            nursery.start_soon(self._sweep)
            task_status.started()

    async def _gained(self, partitions: frozenset[int]) -> None:
        assert self._nursery is not None, "the manager runs in the leases' nursery"
        self._nursery.start_soon(self._recover, partitions)

    async def _recover(self, partitions: frozenset[int]) -> None:
        try:
            await self.recover(partitions)
        finally:
            self.first_recovery.set()

    async def _mine(self, partitions: frozenset[int], kind: str, key: str) -> bool:
        return await self.placement.partition(kind, key) in partitions

    async def recover(self, partitions: frozenset[int]) -> int:
        """Hand the unfinished payments, refunds and disputes of `partitions` to their actors
        (as the engine does for everything at start with one process)."""
        ctx, count = self.ctx, 0
        listers: tuple[tuple[Callable[..., Awaitable[Sequence[Any]]], str], ...] = (
            (ctx.store.list_unfinished_payments, "payment_id"),
            (ctx.store.list_unfinished_refunds, "refund_id"),
            (ctx.store.list_unfinished_disputes, "dispute_id"),
        )
        for lister, what in listers:
            after: str | None = None
            while True:
                page = await when_store_answers(
                    ctx.config,
                    "lease recovery",
                    functools.partial(lister, ctx.config.recovery_batch_size_max, after),
                )
                if not page:
                    break
                for item in page:
                    count += await self._resume(partitions, item)
                after = getattr(page[-1], what)
        if self.extra_recovery is not None:
            count += await self.extra_recovery()
        self.recovered += count
        log.info("recovery of %d partitions handed %d aggregates over", len(partitions), count)
        return count

    async def _resume(self, partitions: frozenset[int], item: Any) -> int:
        system = self.ctx.system
        if isinstance(item, Payment):
            if not await self._mine(partitions, CHECKOUT, item.payment_id):
                return 0
            await system.tell(CHECKOUT, item.payment_id, ResumeCheckout())
            return 1
        order_id = str(item.order_id)
        if not await self._mine(partitions, REFUND, order_id):
            return 0
        if hasattr(item, "refund_id"):
            await system.tell(REFUND, order_id, QueryRefund(str(item.refund_id)))
        else:
            await system.tell(REFUND, order_id, QueryDispute(str(item.dispute_id)))
        return 1

    async def _sweep(self) -> None:
        while True:
            await trio.sleep(self.manager.limits.sweep_s)
            try:
                await self.sweep()
            except StoreUnavailable as exc:  # weather: the next sweep
                log.warning("lease sweep skipped: %r", exc)

    async def sweep(self) -> int:
        """Hand the CREATED checkouts of our partitions that nobody here drives to their actor."""
        ctx, count = self.ctx, 0
        after: str | None = None
        while True:
            limit = ctx.config.recovery_batch_size_max
            page = await ctx.store.list_unfinished_payments(limit, after)
            if not page:
                return count
            held = self.manager.held()
            for payment in page:
                if (
                    payment.status is PaymentStatus.CREATED
                    and not ctx.system.is_live(CHECKOUT, payment.payment_id)
                    and self.manager.partition(payment.payment_id) in held
                ):
                    await ctx.system.tell(CHECKOUT, payment.payment_id, ResumeCheckout())
                    count += 1
            after = page[-1].payment_id
