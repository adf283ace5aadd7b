"""A stateful fake payout provider behind the `PayoutGateway` port.

It behaves like a careful real one (Stripe Connect payouts, Adyen payouts): a submit is
idempotent on its key (a repeated key returns the first payout and never pays twice), a
submitted payout is PENDING, and its outcome comes later, asynchronously: PAID, FAILED, or PAID
and then RETURNED by the seller's bank days later. Each outcome is announced as a
`PayoutNotification` on `notices_receive`. With a `FakeBank` attached, a paid payout debits
our account there and a returned one credits it back, so the bank statement shows both.

Faults use the same hooks as the fake PSP: per-operation scripts (`script("submit",
"unavailable")`), a `chooser` the simulator's fault plan drives from its seeded rng, a
`latency`, and an `outcome` callable that decides each payout's fate and when it is known.
The outcomes are delivered by `run`, a long-lived task to start with `nursery.start`.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable

import attrs
import trio

from engine.gateway import GatewayUnavailable
from engine.money import Money
from engine.payout_gateway import (
    PayoutEventKind,
    PayoutNotification,
    PayoutResult,
    ProviderPayoutStatus,
)
from engine.ports import Clock
from simulator.bank import Direction, FakeBank
from simulator.call_faults import before_answer

#: The most payout notices waiting to be read before the provider applies backpressure.
NOTICE_QUEUE_MAX = 100_000
#: Outcomes scheduled but not yet due; a submit beyond this waits (backpressure).
OUTCOMES_PENDING_MAX = 100_000
#: Without an `outcome` hook: every payout is paid after this long (virtual seconds).
PAID_AFTER_S = 3600.0


class PayoutAction(enum.StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # fails before acting (5xx, connection refused)
    TIMEOUT_AFTER = "timeout_after"  # acts (the payout is accepted), then the answer is lost
    HANG = "hang"  # never answers (the caller's timeout fires); does not act
    REJECT = "reject"  # a submit the provider refuses at once (bad destination): FAILED


class PayoutOutcome(enum.StrEnum):
    PAID = "paid"
    FAILED = "failed"
    RETURNED = "returned"  # paid first, returned `returned_after_s` later


@attrs.frozen
class OutcomePlan:
    """One payout's fate: what happens, after how long, and (for a return) how much later."""

    outcome: PayoutOutcome
    after_s: float
    returned_after_s: float = 3 * 86_400.0


@attrs.define
class ProviderPayout:
    payout_id: str
    key: str
    destination: str
    amount: Money
    status: ProviderPayoutStatus
    submitted_at_ms: int
    reason: str | None = None


