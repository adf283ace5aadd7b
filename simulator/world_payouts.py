"""The simulated world's payouts: sellers' schedules and requests, the payout provider, its notices.

Why apart from the world: this is everything the payout flow meets from outside. At the start
`traffic.payout_scheduled_p` of the sellers set a payout schedule (daily; weekly for
`payout_weekly_p` of them) with the scenario's payout delay and minimum, through the engine's
API as a merchant would; the engine's scheduler then pays them. Now and then
(`payout_manual_interval_s`) one of them asks for a manual payout of a part of its wallet,
sometimes more than it has (refused), sometimes twice at once (the two race for one balance).
A request whose connection broke is retried with the same key; every answer to one key must
name the same payout (`idempotent_replies`).

The provider (simulator/payout_provider.py) answers with the fault plan's 5xx, hangs, lost
answers and refusals (`payout_*_p`, from its own stream), fails or returns some payouts later,
and announces each outcome by a notice, which this module delivers to the engine duplicated,
delayed, or lost (redelivered later, as providers retry unacknowledged events). Once the faults
stop, every new payout is simply paid.

Nothing here runs, and no random number is drawn, unless `payout_scheduled_p > 0`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs
import trio

from actors.engine import Engine
from actors.service import Rejection
from engine.payout_gateway import PayoutNotification
from engine.payouts import PayoutSchedule, ScheduleInterval
from engine.records import Payout
from engine.states import PayoutStatus
from engine.store.memory import MemoryUnitOfWork
from engine.store.port import PAGE_SIZE_MAX, Store
from scenarios import Faults, Traffic
from simulator.bank import FakeBank
from simulator.determinism import stream
from simulator.oracle import Snapshot, Violation, violation
from simulator.oracle_payouts import (
    check_payouts_at_commit,
    check_payouts_final,
    check_provider_keys,
)
from simulator.payout_provider import (
    FakePayoutProvider,
    OutcomePlan,
    PayoutAction,
    PayoutOutcome,
    ProviderPayout,
)

if TYPE_CHECKING:
    from simulator.world import SimWorld

#: A request (schedule, payout) whose connection broke is retried this many times.
REQUEST_ATTEMPTS_MAX = 30
REQUEST_RETRY_S_MAX = 60.0
#: When the provider decides a payout's fate after accepting it (virtual seconds), and how
#: long after being paid a returned one comes back.
OUTCOME_S_MIN, OUTCOME_S_MAX = 60.0, 4 * 3600.0
RETURN_S_MIN, RETURN_S_MAX = 3600.0, 86_400.0
#: A lost notice is sent again after up to this long; delivery to a down engine retries.
REDELIVERY_S_MAX = 1800.0
NOTICE_RETRY_S = 30.0
#: The provider's latency per call (virtual seconds) and how long a hung call hangs.
PROVIDER_LATENCY_S_MAX = 2.0
PROVIDER_HANG_S = 600.0


class SimPayouts:
    def __init__(self, world: SimWorld) -> None:
        self.world = world
        traffic = world.scenario.traffic
        self.on = traffic.payout_scheduled_p > 0
        self._rng = stream(world.seed, "payouts")
        self._rng_provider = stream(world.seed, "payout_provider")
        self._rng_notices = stream(world.seed, "payout_notices")
        self.provider: FakePayoutProvider | None = None
        self.sellers: list[str] = []
        #: Requests and notice deliveries started and not done.
        self.active = 0
        self.notices_in_flight = 0
        #: Provider keys whose bank return is still to come.
        self.returns_due: set[str] = set()
        self.replies: dict[str, str] = {}
        self.rejected: dict[str, int] = {}
        self.requested = 0
        self._keys = 0
        #: Every payout's status as of the last commit (the oracle's "before", oracle_payouts).
        self.statuses: dict[str, PayoutStatus] = {}
        #: Set by the postgres tier at the end of its run (`read_payouts`).
        self.final_rows: dict[str, Payout] | None = None

    # --- the provider ---------------------------------------------------------------------------
    def make_provider(self) -> FakePayoutProvider:
        # Sellers are paid from our account at the fake bank, whose camt.053 statements the
        # nightly reconciliation reads (simulator/bank_camt.py).
        provider = FakePayoutProvider(self.world.clock, bank=FakeBank(), bank_account="payouts")
        provider.chooser = self._choose
        provider.latency = lambda _: self._rng_provider.uniform(0.0, PROVIDER_LATENCY_S_MAX)
        provider.outcome = self._outcome
        provider.hang_s = PROVIDER_HANG_S
        self.provider = provider
        return provider

    def _choose(self, operation: str) -> PayoutAction:
        world, f = self.world, self.world.plan
        r = self._rng_provider.random()
        if not world.faults_on:
            return PayoutAction.OK
        table = [
            (f.payout_unavailable_p, PayoutAction.UNAVAILABLE),
            (f.payout_hang_p, PayoutAction.HANG),
            (f.payout_timeout_after_p, PayoutAction.TIMEOUT_AFTER),
        ]
        if operation == "submit":
            table.append((f.payout_reject_p, PayoutAction.REJECT))
        for p, action in table:
            if r < p:
                world.fault(f"payout_{action.value}", operation)
                return action
            r -= p
        return PayoutAction.OK

    def _outcome(self, payout: ProviderPayout) -> OutcomePlan:
        world, f, rng = self.world, self.world.plan, self._rng_provider
        after_s = rng.uniform(OUTCOME_S_MIN, OUTCOME_S_MAX)
        r = rng.random()
        if world.faults_on and r < f.payout_failed_p:
            world.fault("payout_fails_later", payout.key)
            return OutcomePlan(PayoutOutcome.FAILED, after_s)
        if world.faults_on and r < f.payout_failed_p + f.payout_returned_p:
            world.fault("payout_returned_later", payout.key)
            self.returns_due.add(payout.key)
            return OutcomePlan(
                PayoutOutcome.RETURNED, after_s, rng.uniform(RETURN_S_MIN, RETURN_S_MAX)
            )
        return OutcomePlan(PayoutOutcome.PAID, after_s)

    # --- the run ------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Schedules, manual requests and the provider's notices, until the world stops."""
        assert self.provider is not None
        traffic = self.world.scenario.traffic
        async with trio.open_nursery() as nursery:
            await nursery.start(self.provider.run)
            nursery.start_soon(self._notices, nursery)
            task_status.started()
            await self._set_schedules()
            if traffic.payout_manual_interval_s > 0:
                nursery.start_soon(self._manual_requests, nursery)

    async def _set_schedules(self) -> None:
        traffic = self.world.scenario.traffic
        for s in range(traffic.sellers):
            if self._rng.random() >= traffic.payout_scheduled_p:
                continue
            seller = f"seller-{s:04d}"
            weekly = self._rng.random() < traffic.payout_weekly_p
            interval = ScheduleInterval.WEEKLY if weekly else ScheduleInterval.DAILY
            self.sellers.append(seller)
            minimums = {c: traffic.payout_minimum_major * 10 ** _exp(c) for c in traffic.currencies}
            minimums = {c: m for c, m in minimums.items() if m > 0}
            call = functools.partial(
                _put_schedule, seller, interval, traffic.payout_delay_days, minimums
            )
            for _ in range(REQUEST_ATTEMPTS_MAX):
                reply = await self.world.request(call)
                if reply is not None:
                    self.world.note("payout_schedule", seller, interval.value)
                    break
                await trio.sleep(self._rng.uniform(1.0, REQUEST_RETRY_S_MAX))

    async def _manual_requests(self, nursery: trio.Nursery) -> None:
        traffic = self.world.scenario.traffic
        while self.world.faults_on and self.sellers:
            await trio.sleep(self._rng.expovariate(1.0 / traffic.payout_manual_interval_s))
            if not self.world.faults_on:
                return
            seller = self._rng.choice(self.sellers)
            currency = self._rng.choice(sorted(traffic.currencies))
            available = await self._available(seller, currency)
            # A part of the wallet, or (one time in five) more than it holds.
            amount = max(1, int(available * self._rng.uniform(0.1, 1.25)))
            copies = 2 if self._rng.random() < traffic.payout_twice_p else 1
            for _ in range(copies):
                self._keys += 1
                self.active += 1
                nursery.start_soon(self._request, seller, currency, amount, self._keys)

    async def _available(self, seller: str, currency: str) -> int:
        """What the seller sees on its dashboard (read outside the engine's units of work)."""
        tables = getattr(self.world.store, "_t", None)
        if tables is None:  # the postgres tier (simulator/pg_world.py): its own pool
            balances = await self.world.watch.list_balances(seller)  # type: ignore[attr-defined]
            return next((b.available_minor for b in balances if b.currency == currency), 0)
        wallet = tables.wallets.get((seller, currency))
        return 0 if wallet is None else int(wallet[0])

    async def _request(self, seller: str, currency: str, amount: int, n: int) -> None:
        world = self.world
        key = f"payout-{n}"
        try:
            for _ in range(REQUEST_ATTEMPTS_MAX):
                if world.violation is not None:
                    return
                reply = await world.request(
                    lambda engine: engine.payouts.create_payout(
                        seller, currency, amount, idempotency_key=key
                    )
                )
                if reply is not None:
                    self._answered(key, seller, reply)
                    return
                await trio.sleep(self._rng.uniform(1.0, REQUEST_RETRY_S_MAX))
            world.note("payout_request_given_up", seller, key)
        finally:
            self.active -= 1

    def _answered(self, key: str, seller: str, reply: Payout | Rejection) -> None:
        world = self.world
        if isinstance(reply, Rejection):
            self.rejected[reply.reason] = self.rejected.get(reply.reason, 0) + 1
            world.note("payout_rejected", seller, reply.reason)
            return
        self.requested += 1
        world.note("payout_requested", seller, reply.payout_id, reply.amount_minor)
        first = self.replies.setdefault(key, reply.payout_id)
        if first != reply.payout_id:
            world.idempotency_breaks.append(
                f"payout key {key}: payout {first}, then payout {reply.payout_id}"
            )

    # --- the provider's notices -----------------------------------------------------------------
    async def _notices(self, nursery: trio.Nursery) -> None:
        assert self.provider is not None
        f, rng = self.world.plan, self._rng_notices
        async for notice in self.provider.notices_receive:
            if notice.kind.value == "payout.returned":
                self.returns_due.discard(notice.reference)
            copies, delay_s = 1, rng.uniform(0.0, 2.0)
            if self.world.faults_on:
                if rng.random() < f.payout_notice_loss_p:
                    delay_s += rng.uniform(60.0, REDELIVERY_S_MAX)
                    self.world.fault("payout_notice_lost", notice.event_id)
                if rng.random() < f.payout_notice_duplicate_p:
                    copies = 2
                    self.world.fault("payout_notice_duplicated", notice.event_id)
                if rng.random() < f.payout_notice_delay_p:
                    delay_s += rng.uniform(0.0, f.payout_notice_delay_s_max)
                    self.world.fault("payout_notice_delayed", notice.event_id)
            for copy in range(copies):
                self.notices_in_flight += 1
                nursery.start_soon(self._deliver, notice, delay_s + copy * rng.uniform(0.0, 5.0))

    async def _deliver(self, notice: PayoutNotification, delay_s: float) -> None:
        world = self.world
        try:
            await trio.sleep(delay_s)
            while True:
                reply = await world.request(lambda engine: engine.payouts.apply_notice(notice))
                if reply is not None:
                    world.note("payout_notice", notice.event_id, notice.kind.value, reply)
                    return
                await trio.sleep(NOTICE_RETRY_S)  # the engine is down: the provider retries
        finally:
            self.notices_in_flight -= 1

    # --- quiescence and the report --------------------------------------------------------------
    def quiet(self) -> bool:
        provider = self.provider
        if provider is None:
            return True
        if self.active or self.notices_in_flight or self.returns_due:
            return False
        tables = getattr(self.world.store, "_t", None)  # None: postgres counts them itself
        if tables is not None and tables.payouts.in_flight:
            return False
        return not any(p.status.value == "pending" for p in provider.payouts.values())

    def committed(self) -> Mapping[str, Payout]:
        """Every committed payout: the memory store's table, or what the postgres tier read
        through the Store port once the world was quiet (`read_payouts`)."""
        if self.final_rows is not None:
            return self.final_rows
        return self.world.store._t.payouts.rows

    def seller_ids(self) -> list[str]:
        return [f"seller-{s:04d}" for s in range(self.world.scenario.traffic.sellers)]

    def paid_out(self) -> dict[str, int]:
        """What the provider paid out and kept paid, per currency (an outside fact)."""
        return {} if self.provider is None else dict(self.provider.paid_total())

    def report(self) -> dict[str, object]:
        rows = self.committed().values()
        statuses: dict[str, int] = {}
        for payout in rows:
            statuses[payout.status.value] = statuses.get(payout.status.value, 0) + 1
        return {
            "scheduled_sellers": len(self.sellers),
            "manual_requests": self._keys,
            "manual_created": self.requested,
            "rejected": dict(sorted(self.rejected.items())),
            "payouts": dict(sorted(statuses.items())),
            "provider_payouts": 0 if self.provider is None else len(self.provider.payouts),
        }


