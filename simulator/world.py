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
is a `random.Random` seeded from `"<seed>:<stream>"`, so streams do not disturb each other and
no value depends on PYTHONHASHSEED. Each checkout draws from its own stream `"<seed>:chk:<i>"`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import trio

from actors.clock import TrioClock
from actors.engine import Engine, open_engine
from actors.service import CreateCheckout, PaymentView, Rejection
from engine.ids import Ids
from engine.limits import EngineConfig
from engine.states import PaymentStatus, is_terminal
from engine.store.memory import MemoryUnitOfWork
from scenarios import Faults, Scenario
from simulator.fake_psp import Action, FakePsp, parse_event
from simulator.oracle import Violation, check_books, check_psp_keys
from simulator.progress import ProgressInstrument
from simulator.settlement_desk import SettlementDesk
from simulator.signing import SignatureInvalid, sign_webhook, verify_webhook
from simulator.store import SimStore
from simulator.trace import Trace
from simulator.traffic import checkout_command, rate_at

T = TypeVar("T")

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: virtual wall time starts here

#: How often (virtual seconds) the oracle checks the books while the run goes on.
ORACLE_INTERVAL_S = 60.0
#: How often (virtual seconds) the liveness phase looks for quiescence.
QUIET_POLL_S = 5.0
#: The PSP retries an unacknowledged webhook this many times (Stripe: about 3 days).
WEBHOOK_ATTEMPTS_MAX = 16
WEBHOOK_RETRY_S_MAX = 3600.0
#: A client retries a checkout request whose connection broke this many times.
CLIENT_ATTEMPTS_MAX = 30
CLIENT_RETRY_S_MAX = 60.0
#: How long a buyer waits for the hosted page before giving up (virtual seconds).
SESSION_WAIT_S_MAX = 6 * 3600.0
#: The client's short wait for an impatient first request (seconds).
IMPATIENT_WAIT_S = 0.2
#: A crash armed at a time fires at the next store checkpoint, or after this long if none comes.
CRASH_FALLBACK_S = 1.0
#: Webhook delay without the delay fault: the PSP's normal dispatch latency (seconds).
WEBHOOK_DISPATCH_S_MAX = 2.0
#: Reordering holds an event back by up to this long, so later events overtake it.
WEBHOOK_REORDER_S_MAX = 30.0


def stream(seed: int, name: str) -> random.Random:
    """An independent, reproducible random stream (str seeds hash with SHA-512, not hash())."""
    return random.Random(f"{seed}:{name}")