class FakePayoutProvider:
    def __init__(
        self,
        clock: Clock,
        *,
        bank: FakeBank | None = None,
        bank_account: str | None = None,
        notice_queue_max: int = NOTICE_QUEUE_MAX,
    ) -> None:
        assert (bank is None) == (bank_account is None), "a bank needs our account there"
        self.clock = clock
        self.bank = bank
        self.bank_account = bank_account
        self.payouts: dict[str, ProviderPayout] = {}
        self.submit_calls: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.emitted: list[PayoutNotification] = []
        self._scripts: dict[str, deque[PayoutAction]] = {}
        self._seq = 0
        self.notices_send, self.notices_receive = trio.open_memory_channel[PayoutNotification](
            notice_queue_max
        )
        self._due_send, self._due_receive = trio.open_memory_channel[tuple[str, OutcomePlan]](
            OUTCOMES_PENDING_MAX
        )
        #: Called instead of the built-in script to choose an action (the simulator's plan).
        self.chooser: Callable[[str], PayoutAction] | None = None
        #: Seconds each call takes before the provider acts.
        self.latency: Callable[[str], float] | None = None
        #: Each accepted payout's fate; default: paid after PAID_AFTER_S.
        self.outcome: Callable[[ProviderPayout], OutcomePlan] | None = None
        self.hang_s = 3600.0

    # --- scripting ---------------------------------------------------------------------------
    def script(self, operation: str, *actions: str) -> None:
        self._scripts.setdefault(operation, deque()).extend(PayoutAction(a) for a in actions)

    def _next_action(self, operation: str) -> PayoutAction:
        self.calls[operation] += 1
        script = self._scripts.get(operation)
        if script:
            return script.popleft()
        if self.chooser is not None:
            return self.chooser(operation)
        return PayoutAction.OK

    async def _before(self, action: PayoutAction, operation: str) -> None:
        await before_answer(
            self.latency,
            operation,
            unavailable=action is PayoutAction.UNAVAILABLE,
            hang=action is PayoutAction.HANG,
            hang_s=self.hang_s,
            who="payout provider",
        )

    def _new_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_{self._seq:010d}"

    # --- the PayoutGateway port ----------------------------------------------------------------
    async def submit_payout(
        self, idempotency_key: str, destination: str, amount: Money
    ) -> PayoutResult:
        action = self._next_action("submit")
        self.submit_calls[idempotency_key] += 1
        await self._before(action, "submit")
        assert amount.minor > 0, amount
        existing = self.payouts.get(idempotency_key)
        if existing is None:
            existing = ProviderPayout(
                self._new_id("po"),
                idempotency_key,
                destination,
                amount,
                ProviderPayoutStatus.PENDING,
                self.clock.now_ms(),
            )
            self.payouts[idempotency_key] = existing
            if action is PayoutAction.REJECT:
                existing.status = ProviderPayoutStatus.FAILED
                existing.reason = "destination_refused"
                self._emit(PayoutEventKind.FAILED, existing)
            else:
                plan = (
                    self.outcome(existing)
                    if self.outcome
                    else OutcomePlan(PayoutOutcome.PAID, PAID_AFTER_S)
                )
                await self._due_send.send((idempotency_key, plan))
        await trio.lowlevel.checkpoint()
        if action is PayoutAction.TIMEOUT_AFTER:
            raise GatewayUnavailable("the provider accepted the payout but the answer was lost")
        return PayoutResult(existing.status, existing.payout_id, existing.reason)

    async def query_payout(self, idempotency_key: str) -> PayoutResult:
        await self._before(self._next_action("query"), "query")
        existing = self.payouts.get(idempotency_key)
        if existing is None:
            return PayoutResult(ProviderPayoutStatus.NOT_FOUND)
        return PayoutResult(existing.status, existing.payout_id, existing.reason)

    # --- outcomes, asynchronously ---------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver every scheduled outcome when it is due. Never returns."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for key, plan in self._due_receive:
                nursery.start_soon(self._settle, key, plan)
        raise AssertionError("the payout provider's run never returns")

    async def _settle(self, key: str, plan: OutcomePlan) -> None:
        await trio.sleep(plan.after_s)
        payout = self.payouts[key]
        assert payout.status is ProviderPayoutStatus.PENDING, payout
        if plan.outcome is PayoutOutcome.FAILED:
            payout.status = ProviderPayoutStatus.FAILED
            payout.reason = "account_closed"
            self._emit(PayoutEventKind.FAILED, payout)
            return
        payout.status = ProviderPayoutStatus.PAID
        self._book(payout, Direction.DEBIT, "payout")
        self._emit(PayoutEventKind.PAID, payout)
        if plan.outcome is PayoutOutcome.RETURNED:
            await trio.sleep(plan.returned_after_s)
            payout.status = ProviderPayoutStatus.RETURNED
            payout.reason = "returned_by_bank"
            self._book(payout, Direction.CREDIT, "payout returned")
            self._emit(PayoutEventKind.RETURNED, payout)

    def _book(self, payout: ProviderPayout, direction: Direction, remittance: str) -> None:
        if self.bank is None or self.bank_account is None:
            return
        self.bank.post(
            self._account_of(payout.amount.currency),
            direction,
            payout.amount,
            at_ms=self.clock.now_ms(),
            counterparty=payout.payout_id,
            remittance=f"{remittance} {payout.key}",
        )

    def _account_of(self, currency: str) -> str:
        """Our account in `currency` at the bank: `bank_account` itself when it is one in that
        currency (or not opened yet), else `<bank_account>_<currency>`, opened on first use."""
        assert self.bank is not None and self.bank_account is not None
        base = self.bank.accounts.get(self.bank_account)
        if base is None:
            self.bank.open_account(self.bank_account, currency)
            return self.bank_account
        if base.currency == currency:
            return self.bank_account
        account = f"{self.bank_account}_{currency.lower()}"
        if account not in self.bank.accounts:
            self.bank.open_account(account, currency)
        return account

    def _emit(self, kind: PayoutEventKind, payout: ProviderPayout) -> None:
        notice = PayoutNotification(
            self._new_id("evt"),
            kind,
            payout.key,
            payout.payout_id,
            self.clock.now_ms(),
            payout.reason,
        )
        self.emitted.append(notice)
        self.notices_send.send_nowait(notice)

    # --- what the provider's books show ---------------------------------------------------------
    def paid_total(self) -> Counter[str]:
        """Money that left and stayed out (PAID), per currency, in minor units."""
        totals: Counter[str] = Counter()
        for payout in self.payouts.values():
            if payout.status is ProviderPayoutStatus.PAID:
                totals[payout.amount.currency] += payout.amount.minor
        return totals
