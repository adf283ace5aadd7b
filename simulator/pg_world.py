"""The simulated world against PostgreSQL, in real time sped up: the slower, non-deterministic tier.

The same `SimWorld` (traffic, fake PSP, webhooks, fault plan, crashes, oracle) runs on a trio
`MockClock(rate=R)` *without* autojump: virtual time runs R times faster than wall time, so every
engine timeout, PSP latency, webhook delay and crash interval is scaled by the same factor, while
the database answers in real time. An autojump clock cannot be used (it would jump time while
PostgreSQL is answering, and the postgres store refuses it). trio's deterministic scheduling is
left off: real I/O decides the interleaving, so a seed does not promise a trace hash here.

What differs from the memory tier (the report lists it, see `TIER_NOTES`):
- the store's own time limits (connect, acquire, commit, shutdown) are multiplied by R, since
  they run on the scaled clock but bound real database work;
- a crash is an in-process engine restart at a store crash point (see simulator/pg_store.py);
  PostgreSQL rolls back the cancelled unit;
- "wallet = ledger at every commit" is checked at every oracle tick (and by the database's
  constraints at commit), not after each commit: a commit's rows are not visible to the world;
- the trace has no state lines (they came from the memory store's commit hook);
- the `wallet_outside_ledger` planted bug is memory-only and refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio
from trio._core import _run as _trio_run

from engine.gateway import CaptureStatus
from engine.records import PaymentOrder
from engine.states import OrderStatus
from engine.store.pg_batch import GroupStatistics
from engine.store.postgres import PostgresLimits, PostgresStore, open_postgres_store
from scenarios import Scenario
from simulator.oracle import check_books, check_psp_keys
from simulator.pg_store import PgSimStore, read_books, read_snapshot
from simulator.stall import STALL_S_DEFAULT, RunInconclusive, watch_progress
from simulator.world import ORACLE_INTERVAL_S, QUIET_POLL_S, SimWorld
from simulator.world_payouts import read_payouts

#: What the report says about this tier, whatever the scenario.
TIER_NOTES = (
    "virtual time runs at R x wall time: traffic, PSP latency, timeouts, webhook delays and "
    "crash intervals are all scaled by R; database latency is real (R times longer in virtual "
    "time)",
    "postgres store limits (connect, acquire, commit, shutdown) multiplied by R",
    "crash = in-process engine restart at a store crash point; PostgreSQL rolls back the open unit",
    "wallet = ledger checked every oracle tick and at the end, not after every commit",
    "commission, state-change announcements and webhook effects are checked at each commit on "
    "the memory store only; a payment's agreement with its orders is checked at the end",
    "not deterministic: scheduler seeding off, no trace-hash equality across runs",
)
#: The seams that only the memory store can plant.
MEMORY_ONLY_SEAMS = frozenset({"wallet_outside_ledger"})
#: How long the final snapshot may take to read (wall seconds times R, as all limits here).
SNAPSHOT_TIMEOUT_S = 120.0
#: How long one of the world's own reads (quiet detection, oracle ticks) may wait, in wall
#: seconds: asyncpg waits for a pooled connection without a bound, so a pool the engine holds
#: (or leaked) would otherwise hang the run silently.
WORLD_READ_TIMEOUT_S = 60.0
#: Connections of the world's own pool (quiet detection, oracle ticks).
WATCH_POOL_SIZE_MAX = 2
#: A stall is never declared before this many oracle ticks went by without a database answer.
STALL_ORACLE_TICKS = 5


class StoreUnresponsive(RunInconclusive):
    """The database did not answer one of the world's reads in time (pool statistics inside)."""


def scaled_limits(time_scale: float) -> PostgresLimits:
    """The store's limits on a clock running `time_scale` times faster than the wall."""
    base = PostgresLimits()
    return attrs.evolve(
        base,
        connect_timeout_s=base.connect_timeout_s * time_scale,
        acquire_timeout_s=base.acquire_timeout_s * time_scale,
        commit_timeout_s=base.commit_timeout_s * time_scale,
        shutdown_timeout_s=base.shutdown_timeout_s * time_scale,
    )