def simulation_config() -> EngineConfig:
    # The doorbell wakes consumers after each commit; polling is only a backstop.
    return EngineConfig(outbox_poll_interval_s=5.0)


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
        self._rng_psp = stream(seed, "psp")
        self._rng_webhooks = stream(seed, "webhooks")
        self._rng_crash = stream(seed, "crash")
        self._replies: dict[str, str] = {}
        self._webhooks_in_flight = 0
        self._buyers_active = 0
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
        # Set in `run`, inside trio: the clock reads trio's time.
        self.clock: TrioClock
        self.psp: FakePsp
        self.ids: Ids
        self.settlement: SettlementDesk
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

    async def _checkpoint(self) -> None:
        if self._crash_armed:
            self._crash()
        await trio.lowlevel.checkpoint()

    def _crash(self) -> None:
        """Kill the current incarnation now: clients lose their connection at once."""
        self._crash_armed = False
        if self._inc_scope is not None:
            self.inc = None
            self._inc_scope.cancel()

    def _on_commit(self, uow: MemoryUnitOfWork) -> None:
        """Trace the state changes this commit announced; check the books it touched."""
        if self.trace_states:
            for message in uow._outbox:
                status = message.payload.get("status", "")
                self.note("state", message.topic, message.key, status)
        if not uow._txns and not uow._deltas:
            return
        trial, balances = self.store.touched_books(uow)
        found = check_books(trial, balances, uow._txns, trial_is_complete=False)
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
            except Exception as exc:  # the server answered 500; Cancelled is never caught
                self.note("http_500", type(exc).__name__)
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
        self.psp.chooser = self._choose
        self.psp.latency = self._latency
        self.psp.hang_s = 3600.0
        self.settlement = SettlementDesk.of_world(self.psp, self.seed, self.plan, self.fault)
        async with trio.open_nursery() as root:
            self._root = root
            await root.start(self._engine_supervisor)
            root.start_soon(self._webhook_dispatcher)
            root.start_soon(self._oracle_ticker)
            if self.plan.crash_interval_s > 0:
                root.start_soon(self._crash_scheduler)
            if self.progress is not None:  # an instrument: a task would change the schedule
                progress = self.progress
                trio.lowlevel.add_instrument(ProgressInstrument(lambda: progress(self)))
            async with trio.open_nursery() as clients:
                await self._traffic(clients)
                self.faults_on = False
                self.note("faults_off")
                with trio.move_on_after(self.scenario.liveness_s_max) as bound:
                    await self._wait_quiet()
                    clients.cancel_scope.cancel()
            self.virtual_s = trio.current_time()
            if bound.cancelled_caught and self.violation is None:
                unfinished = self.store.unfinished()
                self.violate(
                    Violation(
                        "every_authorized_order_terminal",
                        f"not quiet {self.scenario.liveness_s_max:.0f} virtual s after the "
                        f"faults stopped: {unfinished} unfinished payment(s)/order(s), "
                        f"{self._webhooks_in_flight} webhook(s) in flight, "
                        f"{self._buyers_active} buyer(s) active",
                    )
                )
            root.cancel_scope.cancel()
        self.settlement.settle_final(self.clock.now_ms())

    async def _wait_quiet(self) -> None:
        while True:
            await trio.sleep(QUIET_POLL_S)
            snap_pending = sum(len(p) for p in self.store._t.pending.values())
            if (
                self._buyers_active == 0
                and self._webhooks_in_flight == 0
                and self.inc is not None
                and self.store.unfinished() == 0
                and snap_pending == 0
                and self.psp.webhook_receive.statistics().current_buffer_used == 0
            ):
                return

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
                        faults=self.seams,
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
                self.stats.actor_restarts += incarnation.engine.system.statistics().restarts
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

    # --- the PSP's faults ----------------------------------------------------------------------
    def _choose(self, operation: str) -> Action:
        action = Action.OK
        if self.faults_on:
            f = self.plan
            r = self._rng_psp.random()
            table: list[tuple[float, Action]] = [
                (f.psp_unavailable_p, Action.UNAVAILABLE),
                (f.psp_hang_p, Action.HANG),
                (f.psp_timeout_after_p, Action.TIMEOUT_AFTER),
            ]
            if operation == "capture":
                table += [
                    (f.psp_decline_p, Action.DECLINE),
                    (f.psp_failed_attempt_p, Action.FAILED_ATTEMPT),
                ]
            for p, candidate in table:
                if r < p:
                    action = candidate
                    break
                r -= p
        if action is not Action.OK:
            self.fault(f"psp_{action.value}", operation)
        else:
            self.note("psp", operation)
        return action

    def _latency(self, operation: str) -> float:
        f = self.plan
        if f.psp_latency_ms_median <= 0:
            return 0.0
        # Log-normal around the median with a long tail, capped: PSP latency's usual shape.
        ms = f.psp_latency_ms_median * math.exp(self._rng_psp.gauss(0.0, 0.8))
        return min(ms, f.psp_latency_ms_max) / 1000.0

    # --- webhooks: the PSP's sender and our endpoint -------------------------------------------
    async def _webhook_dispatcher(self) -> None:
        rng = self._rng_webhooks
        async with trio.open_nursery() as nursery:
            while True:
                event = await self.psp.webhook_receive.receive()
                self.stats.webhooks_emitted += 1
                f = self.plan
                copies = 1
                delay_s = rng.uniform(0.0, WEBHOOK_DISPATCH_S_MAX)
                if self.faults_on:
                    if rng.random() < f.webhook_loss_p:
                        self.fault("webhook_lost", event.event_id, event.kind.value)
                        continue
                    if rng.random() < f.webhook_duplicate_p:
                        copies += rng.randint(1, f.webhook_duplicates_max)
                        self.fault("webhook_duplicated", event.event_id, copies)
                    if rng.random() < f.webhook_delay_p:
                        delay_s += rng.uniform(0.0, f.webhook_delay_s_max)
                        self.fault("webhook_delayed", event.event_id, round(delay_s, 3))
                    elif rng.random() < f.webhook_reorder_p:
                        delay_s += rng.uniform(WEBHOOK_DISPATCH_S_MAX, WEBHOOK_REORDER_S_MAX)
                        self.fault("webhook_reordered", event.event_id)
                    if rng.random() < f.webhook_forged_p:
                        self.fault("webhook_forged", event.event_id)
                        self._webhooks_in_flight += 1
                        nursery.start_soon(self._send_forged, event, rng.uniform(0.0, 5.0))
                for copy in range(copies):
                    self._webhooks_in_flight += 1
                    extra_s = rng.uniform(0.0, 1.0) * copy
                    nursery.start_soon(self._send_webhook, event, delay_s + extra_s)

    async def _send_webhook(self, event: Any, delay_s: float) -> None:
        try:
            await trio.sleep(delay_s)
            for attempt in range(1, WEBHOOK_ATTEMPTS_MAX + 1):
                body, header = self.psp.signed(event, self.clock.now_ms() // 1000)
                status = await self.endpoint(body, header)
                self.note("webhook", event.event_id, event.kind.value, event.reference, status)
                if status == 200:
                    return
                await trio.sleep(min(WEBHOOK_RETRY_S_MAX, 2.0**attempt))
            self.stats.webhooks_given_up += 1
            self.note("webhook_given_up", event.event_id)
        finally:
            self._webhooks_in_flight -= 1

    async def _send_forged(self, event: Any, delay_s: float) -> None:
        """A forgery: the event turned into a capture success, signed with a guessed secret."""
        try:
            await trio.sleep(delay_s)
            forged = attrs.evolve(event, event_id=f"{event.event_id}_forged")
            body, _ = self.psp.signed(forged, 0)
            header = sign_webhook(b"whsec_guessed", self.clock.now_ms() // 1000, body)
            status = await self.endpoint(body, header)
            self.note("webhook_forged", event.event_id, status)
            if status != 401:
                self.forged_accepted += 1
                self.violate(
                    Violation(
                        "forged_webhooks_rejected",
                        f"a forged webhook was answered {status}",
                        (forged.event_id,),
                    )
                )
        finally:
            self._webhooks_in_flight -= 1

    async def endpoint(self, body: bytes, signature: str | None) -> int:
        """Our webhook endpoint: verify, parse, hand to the engine; the HTTP status it answers."""
        try:
            verify_webhook(self.psp.webhook_secret, signature, body, self.clock.now_ms() // 1000)
        except SignatureInvalid:
            self.stats.webhook_answers["401"] += 1
            return 401
        try:
            event = parse_event(body)
        except (ValueError, KeyError):
            self.stats.webhook_answers["400"] += 1
            return 400
        outcome = await self.request(lambda engine: engine.service.handle_psp_event(event))
        self.stats.webhook_answers[outcome or "connection_lost"] += 1
        if outcome is None or outcome == "retry_later":
            return 503
        return 200

    # --- traffic ----------------------------------------------------------------------------
    async def _traffic(self, clients: trio.Nursery) -> None:
        rng = stream(self.seed, "traffic")
        start = trio.current_time()
        index = 0
        while True:
            elapsed = trio.current_time() - start
            gap_s = rng.expovariate(rate_at(self.scenario.traffic, elapsed))
            tr = self.scenario.traffic
            if elapsed < tr.burst_start_s <= elapsed + gap_s:
                gap_s = tr.burst_start_s - elapsed  # the burst begins on time
            if elapsed + gap_s >= self.scenario.duration_s:
                await trio.sleep(max(0.0, self.scenario.duration_s - elapsed))
                return
            await trio.sleep(gap_s)
            if self.violation is not None:
                return
            self._buyers_active += 1
            clients.start_soon(self._buyer, index)
            index += 1

    async def _buyer(self, index: int) -> None:
        try:
            await self._buy(index)
        finally:
            self._buyers_active -= 1

    async def _buy(self, index: int) -> None:
        rng = stream(self.seed, f"chk:{index}")
        tr = self.scenario.traffic
        command = checkout_command(self.scenario.traffic, self.seed, index, rng)
        self.stats.checkouts += 1
        double_click = rng.random() < tr.double_click_p
        impatient = rng.random() < tr.impatient_retry_p
        replies: list[PaymentView | Rejection | None] = []

        async def send(wait_s: float | None) -> None:
            replies.append(await self._checkout(command, wait_s))

        if double_click:  # the same checkout sent twice at once
            self.stats.buyer_outcomes["double_click"] += 1
            async with trio.open_nursery() as both:
                both.start_soon(send, None)
                both.start_soon(send, None)
        else:
            if impatient:  # a first request the client gives up on, then the same again
                self.stats.buyer_outcomes["impatient_retry"] += 1
                await self._checkout(command, IMPATIENT_WAIT_S, 1)
                await trio.sleep(rng.uniform(0.5, 5.0))
            await send(None)
        reply = next((r for r in replies if r is not None), None)
        if reply is None or isinstance(reply, Rejection):
            return
        payment = reply.payment
        if payment.status is PaymentStatus.REJECTED_BY_RISK:
            self.stats.rejections[payment.failure_reason or "risk"] += 1
            return
        session_id = await self._wait_for_session(payment.payment_id, payment.psp_session_id)
        if session_id is None:
            return
        await trio.sleep(rng.uniform(1.0, max(1.0, tr.think_s_max)))
        choice = rng.random()
        if choice < tr.pay_p:
            self.stats.buyer_outcomes["paid"] += 1
            self.psp.buyer_pays(session_id)
        elif choice < tr.pay_p + tr.decline_p:
            self.stats.buyer_outcomes["declined"] += 1
            self.psp.buyer_declined(session_id)
        elif choice < tr.pay_p + tr.decline_p + tr.review_p:
            self.stats.buyer_outcomes["review"] += 1
            if self.psp.buyer_in_review(session_id) is None:
                return
            await trio.sleep(rng.uniform(0.5, max(0.5, tr.review_hours_max)) * 3600.0)
            if rng.random() < tr.review_approve_p:
                self.stats.buyer_outcomes["review_approved"] += 1
                self.psp.review_approves(session_id)
            else:
                self.stats.buyer_outcomes["review_declined"] += 1
                self.psp.review_declines(session_id)
        else:
            self.stats.buyer_outcomes["abandoned"] += 1

    async def _checkout(
        self, command: CreateCheckout, wait_s: float | None, attempts_max: int = CLIENT_ATTEMPTS_MAX
    ) -> PaymentView | Rejection | None:
        """Send the checkout until an answer comes; check it against earlier answers."""
        for attempt in range(1, attempts_max + 1):
            reply = await self.request(
                lambda engine: engine.service.create_checkout(command, register_timeout_s=wait_s)
            )
            if reply is not None:
                self._check_reply(command, reply)
                return reply
            self.stats.client_retries += 1
            await trio.sleep(min(CLIENT_RETRY_S_MAX, 0.5 * 2**attempt))
        return None

    def _check_reply(self, command: CreateCheckout, reply: PaymentView | Rejection) -> None:
        if isinstance(reply, Rejection):
            self.stats.rejections[reply.reason] += 1
            self.note("checkout", command.checkout_id, reply.reason)
            self.idempotency_breaks.append(
                f"{command.checkout_id}: the same request was refused ({reply.reason})"
            )
            return
        payment_id = reply.payment.payment_id
        first = self._replies.setdefault(command.checkout_id, payment_id)
        self.note("checkout", command.checkout_id, payment_id, reply.payment.status.value)
        if first != payment_id:
            self.idempotency_breaks.append(
                f"{command.checkout_id}: answered {first}, then {payment_id}"
            )
            self.violate(
                Violation(
                    "idempotent_replies",
                    "a repeated checkout got a different payment",
                    tuple(self.idempotency_breaks[-1:]),
                )
            )

    async def _wait_for_session(self, payment_id: str, session_id: str | None) -> str | None:
        """Poll the payment until the PSP page exists (the client sees CREATED until then)."""
        deadline = trio.current_time() + SESSION_WAIT_S_MAX
        while session_id is None and trio.current_time() < deadline:
            await trio.sleep(2.0)
            view = await self.request(lambda engine: engine.service.get_payment(payment_id))
            if view is None:
                continue
            if is_terminal(view.payment.status):
                return None
            session_id = view.payment.psp_session_id
        return session_id

    # --- the oracle during the run ------------------------------------------------------------
    async def _oracle_ticker(self) -> None:
        while True:
            await trio.sleep(ORACLE_INTERVAL_S)
            self.settlement.settle_through(self.clock.now_ms())  # at each UTC midnight
            snap = self.store.snapshot()
            found = check_psp_keys(self.psp, snap.orders) + check_books(snap.trial, snap.balances)
            if found:
                self.violate(found[0])
