"""The simulated world around one engine: clients, buyers, a PSP, its webhooks, crashes.

One `SimWorld` runs one scenario with one seed, inside `trio.run` on a MockClock with
autojump (see simulator/runner.py), in two phases:

1. Traffic: checkouts arrive as a Poisson process (with an optional burst) for `duration_s`
   virtual seconds while the fault plan is on: PSP latency, 5xx, timeouts before and after the
   PSP acted, declines, failed attempts announced by webhook, webhook duplicates, delays,
   reordering, loss and forgeries, and engine crashes with restart after a delay.
2. Liveness: the faults stop and no new checkout arrives; the run waits (in virtual time,
   bounded by `liveness_s_max`) until the world is quiet: every buyer done, every payment and
   order terminal and booked, no webhook in flight, no outbox delivery pending.

The engine runs as "incarnations": a crash cancels the current one at the next store
checkpoint after the crash fires (so it lands inside a unit of work, before a commit, or between
a PSP call and its answer) and everything not committed is lost; after a delay `open_engine`
runs again on the same store and recovers. Clients reach the engine only through `request`,
which runs the call inside the current incarnation, so a crash breaks the client's connection
exactly as it would a real one; clients then retry with the same checkout id.

Randomness: every stream (`traffic`, `psp`, `webhooks`, `crash`, the engine's own, the ids)
is a `random.Random` seeded from `"<seed>:<stream>"` (`simulator.determinism.stream`), so
streams do not disturb each other and no value depends on PYTHONHASHSEED. Each checkout draws
from its own stream `"<seed>:chk:<i>"`.

This module is the world's spine: the run's two phases, the engine's incarnations and crashes,
and the oracle's ticks; the PSP's fault choices and the outages are simulator/world_weather.py.
Two parts live in their own modules and are owned by the world: webhook delivery and our
endpoint (simulator/world_webhooks.py, `world.webhooks`) and the buyers and their clients
(simulator/world_buyers.py, `world.buyers`); the oracle's checks at each commit are
simulator/world_commit.py.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

from actors.clock import TrioClock
from actors.engine import Engine, open_engine
from actors.runtime import AskTimeout
from engine.errors import StoreUnavailable
from engine.ids import Ids
from engine.limits import EngineConfig
from engine.records import OutboxMessage
from engine.store.memory import MemoryUnitOfWork
from scenarios import Faults, Scenario
from simulator.crash_sweep import CrashSweep
from simulator.determinism import stream
from simulator.fake_psp import FakePsp
from simulator.oracle import Violation, check_books, check_psp_keys
from simulator.oracle import violation as oracle_violation
from simulator.oracle_refunds import check_psp_refund_keys
from simulator.progress import ProgressInstrument
from simulator.store import Before, SimStore
from simulator.trace import Trace
from simulator.world_buyers import Buyers
from simulator.world_commit import check_commit
from simulator.world_disputes import PspDisputes
from simulator.world_payouts import SimPayouts
from simulator.world_payouts import check_tick as check_payouts_at_tick
from simulator.world_quiet import actor_crashes, unquiet, wait_quiet
from simulator.world_recon import ReconDesk
from simulator.world_refunds import MerchantRefunds
from simulator.world_weather import (
    choose,
    db_outages,
    end_db_outage,
    end_psp_outage,
    latency,
    psp_outages,
)
from simulator.world_webhooks import WebhookDelivery

T = TypeVar("T")

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: virtual wall time starts here

#: How often (virtual seconds) the oracle checks the books while the run goes on.
ORACLE_INTERVAL_S = 60.0
#: How often (virtual seconds) the liveness phase looks for quiescence.
QUIET_POLL_S = 5.0
#: A crash armed at a time fires at the next store checkpoint, or after this long if none comes.
CRASH_FALLBACK_S = 1.0


def simulation_config() -> EngineConfig:
    # The doorbell wakes consumers after each commit; polling is only a backstop.
    # The payout scheduler looks every 10 virtual minutes (only when payouts are on), so short
    # scenarios meet their first scheduled payouts while the faults are still on.
    return EngineConfig(outbox_poll_interval_s=5.0, payout_schedule_interval_s=600.0)


@attrs.define
class Incarnation:
    number: int
    engine: Engine
    requests: trio.Nursery


@attrs.define
class Stats:
    checkouts: int = 0
    rejections: Counter[str] = attrs.Factory(Counter)
    buyer_outcomes: Counter[str] = attrs.Factory(Counter)
    client_retries: int = 0
    webhooks_emitted: int = 0
    webhook_answers: Counter[str] = attrs.Factory(Counter)
    webhooks_given_up: int = 0
    crashes: int = 0
    actor_restarts: int = 0


class SimWorld:
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        *,
        seams: frozenset[str] = frozenset(),
        config: EngineConfig | None = None,
        trace_states: bool = True,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.plan: Faults = scenario.faults
        self.seams = seams - {"wallet_outside_ledger"}
        self.config = config or simulation_config()
        self.trace = Trace()
        self.stats = Stats()
        self.faults: Counter[str] = Counter()
        self.violation: Violation | None = None
        self.idempotency_breaks: list[str] = []
        self.forged_accepted = 0
        self.faults_on = True
        self.trace_states = trace_states
        self.rng_psp = stream(seed, "psp")
        self._rng_crash = stream(seed, "crash")
        self.rng_outage = stream(seed, "outage")
        #: The end of the PSP outage under way (virtual s), and the event set when it ends.
        self.outage_until: float | None = None
        self.outage_over = trio.Event()
        #: A database outage is under way: every store checkpoint fails (StoreUnavailable).
        self.db_down = False
        #: Whether the outage under way also stalls webhook delivery.
        self.webhooks_stalled = False
        #: (topic, key) of every message the merchants' notifier received (merchants_notified).
        self.notified: set[tuple[str, str]] = set()
        self.webhooks = WebhookDelivery(self)
        self.buyers = Buyers(self)
        self.refunds = MerchantRefunds(self)
        self.disputes = PspDisputes(self)  # simulator/world_disputes.py
        self.payouts = SimPayouts(self)  # simulator/world_payouts.py
        self._crash_armed = False
        self._incarnations = 0
        self.inc: Incarnation | None = None
        self._inc_scope: trio.CancelScope | None = None
        self._up = trio.Event()
        self._root: trio.Nursery | None = None
        self.store = SimStore(
            self._checkpoint, wallet_outside_ledger="wallet_outside_ledger" in seams
        )
        self.store.on_commit = self._on_commit
        self.sweep: CrashSweep | None = None
        if self.plan.crash_sweep_p > 0:
            self.sweep = CrashSweep(
                seed, self.plan.crash_sweep_p, self._payment_of_order, self._crash, self.fault
            )
            self.store.before_commit = self.sweep.before_commit
            self.store.after_commit = self.sweep.after_commit
        # Set in `run`, inside trio: the clock reads trio's time.
        self.clock: TrioClock
        self.psp: FakePsp
        self.ids: Ids
        self.settlement: ReconDesk  # the nightly files and their reconciliation
        self.progress: Callable[[SimWorld], None] | None = None
        self.virtual_s = 0.0

    # --- plumbing ---------------------------------------------------------------------------
    def now_ms(self) -> int:
        return self.clock.now_ms() - EPOCH_MS

    def note(self, kind: str, *fields: object) -> None:
        self.trace.add(self.now_ms(), kind, *fields)

    def fault(self, name: str, *fields: object) -> None:
        self.faults[name] += 1
        self.note("fault", name, *fields)

    def violate(self, violation: Violation) -> None:
        """Record the first violation and stop the run (the root nursery is cancelled)."""
        if self.violation is None:
            self.violation = violation
            self.note("violation", violation.invariant)
            if self._root is not None:
                self._root.cancel_scope.cancel()

    def _payment_of_order(self, order_id: str) -> str | None:
        order = self.store.committed_orders().get(order_id)
        return None if order is None else order.payment_id

    async def _notify(self, message: OutboxMessage) -> None:
        """The merchants' notifier: it only records what it received (never blocks)."""
        self.notified.add((message.topic, message.key))

    async def _checkpoint(self) -> None:
        if self._crash_armed:
            self._crash()
        await trio.lowlevel.checkpoint()
        if self.db_down:  # after the checkpoint: a crash armed meanwhile still fires first
            self.faults["db_outage_refused"] += 1
            raise StoreUnavailable("simulated database outage")

    def _crash(self) -> None:
        """Kill the current incarnation now: clients lose their connection at once."""
        self._crash_armed = False
        if self._inc_scope is not None:
            self.inc = None
            self._inc_scope.cancel()

    def _on_commit(self, uow: MemoryUnitOfWork, before: Before) -> None:
        """Trace the state changes this commit announced; check the books it touched and the
        flow invariants of the rows it wrote (simulator/world_commit.py)."""
        if self.trace_states:
            for message in uow._outbox:
                status = message.payload.get("status", "")
                self.note("state", message.topic, message.key, status)
        found = check_commit(self, uow, before)
        if found:
            self.violate(found[0])

    async def request(self, call: Callable[[Engine], Awaitable[T]]) -> T | None:
        """Run `call` in the current engine incarnation; None if it is down or crashed meanwhile."""
        inc = self.inc
        if inc is None:
            return None
        box: list[T] = []
        done = trio.Event()

        async def run() -> None:
            try:
                box.append(await call(inc.engine))
            except (StoreUnavailable, AskTimeout) as exc:  # the API answers these 503
                # (web/app.py, web/webhooks.py): an outage, or an actor busy past the deadline.
                self.note("http_503", type(exc).__name__)
            except Exception as exc:  # the server answered 500; Cancelled is never caught
                self.note("http_500", type(exc).__name__)
                self.violate(
                    Violation(
                        "no_server_errors",
                        "a request raised in the engine: the client got a 500",
                        (f"{type(exc).__name__}: {exc}"[:300],),
                    )
                )
            finally:
                done.set()

        try:
            inc.requests.start_soon(run)
        except RuntimeError:  # the incarnation is shutting down: connection refused
            return None
        await done.wait()
        return box[0] if box else None

    # --- the run ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Both phases; returns when quiet, or early with `self.violation` set."""
        self.clock = TrioClock(EPOCH_MS)
        self.ids = Ids(self.clock, stream(self.seed, "ids"))
        self.psp = FakePsp(self.clock)
        self.psp.chooser = functools.partial(choose, self)
        self.psp.latency = functools.partial(latency, self)
        self.psp.hang_s = 3600.0
        self.settlement = ReconDesk(
            self.psp,
            self.seed,
            self.plan,
            start_ms=self.clock.now_ms(),
            request=self.request,
            on_fault=self.fault,
            note=self.note,
        )
        self.psp.withhold = self.settlement.withholder(lambda: self.faults_on)
        if self.payouts.on:
            self.settlement.payout_bank = self.payouts.make_provider().bank
        async with trio.open_nursery() as root:
            self._root = root
            await root.start(self._engine_supervisor)
            root.start_soon(self.webhooks.dispatch)
            root.start_soon(self._oracle_ticker)
            if self.refunds.on:
                await root.start(self.refunds.run)
            if self.disputes.on:
                await root.start(self.disputes.run)
            if self.payouts.on:
                await root.start(self.payouts.run)
            if self.plan.crash_interval_s > 0:
                root.start_soon(self._crash_scheduler)
            if self.plan.psp_outage_interval_s > 0:
                root.start_soon(psp_outages, self)
            if self.plan.db_outage_interval_s > 0:
                root.start_soon(db_outages, self)
            if self.progress is not None:  # an instrument: a task would change the schedule
                progress = self.progress
                trio.lowlevel.add_instrument(ProgressInstrument(lambda: progress(self)))
            async with trio.open_nursery() as clients:
                await self.buyers.arrive(clients)
                self.faults_on = False
                self.psp.hear()  # withheld captures: the PSP answers again
                self.disputes.faults_off.set()
                end_psp_outage(self)
                end_db_outage(self)
                self.note("faults_off")
                with trio.move_on_after(self.scenario.liveness_s_max) as bound:
                    await self._wait_quiet()
                    # The last (partial) day's files, reconciled; their repairs run to quiet.
                    await self.settlement.final(self.clock.now_ms(), retry_s=QUIET_POLL_S)
                    await self._wait_quiet()
                # Also at the bound: a buyer still waiting (a risk review of hours) must not
                # keep a real-time run going past it.
                clients.cancel_scope.cancel()
            self.virtual_s = trio.current_time()
            if bound.cancelled_caught and self.violation is None:
                why = self._unquiet() or [
                    f"the last settlement files not reconciled yet ({len(self.settlement.pending)} "
                    f"waiting, {len(self.settlement.records)} done)"
                ]
                self.violate(
                    Violation(
                        "every_authorized_order_terminal",
                        f"not quiet {self.scenario.liveness_s_max:.0f} virtual s after the "
                        f"faults stopped: {'; '.join(why)}",
                    )
                )
            if self.inc is not None:  # the last incarnation's restarts (crashed ones add theirs)
                self._check_actor_crashes()
                self.stats.actor_restarts += self.inc.engine.system.statistics().restarts
            root.cancel_scope.cancel()

    async def _wait_quiet(self) -> None:
        await wait_quiet(self, QUIET_POLL_S)

    def _unquiet(self) -> list[str]:
        return unquiet(self)

    # --- the engine, its crashes and restarts -------------------------------------------------
    async def _engine_supervisor(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        rng = stream(self.seed, "engine")
        started = False
        while True:
            self._incarnations += 1
            incarnation: Incarnation | None = None
            with trio.CancelScope() as scope:
                self._inc_scope = scope
                async with (
                    open_engine(
                        self.store,
                        self.psp,
                        self.clock,
                        self.ids,
                        rng,
                        self.config,
                        notifier=self._notify,
                        notifier_inline=True,
                        faults=self.seams,
                        payout_gateway=self.payouts.provider,
                    ) as engine,
                    trio.open_nursery() as requests,
                ):
                    incarnation = Incarnation(self._incarnations, engine, requests)
                    self.inc = incarnation
                    self.note("engine_up", self._incarnations)
                    self._up.set()
                    if not started:
                        started = True
                        task_status.started()
                    await trio.sleep_forever()
            # Crashed: everything not committed is gone; the actors' memory with it.
            if incarnation is not None:
                restarts = incarnation.engine.system.statistics().restarts
                self.stats.actor_restarts += restarts
                if restarts and self.violation is None:
                    self.violate(
                        Violation(
                            "actors_never_crash",
                            f"{restarts} actor restart(s) in incarnation {incarnation.number}",
                        )
                    )
            self.inc = None
            self._inc_scope = None
            self._up = trio.Event()
            self.stats.crashes += 1
            self.fault("engine_crash", self._incarnations)
            await trio.sleep(self._rng_crash.uniform(0.0, self.plan.restart_delay_s_max))

    async def _crash_scheduler(self) -> None:
        mean_s = self.plan.crash_interval_s
        while True:
            await trio.sleep(self._rng_crash.expovariate(1.0 / mean_s))
            if not self.faults_on:
                return
            if self.inc is None:
                continue
            self._crash_armed = True
            await trio.sleep(CRASH_FALLBACK_S)
            if self._crash_armed:  # no store checkpoint came: crash between two of them
                self._crash()

    @property
    def in_outage(self) -> bool:
        return self.outage_until is not None

    # --- the oracle during the run ------------------------------------------------------------
    def _check_actor_crashes(self) -> None:
        if self.inc is not None and (found := actor_crashes(self.inc.engine)) is not None:
            self.violate(found)

    async def _oracle_ticker(self) -> None:
        while True:
            await trio.sleep(ORACLE_INTERVAL_S)
            await self.settlement.tick(self.clock.now_ms())  # at each UTC midnight
            # One committed instant (no checkpoint in between), every row, as a snapshot holds.
            self._check_actor_crashes()
            trial, balances = self.store.books()
            found = check_psp_keys(self.psp, self.store.committed_orders())
            found += check_books(trial, balances)
            if self.refunds.on:
                found += [
                    oracle_violation(invariant, detail, objects)
                    for invariant, detail, objects in check_psp_refund_keys(
                        self.psp, self.store.committed_refunds(), self.store.committed_orders()
                    )
                ]
            found += check_payouts_at_tick(self.payouts)
            if found:
                self.violate(found[0])