async def _put_schedule(
    seller: str,
    interval: ScheduleInterval,
    delay_days: int,
    minimums: dict[str, int],
    engine: Engine,
) -> PayoutSchedule:
    return await engine.payouts.put_schedule(seller, interval, delay_days, minimums)


def _exp(currency: str) -> int:
    from engine.money import currency_exponent

    return currency_exponent(currency)


# --- the oracle's hooks (simulator/oracle_payouts.py) -------------------------------------------
def check_commit(payouts: SimPayouts, uow: MemoryUnitOfWork) -> list[Violation]:
    """At each commit: its payout announcements and the reserved balance of what it touched."""
    overlay = uow._payouts
    touched = {(p.merchant_id, p.currency) for p in overlay.rows.values()}
    for txn in uow._txns:
        touched.update(txn.wallet_deltas())
    wrote = overlay.rows or any(m.topic.startswith("payout.") for m in uow._outbox)
    if not wrote and (not touched or not payouts.on):
        return []
    table = payouts.world.store._t.payouts
    changed = [(payouts.statuses.get(i), p) for i, p in overlay.rows.items()]
    for payout_id, payout in overlay.rows.items():
        payouts.statuses[payout_id] = payout.status
    found = check_payouts_at_commit(
        changed, uow._outbox, payouts.world.store._t.wallets, table.by_merchant, table.rows, touched
    )
    return [violation(*f) for f in found]