class PgWorld(SimWorld):
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        *,
        dsn: str,
        time_scale: float,
        seams: frozenset[str] = frozenset(),
        stall_s: float = STALL_S_DEFAULT,
    ) -> None:
        refused = seams & MEMORY_ONLY_SEAMS
        if refused:
            raise ValueError(f"seams {sorted(refused)} exist only with the memory store")
        super().__init__(scenario, seed, seams=seams, trace_states=False)
        self.dsn = dsn
        self.time_scale = time_scale
        # The memory SimStore made by SimWorld is replaced before anything used it.
        store = PgSimStore(self._checkpoint, crash_point=self._crash_point)
        store.count_payments = lambda: len(set(self.buyers.replies.values()))
        self.store = store  # type: ignore[assignment]
        #: Whether trio's deterministic scheduling was on during the run (it must not be).
        self.scheduling_deterministic: bool | None = None
        self._capture_orders: dict[str, PaymentOrder] = {}
        #: Captured orders already offered to their merchants for a refund.
        self._offered: set[str] = set()
        #: Outbox deliveries still pending when quiet was last looked for (for the violation).
        self._pending_deliveries = 0
        #: The world's own pool for its checks, apart from the engine's: under load the engine
        #: keeps every connection of its pool busy, and an observer queued behind it would be
        #: measuring the queue, not the engine (a real monitor has its own connection too).
        self._watch: PostgresStore | None = None
        # The oracle reads once a virtual minute; at a slow time scale that is minutes of wall.
        self.stall_s = max(stall_s, STALL_ORACLE_TICKS * ORACLE_INTERVAL_S / time_scale)
        #: Called whenever a database operation answered (the runner's `StallThread.beat`).
        self.beat: Callable[[], None] = lambda: None
        #: The engine store's group commits, read once the engine has stopped (tier report).
        self.group_commits: GroupStatistics | None = None

    @property
    def pg_store(self) -> PgSimStore:
        assert isinstance(self.store, PgSimStore)
        return self.store

    async def run(self) -> None:
        self.scheduling_deterministic = bool(_trio_run._ALLOW_DETERMINISTIC_SCHEDULING)
        limits = scaled_limits(self.time_scale)
        async with (
            open_postgres_store(self.dsn, limits=limits) as pg,
            open_postgres_store(
                self.dsn, migrate=False, pool_size_max=WATCH_POOL_SIZE_MAX, limits=limits
            ) as watch,
        ):
            self.pg_store.attach(pg)
            self._watch = watch
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_progress)
                await super().run()
                # The engine has stopped: no group commit runs while its counters are read.
                self.group_commits = pg.group.statistics()
                with trio.fail_after(SNAPSHOT_TIMEOUT_S * self.time_scale):
                    self.pg_store.final = await read_snapshot(pg)
                    if self.payouts.on:  # simulator/world_payouts.py
                        sellers = self.payouts.seller_ids()
                        self.payouts.final_rows = await read_payouts(pg, sellers)
                nursery.cancel_scope.cancel()

    async def _crash_point(self) -> None:
        """A crash point that is no database call (after a group commit): an armed crash
        fires, the simulated outage does not refuse (the database answered)."""
        if self._crash_armed:
            self._crash()
        await trio.lowlevel.checkpoint()

    def write_behind_report(self) -> dict[str, int]:
        """How the run's write-behind units ended, and the group commits that carried them."""
        report = self.pg_store.batched.report()
        if self.group_commits is not None:
            report |= {
                "group_commits": self.group_commits.groups,
                "group_units": self.group_commits.units,
                "group_fallbacks": self.group_commits.fallbacks,
            }
        return report

    def _answered(self) -> int:
        """Database operations answered so far, in both pools: the sign of a live run."""
        total = 0
        for pool in (self.pg_store.pg, self.watch):
            stats = pool.statistics()
            total += stats.units_committed + stats.units_rolled_back + stats.reads_answered
        return total

    async def _watch_progress(self) -> None:
        await watch_progress(
            self._answered, stall_s=self.stall_s, time_scale=self.time_scale, beat=self.beat
        )

    @asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        try:
            with trio.fail_after(WORLD_READ_TIMEOUT_S * self.time_scale):
                yield
        except trio.TooSlowError:
            raise StoreUnresponsive(
                f"{what}: no answer within {WORLD_READ_TIMEOUT_S:.0f} wall s; engine's "
                f"{self.pg_store.pg.statistics()}; world's {self.watch.statistics()}"
            ) from None

    @property
    def watch(self) -> PostgresStore:
        assert self._watch is not None, "the world's pool opens with the run"
        return self._watch

    async def _unfinished(self) -> int:
        pg = self.watch
        return (
            len(await pg.list_unfinished_payments(1000))
            + len(await pg.list_unfinished_orders(1000))
            + len(await pg.list_unfinished_refunds(1000))
            + len(await pg.list_unfinished_payouts(1000))
        )

    async def _offer_refunds(self, pg: PostgresStore) -> None:
        """No commit hook here: each tick, the orders the PSP captured are read until booked,
        then offered to their merchants for a refund (simulator/world_refunds.py)."""
        captured = [
            key
            for key, capture in self.psp.captures.items()
            if capture.status is CaptureStatus.CAPTURED and key not in self._offered
        ]
        for key in sorted(captured):
            order = await pg.get_order(key)
            if order is not None and order.status is OrderStatus.SUCCESS and order.booked:
                self._offered.add(key)
                self.refunds.order_captured(order)
                self.disputes.order_captured(order)  # a no-op unless disputes are on

    async def _wait_quiet(self) -> None:
        pg = self.watch
        while True:
            await trio.sleep(QUIET_POLL_S)
            if (
                self.buyers.active == 0
                and self.webhooks.in_flight == 0
                and self.inc is not None
                and self.psp.webhook_receive.statistics().current_buffer_used == 0
                and (not self.refunds.on or self.refunds.quiet())
                and (not self.disputes.on or self.disputes.quiet())
                and self.payouts.quiet()
            ):
                async with self._bounded("quiet detection"):
                    self.pg_store.unfinished_count = await self._unfinished()
                    pending = await pg.count_pending_deliveries()
                self._pending_deliveries = pending
                if self.pg_store.unfinished_count == 0 and pending == 0:
                    return

    def _unquiet(self) -> list[str]:
        why = super()._unquiet()
        if self._pending_deliveries:
            why.append(f"{self._pending_deliveries} outbox delivery(ies) pending")
        return why

    async def _oracle_ticker(self) -> None:
        pg = self.watch
        while True:
            await trio.sleep(ORACLE_INTERVAL_S)
            # Captures go on while the orders are read: read until a round finds no new key,
            # then check with no await in between, so every capture checked had its order read.
            missing: set[str] = set()
            async with self._bounded("oracle tick"):
                while new := set(self.psp.captures) - set(self._capture_orders) - missing:
                    for key in sorted(new):
                        order = await pg.get_order(key)
                        if order is None:
                            missing.add(key)
                        else:
                            self._capture_orders[key] = order
                found = check_psp_keys(self.psp, self._capture_orders)
                books = await read_books(pg)
                if self.refunds.on or self.disputes.on:
                    await self._offer_refunds(pg)
            if books is not None:
                found += check_books(*books)
            if found:
                self.violate(found[0])
