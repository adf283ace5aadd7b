"""What the app's lifespan hosts: the store, the gateway, the engine, and the API's helpers.

Why a `Wiring` of factories rather than ready objects: the engine's nursery must live in the
app's lifespan nursery (quart-trio's `app.nursery`), so everything with a lifetime (the store's
pool, the PSP client, the engine's actors) is opened inside the lifespan task by `host` and
closed when the server shuts down, within the engine's shutdown deadline. The same app then
runs under Hypercorn, the Quart test client, or a benchmark, with any store and any PSP.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import cast

import attrs
import structlog
import trio
from quart import current_app

from actors.clock import TrioClock
from actors.engine import Engine, Notifier, open_engine
from engine.access import ApiKey
from engine.errors import StoreUnavailable
from engine.gateway import Gateway
from engine.ids import Ids
from engine.leases import LeaseOptions
from engine.limits import EngineConfig
from engine.payout_gateway import PayoutGateway
from engine.ports import Clock, Rng
from engine.store.port import Store
from web.liveness import Liveness
from web.metrics import Metrics
from web.ratelimit import TokenBuckets
from web.settings import WebSettings

log = structlog.get_logger("payengine.web")

#: The key under `app.extensions` holding the running `Runtime`.
EXTENSION = "payengine"
#: Giving the lease up on shutdown is one small statement; past this it lapses by itself.
LEASE_END_TIMEOUT_S = 2.0


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@attrs.frozen
class Wiring:
    """How to open what the API needs; see the module docstring for why factories."""

    open_store: Callable[[], AbstractAsyncContextManager[Store]]
    open_gateway: Callable[[Clock], AbstractAsyncContextManager[Gateway]]
    engine_config: EngineConfig = attrs.Factory(EngineConfig)
    #: The wall-clock anchor (real time in production, a fixed epoch in tests).
    epoch_ms: Callable[[], int] = wall_clock_ms
    #: A seed makes ids reproducible (tests); None draws from the operating system.
    seed: int | None = None
    #: Builds the merchant notifier once the store and clock exist (create_app defaults it to
    #: signed webhook delivery, web/notifier.py).
    make_notifier: Callable[[Store, Clock], Notifier] | None = None
    #: Opens the payout provider (actors/merchant.py); None: this server makes no payouts
    #: (POST /v1/payouts answers 503 payouts-unavailable).
    open_payout_gateway: Callable[[Clock], AbstractAsyncContextManager[PayoutGateway]] | None = None
    #: One of several processes on one database (engine/leases.py); None: it drives everything.
    leases: LeaseOptions | None = None


@attrs.define(eq=False)
class Runtime:
    engine: Engine
    store: Store
    clock: Clock
    ids: Ids
    settings: WebSettings
    metrics: Metrics
    limiter: TokenBuckets
    #: This process's incarnation: the owner of its idempotency claims (web/idempotency.py).
    incarnation: str
    ready: bool = True
    #: (scope, key) of the idempotency claims this process's requests are running now; bounded
    #: by the requests in flight. A claim of ours not in it was left by a failed release.
    claims_in_flight: set[tuple[str, str]] = attrs.Factory(set)
    #: key hash -> (looked up at, key or None); see web/auth.py.
    key_cache: OrderedDict[str, tuple[float, ApiKey | None]] = attrs.Factory(OrderedDict)


def current() -> Runtime:
    return cast(Runtime, current_app.extensions[EXTENSION])


async def _purge_idempotency(runtime: Runtime) -> None:
    """Forget idempotency records past the retention (kept at least 24 h; see settings)."""
    while True:
        await trio.sleep(runtime.settings.idempotency_purge_interval_s)
        cutoff_ms = runtime.clock.now_ms() - runtime.settings.idempotency_retention_ms
        try:
            purged = await runtime.store.purge_idempotency(cutoff_ms)
        except StoreUnavailable as exc:  # an outage is weather: purge next time
            log.warning("idempotency_purge_skipped", error=str(exc))
            continue
        if purged:
            log.info("idempotency_purged", records=purged)


async def _renew_lease(runtime: Runtime) -> None:
    now_ms = runtime.clock.now_ms()
    lease_until_ms = now_ms + int(runtime.settings.process_lease_s * 1000)
    await runtime.store.renew_process_lease(runtime.incarnation, now_ms, lease_until_ms)


async def _hold_lease(runtime: Runtime) -> None:
    """Renew this process's lease every heartbeat. During an outage it may lapse: others may
    then take over our in-flight claims, which is safe (the engine dedups on checkout_id)."""
    while True:
        await trio.sleep(runtime.settings.process_heartbeat_interval_s)
        try:
            await _renew_lease(runtime)
        except StoreUnavailable as exc:
            log.warning("process_lease_not_renewed", error=str(exc))


async def _end_lease(runtime: Runtime) -> None:
    """Give the lease up on the way out, so our claims are free at once (best effort)."""
    # In an outage it cannot be given up: it lapses by itself.
    with trio.move_on_after(LEASE_END_TIMEOUT_S, shield=True), suppress(StoreUnavailable):
        await runtime.store.end_process_lease(runtime.incarnation)


@asynccontextmanager
async def _open_payout_gateway(wiring: Wiring, clock: Clock) -> AsyncIterator[PayoutGateway | None]:
    if wiring.open_payout_gateway is None:
        yield None
        return
    async with wiring.open_payout_gateway(clock) as gateway:
        yield gateway


@asynccontextmanager
async def open_runtime(
    wiring: Wiring, settings: WebSettings, metrics: Metrics
) -> AsyncIterator[Runtime]:
    """Open the store, the gateway and the engine, in that order; close them in reverse."""
    rng: Rng = random.Random(wiring.seed) if wiring.seed is not None else random.SystemRandom()
    async with wiring.open_store() as store:
        clock = TrioClock(wiring.epoch_ms())
        ids = Ids(clock, rng)
        notifier = None if wiring.make_notifier is None else wiring.make_notifier(store, clock)
        async with (
            wiring.open_gateway(clock) as gateway,
            _open_payout_gateway(wiring, clock) as payout_gateway,
            open_engine(
                store,
                gateway,
                clock,
                ids,
                rng,
                wiring.engine_config,
                notifier=notifier,
                payout_gateway=payout_gateway,
                leases=wiring.leases,
            ) as engine,
            trio.open_nursery() as nursery,
        ):
            runtime = Runtime(
                engine=engine,
                store=store,
                clock=clock,
                ids=ids,
                settings=settings,
                metrics=metrics,
                limiter=TokenBuckets(
                    settings.rate_limit_per_s,
                    settings.rate_limit_burst_max,
                    settings.rate_limit_keys_max,
                ),
                incarnation=ids.new("inc"),
            )
            await _renew_lease(runtime)
            nursery.start_soon(_purge_idempotency, runtime)
            nursery.start_soon(_hold_lease, runtime)
            try:
                yield runtime
            finally:
                runtime.ready = False
                nursery.cancel_scope.cancel()
                await _end_lease(runtime)


#: How many of an exception group's errors the liveness reason names.
REASON_ERRORS_MAX = 3


def _describe(exc: BaseException) -> str:
    """The errors inside `exc` (nurseries wrap them in groups), named and joined."""
    leaves: list[BaseException] = []
    pending = [exc]
    while pending:
        one = pending.pop(0)
        if isinstance(one, BaseExceptionGroup):
            pending.extend(one.exceptions)
        else:
            leaves.append(one)
    return "; ".join(f"{type(e).__name__}: {e}" for e in leaves[:REASON_ERRORS_MAX])


async def host(
    wiring: Wiring,
    settings: WebSettings,
    metrics: Metrics,
    stop: trio.Event,
    liveness: Liveness,
    *,
    task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The lifespan task: open the runtime, report it started, hold it until `stop`.

    An engine that ends with an error after it started is recorded in `liveness` (the
    process must be restarted: web/liveness.py) instead of raising into quart-trio's nursery,
    where it went unnoticed; an error while starting still propagates (the server never
    starts). Cancellation is never caught.
    """
    started: Runtime | None = None
    try:
        async with open_runtime(wiring, settings, metrics) as runtime:
            started = runtime
            task_status.started(runtime)
            await stop.wait()
    except Exception as exc:
        if started is None:
            raise
        started.ready = False
        reason = "engine gone: " + _describe(exc)
        log.critical("engine_gone", reason=reason, exc_info=exc)
        liveness.engine_gone(reason)
