"""The engine `payengine reconcile FILE` runs a file through: the reconciler and the actors
its repairs go to, as `POST /v1/reconciliations` runs it inside `payengine serve`.

Why not `actors.engine.open_engine` whole: that engine also starts the outbox consumers (a
CLI process would take the running server's merchant notifications and drop them), the payout
scheduler and recovery (which would resume every unfinished aggregate beside the server's own).
A repair needs none of that: only the order actor (`QueryCapture`) and the refund actor
(`QueryRefund`, `QueryDispute`), with the PSP gateway they ask. So this opens an actor system
with those two kinds and the timers their polls use, and hands the reconciler a `tell` that
*asks*: each repair is carried out (or found unfinished within `REPAIR_TIMEOUT_S`) before the
command prints and exits. What a repair schedules for later (a poll) is left to the running
engine's own poll and recovery. A payout repair (`QueryPayout`) goes to the merchant actor of
the running engine: the CLI has no payout provider, so it says so and leaves it (the merchant
actor polls its submitted payouts).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from actors.context import Context, Doorbell
from actors.messages import ORDER, REFUND
from actors.order import OrderActor
from actors.refund import RefundActor
from actors.runtime import ActorSystem, AskTimeout
from actors.timers import Timers
from engine.gateway import Gateway
from engine.ids import Ids
from engine.limits import EngineConfig
from engine.ports import Clock
from engine.store.port import Store

log = logging.getLogger("payengine.reconcile")

#: How long the command waits for one repair (an actor asking the PSP and booking).
REPAIR_TIMEOUT_S = 30.0
#: The actor kinds a repair goes to here.
REPAIR_KINDS = (ORDER, REFUND)


@asynccontextmanager
async def open_repairs(
    store: Store,
    gateway: Gateway,
    clock: Clock,
    ids: Ids,
    config: EngineConfig,
    note: Callable[[str], None],
) -> AsyncIterator[Callable[[str, str, Any], Any]]:
    """A `tell(kind, key, message)` for the reconciler that carries the repair out (asks)."""
    async with trio.open_nursery() as nursery:
        system = ActorSystem(nursery, config)
        timers: Timers[None] = Timers()
        rng = random.SystemRandom()
        ctx = Context(store, gateway, clock, ids, rng, config, system, timers, Doorbell())
        system.register(ORDER, lambda key: OrderActor(ctx, str(key)))
        system.register(REFUND, lambda key: RefundActor(ctx, str(key)))
        await nursery.start(timers.run, nursery)

        async def repair(kind: str, key: str, message: Any) -> None:
            if kind not in REPAIR_KINDS:
                note(f"{type(message).__name__} for {kind} {key}: left to the running engine")
                return
            try:
                said = await system.ask(kind, key, message, timeout_s=REPAIR_TIMEOUT_S)
            except AskTimeout:
                note(f"{type(message).__name__} for {key}: unfinished after {REPAIR_TIMEOUT_S} s")
                return
            note(f"{type(message).__name__} for {key}: {said}")

        try:
            yield repair
        finally:
            nursery.cancel_scope.cancel()
