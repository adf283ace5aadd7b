"""The merchant actor: one per merchant, keyed by its id, the only decider of its payouts.

Why one per merchant: it is the only spender of the seller's wallet. A refund or a lost
chargeback records the seller's share as a debt and asks `SettleDebts` (actors/debts.py);
payouts settle debts first in their own unit. One message at a time: two payouts (or a payout
and a debt) are decided one after the other, each seeing the other's effect, so they never
spend the same money (the database's non-negative check is the last line, not the mechanism).

A payout is two-phase, like a card authorization or TigerBeetle's pending transfer
(engine/states.py: FUNDS_RESERVED -> SUBMITTED -> PAID | FAILED, PAID -> RETURNED):

- Creation decides and reserves in ONE unit of work: the payout row (REQUESTED -> FUNDS_RESERVED
  in that unit, so no payout is ever seen requested without its money reserved), the reserve
  transaction (available -> reserved, `payout_reserve_entries`) and `payout.funds_reserved`.
  A refused request writes nothing.
- The payout id is the provider's idempotency key: every submit, first or retried, after a
  timeout or a crash, is the same payout there. A timeout is not a failure: the payout stays
  as it is and the submit is retried with backoff under the same key; after
  `payout_attempts_max` unknown outcomes it only asks the provider by key, every
  `payout_poll_interval_s`. It never becomes FAILED on silence.
- The provider's word (its answer, a query, or a notice recorded by event id in the same unit
  of work) moves it along, one outbox message per status: SUBMITTED; PAID posts
  `payout_post_entries` (reserved -> out of our bank account); FAILED posts
  `payout_void_entries` (reserved -> available); RETURNED (a bank return, days after PAID)
  posts `payout_return_entries` (back into our account and the seller's available balance).
  Notices may come in any order: a RETURNED heard before PAID applies both, a PAID heard after
  RETURNED is kept and changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from actors.context import Context
from actors.debts import settle_debt, settle_debts
from actors.payout_messages import (
    MERCHANT,
    ApplyPayoutNotice,
    AttemptPayout,
    CreatePayout,
    QueryPayout,
    RunSchedule,
    SettleDebts,
    TakeFromWallet,
    payout_payload,
)
from actors.service import Rejection
from engine.errors import DuplicateKey
from engine.gateway import GatewayUnavailable
from engine.ledger import (
    BANK_CASH,
    Entry,
    Transaction,
    TransactionKind,
    merchant_payable,
    payout_post_entries,
    payout_reserve_entries,
    payout_return_entries,
    payout_void_entries,
)
from engine.payout_gateway import PayoutResult, ProviderPayoutStatus
from engine.payouts import (
    NOTICE_WORD,
    PROVIDER_WORD,
    PayoutSchedule,
    payoutable_minor,
    pending_since_ms,
    period_key,
    scheduled_creation_key,
    steps_to,
    take_from_wallet_entries,
)
from engine.records import OutboxMessage, Payout, evolve
from engine.states import PayoutStatus, transition
from engine.store.port import UnitOfWork

log = logging.getLogger("payengine.merchant")

PO = PayoutStatus
PAYOUT_TOPICS = (
    "payout.funds_reserved",
    "payout.submitted",
    "payout.paid",
    "payout.failed",
    "payout.returned",
)


def payout_rejection(
    command: CreatePayout, payoutable: int, knows_currency: bool, minimum: int
) -> tuple[int, Rejection | None]:
    """The amount to pay out, or why the payout is refused: a pure decision."""
    if not knows_currency:
        return 0, Rejection(
            "payout_currency_mismatch", f"the merchant has no balance in {command.currency}"
        )
    if command.amount_minor is not None and command.amount_minor <= 0:
        return 0, Rejection("payout_amount_not_positive", "a payout amount must be positive")
    amount = payoutable if command.amount_minor is None else command.amount_minor
    if amount > payoutable or amount <= 0:
        return 0, Rejection(
            "payout_exceeds_available",
            f"{payoutable} minor units of {command.currency} are available to pay out, "
            f"not {amount}",
        )
    if amount < minimum:
        return 0, Rejection("payout_below_minimum", f"{amount} is below the minimum {minimum}")
    return amount, None


class MerchantActor:
    def __init__(self, ctx: Context, merchant_id: str) -> None:
        self.ctx = ctx
        self.merchant_id = merchant_id
        #: Set once the payout it last handled rests, so the runtime passivates it at once.
        self.finished = False

    async def on_start(self) -> None:
        """Holds no state between messages: each reads what it needs in its unit of work."""

    async def receive(self, message: Any) -> Any:
        self.finished = False
        if isinstance(message, CreatePayout):
            return await self._create(message)
        if isinstance(message, AttemptPayout):
            return await self._attempt(message.payout_id)
        if isinstance(message, QueryPayout):
            return await self._query(message.payout_id)
        if isinstance(message, ApplyPayoutNotice):
            return await self._apply_notice(message)
        if isinstance(message, RunSchedule):
            return await self._run_schedule()
        if isinstance(message, TakeFromWallet):
            return await self._take(message)
        if isinstance(message, SettleDebts):  # a refund or lost dispute recorded a debt
            return await settle_debts(self.ctx, self.merchant_id, message.currency)
        raise AssertionError(f"merchant actor got {message!r}")

    # --- creation: decide and reserve in one unit of work ------------------------------------
    async def _create(self, command: CreatePayout, minimum: int = 1) -> Payout | Rejection:
        ctx = self.ctx
        try:
            async with ctx.store.unit_of_work() as uow:
                existing = await uow.get_payout_by_creation_key(command.creation_key)
                if existing is not None:
                    return self._same_request(existing, command)
                if "debt_not_collected_before_payout" not in ctx.faults:  # planted bug seam
                    await settle_debt(ctx, uow, self.merchant_id, command.currency)  # owed first
                balance = await uow.get_balance(self.merchant_id, command.currency)
                payoutable = await self._payoutable(uow, command.currency, balance.available_minor)
                knows = bool(balance.available_minor or balance.reserved_minor) or any(
                    b.currency == command.currency
                    for b in await ctx.store.list_balances(self.merchant_id)
                )
                amount, rejection = payout_rejection(command, payoutable, knows, minimum)
                if rejection is not None:
                    return rejection
                now_ms = ctx.clock.now_ms()
                payout = Payout(
                    payout_id=ctx.ids.new("po"),
                    merchant_id=self.merchant_id,
                    currency=command.currency,
                    amount_minor=amount,
                    status=transition(PO.REQUESTED, PO.FUNDS_RESERVED),
                    created_at_ms=now_ms,
                    updated_at_ms=now_ms,
                    creation_key=command.creation_key,
                    trigger=command.trigger,
                )
                await uow.insert_payout(payout)
                entries = payout_reserve_entries(self.merchant_id, payout.amount)
                await uow.post_transaction(
                    self._txn(TransactionKind.PAYOUT_RESERVE, payout, entries, "payout reserved")
                )
                await uow.append_outbox(self._message("payout.funds_reserved", payout))
        except DuplicateKey as exc:
            if exc.key != "payouts.creation_key":
                raise
            async with ctx.store.unit_of_work() as uow:  # another merchant took this key first
                taken = await uow.get_payout_by_creation_key(command.creation_key)
            assert taken is not None, command
            return self._same_request(taken, command)
        ctx.doorbell.ring(("payout.funds_reserved",))
        self._later(0.0, AttemptPayout(payout.payout_id))
        return payout

    async def _payoutable(self, uow: UnitOfWork, currency: str, available_minor: int) -> int:
        schedule = await uow.get_payout_schedule(self.merchant_id)
        delay_days = (
            self.ctx.config.payout_delay_days_default if schedule is None else schedule.delay_days
        )
        pending = 0
        if delay_days and available_minor:
            since_ms = pending_since_ms(self.ctx.clock.now_ms(), delay_days)
            pending = await uow.pending_capture_minor(self.merchant_id, currency, since_ms)
        return payoutable_minor(available_minor, pending)

    def _same_request(self, existing: Payout, command: CreatePayout) -> Payout | Rejection:
        same = (
            existing.merchant_id == self.merchant_id
            and existing.currency == command.currency
            and command.amount_minor in (None, existing.amount_minor)
        )
        if not same:
            return Rejection(
                "creation_key_reused",
                f"payout {existing.payout_id} was created with this key for another request",
            )
        return existing

    async def _run_schedule(self) -> int:
        """Make this period's scheduled payouts (one per currency, by its creation key)."""
        schedule: PayoutSchedule | None = await self.ctx.store.get_payout_schedule(self.merchant_id)
        period = (
            None if schedule is None else period_key(schedule.interval, self.ctx.clock.now_ms())
        )
        if schedule is None or period is None:
            return 0
        made = 0
        for balance in await self.ctx.store.list_balances(self.merchant_id):
            if balance.available_minor <= 0:
                continue
            key = scheduled_creation_key(self.merchant_id, balance.currency, period)
            reply = await self._create(
                CreatePayout(key, balance.currency, None, "scheduled"),
                minimum=schedule.minimum_minor(balance.currency),
            )
            made += isinstance(reply, Payout) and reply.creation_key == key
        self.finished = True
        return made

    # --- the provider call -------------------------------------------------------------------
    def _key(self, payout: Payout) -> str:
        if "payout_key_regenerated_on_retry" in self.ctx.faults and payout.attempts > 0:
            return self.ctx.ids.new("key")  # planted bug, test-only seam
        return payout.payout_id

    async def _attempt(self, payout_id: str) -> str:
        payout = await self._mine(payout_id)
        if payout is None:
            return "unknown_payout"
        if payout.status is not PO.FUNDS_RESERVED:
            return payout.status.value
        gateway = self.ctx.payout_gateway
        assert gateway is not None, "payouts need a payout gateway"
        try:
            with trio.fail_after(self.ctx.config.payout_call_timeout_s):
                result = await gateway.submit_payout(
                    self._key(payout), f"merchant:{self.merchant_id}", payout.amount
                )
        except (GatewayUnavailable, trio.TooSlowError) as exc:
            return await self._outcome_unknown(payout, repr(exc))
        return await self._settle(payout, result, None)

    async def _query(self, payout_id: str) -> str:
        payout = await self._mine(payout_id)
        if payout is None:
            return "unknown_payout"
        if payout.status not in (PO.FUNDS_RESERVED, PO.SUBMITTED):
            self.finished = True
            return payout.status.value
        gateway = self.ctx.payout_gateway
        assert gateway is not None, "payouts need a payout gateway"
        try:
            with trio.fail_after(self.ctx.config.payout_call_timeout_s):
                result = await gateway.query_payout(payout.payout_id)
        except (GatewayUnavailable, trio.TooSlowError):
            delay_s = min(
                self.ctx.backoff_s(payout.attempts + 1), self.ctx.config.payout_poll_interval_s
            )
            self._later(delay_s, QueryPayout(payout_id))
            return "unknown"
        if result.status is ProviderPayoutStatus.NOT_FOUND:
            if payout.status is PO.FUNDS_RESERVED:  # it never arrived: submitting now is safe
                self._later(0.0, AttemptPayout(payout_id))
            else:  # the provider accepted it once: ask again, a person may look meanwhile
                log.error("payout %s is SUBMITTED but unknown to the provider", payout_id)
                self._later(self.ctx.config.payout_poll_interval_s, QueryPayout(payout_id))
            return "not_found"
        return await self._settle(payout, result, None)

    async def _outcome_unknown(self, payout: Payout, error: str) -> str:
        async with self.ctx.store.unit_of_work() as uow:
            payout = await uow.update_payout(
                evolve(payout, attempts=payout.attempts + 1, updated_at_ms=self.ctx.clock.now_ms())
            )
        log.info(
            "payout %s outcome unknown (attempt %d): %s", payout.payout_id, payout.attempts, error
        )
        if payout.attempts < self.ctx.config.payout_attempts_max:
            self._later(self.ctx.backoff_s(payout.attempts), AttemptPayout(payout.payout_id))
        else:
            self._later(self.ctx.config.payout_poll_interval_s, QueryPayout(payout.payout_id))
        return "unknown"

    # --- the provider's word -----------------------------------------------------------------
    async def _apply_notice(self, message: ApplyPayoutNotice) -> str:
        notice = message.notice
        payout = await self._mine(notice.reference)
        result = PayoutResult(NOTICE_WORD[notice.kind], notice.payout_id, notice.reason)
        if payout is None:
            return await self._record_only(notice.event_id, notice.kind.value, notice.reference)
        return await self._settle(payout, result, (notice.event_id, notice.kind.value))

    async def _settle(
        self, payout: Payout, result: PayoutResult, event: tuple[str, str] | None
    ) -> str:
        """Walk the payout to the provider's word in one unit of work, one message a step."""
        if result.status is ProviderPayoutStatus.NOT_FOUND:
            return "not_found"
        steps = steps_to(payout.status, PROVIDER_WORD[result.status])
        if not steps:
            if steps is None:
                log.error(
                    "provider says %s of payout %s (%s)",
                    result.status,
                    payout.payout_id,
                    payout.status,
                )
            if event is not None:
                return await self._record_only(event[0], event[1], payout.payout_id)
            if payout.status is PO.SUBMITTED:
                self._later(self.ctx.config.payout_poll_interval_s, QueryPayout(payout.payout_id))
            self.finished = payout.status not in (PO.FUNDS_RESERVED, PO.SUBMITTED)
            return payout.status.value
        try:
            async with self.ctx.store.unit_of_work() as uow:
                if event is not None:
                    await uow.record_payout_event(
                        event[0], event[1], payout.payout_id, self.ctx.clock.now_ms()
                    )
                for step in steps:
                    payout = await self._step(uow, payout, step, result)
        except DuplicateKey as exc:
            if exc.key != "payout_events.event_id":
                raise
            return "duplicate"
        self.ctx.doorbell.ring(tuple(f"payout.{s.value.lower()}" for s in steps))
        if payout.status is PO.SUBMITTED:  # its notice says when it ends; ask too, if lost
            self._later(self.ctx.config.payout_poll_interval_s, QueryPayout(payout.payout_id))
        else:
            self.finished = True
        return "applied" if event is not None else payout.status.value

    async def _step(
        self, uow: UnitOfWork, payout: Payout, target: PayoutStatus, result: PayoutResult
    ) -> Payout:
        updated = await uow.update_payout(
            evolve(
                payout,
                status=transition(payout.status, target),
                provider_ref=result.payout_id or payout.provider_ref,
                failure_reason=result.reason if target in (PO.FAILED, PO.RETURNED) else None,
                updated_at_ms=self.ctx.clock.now_ms(),
            )
        )
        entries: tuple[Entry, ...] = ()
        kind = TransactionKind.PAYOUT_POST
        if target is PO.PAID:
            entries = payout_post_entries(self.merchant_id, payout.amount)
        elif target is PO.FAILED:
            kind, entries = (
                TransactionKind.PAYOUT_VOID,
                payout_void_entries(self.merchant_id, payout.amount),
            )
            if "payout_void_without_reserve" in self.ctx.faults:  # planted bug, test-only seam
                entries = (
                    Entry.debit(BANK_CASH, payout.amount),
                    Entry.credit(merchant_payable(self.merchant_id), payout.amount),
                )
        elif target is PO.RETURNED:
            kind, entries = (
                TransactionKind.PAYOUT_RETURN,
                payout_return_entries(self.merchant_id, payout.amount),
            )
            if "returned_payout_not_credited" in self.ctx.faults:  # planted bug, test-only seam
                entries = ()
        if entries:
            await uow.post_transaction(
                self._txn(kind, payout, entries, f"payout {target.value.lower()}")
            )
        if target in (PO.FAILED, PO.RETURNED):  # money back in the wallet: the debt first
            await settle_debt(self.ctx, uow, self.merchant_id, payout.currency)
        await uow.append_outbox(self._message(f"payout.{target.value.lower()}", updated))
        return updated

    async def _record_only(self, event_id: str, kind: str, payout_id: str) -> str:
        """A late, duplicate or foreign notice: keep it (dedup by event id), change nothing."""
        try:
            async with self.ctx.store.unit_of_work() as uow:
                await uow.record_payout_event(event_id, kind, payout_id, self.ctx.clock.now_ms())
        except DuplicateKey as exc:
            if exc.key != "payout_events.event_id":
                raise
            return "duplicate"
        self.finished = True
        return "ignored"

    # --- other flows take money from the wallet ----------------------------------------------
    async def _take(self, command: TakeFromWallet) -> Transaction:
        async with self.ctx.store.unit_of_work() as uow:
            posted = await uow.get_transaction_by_reference(command.kind, command.reference)
            if posted is not None:
                return posted
            balance = await uow.get_balance(self.merchant_id, command.amount.currency)
            entries = take_from_wallet_entries(
                self.merchant_id, command.amount, balance.available_minor, command.counter_account
            )
            txn = Transaction(
                txn_id=self.ctx.ids.new("txn"),
                kind=command.kind,
                reference=command.reference,
                entries=entries,
                created_at_ms=self.ctx.clock.now_ms(),
                description=command.description,
            )
            await uow.post_transaction(txn)
        self.finished = True
        return txn

    # --- helpers -----------------------------------------------------------------------------
    async def _mine(self, payout_id: str) -> Payout | None:
        payout = await self.ctx.store.get_payout(payout_id)
        return payout if payout is not None and payout.merchant_id == self.merchant_id else None

    def _txn(
        self, kind: TransactionKind, payout: Payout, entries: Any, description: str
    ) -> Transaction:
        return Transaction(
            txn_id=self.ctx.ids.new("txn"),
            kind=kind,
            reference=payout.payout_id,
            entries=tuple(entries),
            created_at_ms=self.ctx.clock.now_ms(),
            description=description,
        )

    def _message(self, topic: str, payout: Payout) -> OutboxMessage:
        return self.ctx.message(topic, payout.payout_id, payout_payload(payout))

    def _later(self, delay_s: float, message: Any) -> None:
        self.ctx.tell_later(delay_s, MERCHANT, self.merchant_id, message)