def check_tick(payouts: SimPayouts) -> list[Violation]:
    if payouts.provider is None:
        return []
    found = check_provider_keys(payouts.provider, payouts.world.store._t.payouts.rows)
    return [violation(*f) for f in found]


def judge_payouts(world: SimWorld, snap: Snapshot) -> list[Violation]:
    """The final payout invariants, after quiescence (simulator/runner.py `judge`)."""
    payouts = world.payouts
    if payouts.provider is None:
        return []
    rows = payouts.committed()
    found = check_payouts_final(payouts.provider, world.psp, rows, snap.trial, snap.balances)
    return [violation(*f) for f in found]


def _swarm_payouts_on(seed: int) -> bool:
    """Whether a swarm seed has payouts: half of them, from a stream of its own (so no earlier
    draw of a seed changes)."""
    return stream(seed, "swarm_payouts").random() < 0.5


def swarm_payout_traffic(traffic: Traffic, seed: int) -> Traffic:
    """Swarm testing's draw of payout traffic (simulator/runner.py `swarm_traffic`)."""
    if not _swarm_payouts_on(seed):
        return traffic
    rng = stream(seed, "swarm_payouts_traffic")
    return attrs.evolve(
        traffic,
        payout_scheduled_p=round(rng.uniform(0.2, 1.0), 4),
        payout_weekly_p=round(rng.uniform(0.0, 0.5), 4),
        payout_delay_days=0,
        payout_manual_interval_s=round(rng.uniform(60.0, 1800.0), 1),
        payout_twice_p=round(rng.uniform(0.0, 0.5), 4),
    )


