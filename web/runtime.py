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
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import attrs
import structlog
import trio
from quart import current_app

from actors.clock import TrioClock
from actors.engine import Engine, Notifier, open_engine
from engine.access import ApiKey
from engine.gateway import Gateway
from engine.ids import Ids
from engine.limits import EngineConfig
from engine.ports import Clock, Rng
from engine.store.port import Store
from web.liveness import Liveness
from web.metrics import Metrics
from web.ratelimit import TokenBuckets
from web.settings import WebSettings

log = structlog.get_logger("payengine.web")

#: The key under `app.extensions` holding the running `Runtime`.
EXTENSION = "payengine"


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


@attrs.define(eq=False)
class Runtime:
    engine: Engine
    store: Store
    clock: Clock
    ids: Ids
    settings: WebSettings
    metrics: Metrics
    limiter: TokenBuckets
    ready: bool = True
    #: key hash -> (looked up at, key or None); see web/auth.py.
    key_cache: OrderedDict[str, tuple[float, ApiKey | None]] = attrs.Factory(OrderedDict)


def current() -> Runtime:
    return cast(Runtime, current_app.extensions[EXTENSION])


async def _purge_idempotency(runtime: Runtime) -> None:
    """Forget idempotency records past the retention (kept at least 24 h; see settings)."""
    while True:
        await trio.sleep(runtime.settings.idempotency_purge_interval_s)
        cutoff_ms = runtime.clock.now_ms() - runtime.settings.idempotency_retention_ms
        purged = await runtime.store.purge_idempotency(cutoff_ms)
        if purged:
            log.info("idempotency_purged", records=purged)


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
            open_engine(
                store, gateway, clock, ids, rng, wiring.engine_config, notifier=notifier
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
            )
            nursery.start_soon(_purge_idempotency, runtime)
            try:
                yield runtime
            finally:
                runtime.ready = False
                nursery.cancel_scope.cancel()


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