def swarm_payout_faults(faults: Faults, seed: int) -> Faults:
    """Swarm testing's draw of payout provider faults (simulator/runner.py `swarm_faults`)."""
    if not _swarm_payouts_on(seed):
        return faults
    rng = stream(seed, "swarm_payouts_faults")

    def maybe(high: float) -> float:
        return round(rng.uniform(0.0, high), 4) if rng.random() < 0.5 else 0.0

    return attrs.evolve(
        faults,
        payout_unavailable_p=maybe(0.1),
        payout_hang_p=maybe(0.05),
        payout_timeout_after_p=maybe(0.15),
        payout_reject_p=maybe(0.05),
        payout_failed_p=maybe(0.1),
        payout_returned_p=maybe(0.1),
        payout_notice_duplicate_p=maybe(0.3),
        payout_notice_delay_p=maybe(0.2),
        payout_notice_loss_p=maybe(0.2),
    )


async def read_payouts(store: Store, merchant_ids: Iterable[str]) -> dict[str, Payout]:
    """Every payout of these merchants, page by page through the Store port."""
    found: dict[str, Payout] = {}
    for merchant_id in merchant_ids:
        after: str | None = None
        while True:
            page = await store.list_payouts(merchant_id, PAGE_SIZE_MAX, after)
            found.update((p.payout_id, p) for p in page)
            if len(page) < PAGE_SIZE_MAX:
                break
            after = page[-1].payout_id
    return found
