"""`PayoutService`: the engine's payout face (the API and the simulator call it), its
scheduler task and its recovery.

Requests go to the merchant actor of their merchant (actors/merchant.py), which decides them
one at a time. Provider notices name our payout id: they are routed to its merchant's actor
and recorded by event id in the same unit of work as their effect; a notice for no payout of
ours is kept and changes nothing.

The scheduler is one task of the engine: every `payout_schedule_interval_s` (virtual time in
the simulator, real time in `payengine serve`) it pages through the daily and weekly schedules
and tells each merchant's actor to make this period's payouts (idempotent: one creation key per
merchant, currency and period, so looking twice in one period pays once).
"""

from __future__ import annotations

import functools
import logging

import trio

from actors.context import Context
from actors.payout_messages import (
    MERCHANT,
    ApplyPayoutNotice,
    CreatePayout,
    QueryPayout,
    RunSchedule,
    TakeFromWallet,
)
from actors.service import Rejection
from actors.store_retry import when_store_answers
from engine.errors import DuplicateKey, InvalidInput
from engine.ledger import Transaction, TransactionKind
from engine.money import AMOUNT_MINOR_MAX, Money, currency_exponent
from engine.payout_gateway import PayoutNotification
from engine.payouts import PayoutSchedule, ScheduleInterval
from engine.records import Payout

log = logging.getLogger("payengine.payouts")

#: The longest merchant id and creation key we accept (as the other external ids).
MERCHANT_ID_LENGTH_MAX = 128
CREATION_KEY_LENGTH_MAX = 257
#: The longest payout delay a schedule may set (the database's check agrees).
PAYOUT_DELAY_DAYS_MAX = 365


def _check_merchant_id(merchant_id: object) -> str:
    if (
        not isinstance(merchant_id, str)
        or not merchant_id
        or len(merchant_id) > MERCHANT_ID_LENGTH_MAX
        or "\x00" in merchant_id
    ):
        raise InvalidInput(
            f"merchant_id must be a string of 1..{MERCHANT_ID_LENGTH_MAX} characters"
        )
    return merchant_id


class PayoutService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def create_payout(
        self,
        merchant_id: str,
        currency: str,
        amount_minor: int | None,
        *,
        idempotency_key: str | None = None,
    ) -> Payout | Rejection:
        """Pay `amount_minor` (None: all that is payoutable) of the merchant's wallet in
        `currency`, once per `idempotency_key` (namespaced by the caller). Rejections:
        merchant_not_found, payout_currency_mismatch, payout_amount_not_positive,
        payout_exceeds_available, creation_key_reused."""
        _check_merchant_id(merchant_id)
        currency_exponent(currency)
        if amount_minor is not None and (
            isinstance(amount_minor, bool) or not isinstance(amount_minor, int)
        ):
            raise InvalidInput("payout amount must be an integer of minor units")
        if amount_minor is not None and amount_minor > AMOUNT_MINOR_MAX:
            raise InvalidInput("payout amount exceeds the amount limit")
        key = self.ctx.ids.new("key") if idempotency_key is None else idempotency_key
        if not key or len(key) > CREATION_KEY_LENGTH_MAX:
            raise InvalidInput(f"idempotency key must be 1..{CREATION_KEY_LENGTH_MAX} characters")
        if self.ctx.payout_gateway is None:
            return Rejection("payouts_not_configured", "this engine has no payout provider")
        if not await self.merchant_exists(merchant_id):
            return Rejection("merchant_not_found", f"no merchant {merchant_id}")
        reply = await self.ctx.system.ask(
            MERCHANT, merchant_id, CreatePayout(key, currency, amount_minor)
        )
        assert isinstance(reply, Payout | Rejection), reply
        return reply

    async def merchant_exists(self, merchant_id: str) -> bool:
        """A merchant is known once it has a wallet (it sold something) or a schedule."""
        if await self.ctx.store.list_balances(merchant_id):
            return True
        return await self.ctx.store.get_payout_schedule(merchant_id) is not None

    async def get_payout(self, payout_id: str) -> Payout | None:
        return await self.ctx.store.get_payout(payout_id)

    async def list_payouts(
        self, merchant_id: str, limit: int, after: str | None = None
    ) -> list[Payout]:
        """The merchant's payouts, ascending id, at most `limit` (1..1000) after `after`."""
        return await self.ctx.store.list_payouts(merchant_id, limit, after)

    async def put_schedule(
        self,
        merchant_id: str,
        interval: ScheduleInterval,
        delay_days: int,
        minimums: dict[str, int],
    ) -> PayoutSchedule:
        _check_merchant_id(merchant_id)
        if isinstance(delay_days, bool) or not 0 <= delay_days <= PAYOUT_DELAY_DAYS_MAX:
            raise InvalidInput(f"delay_days must be within 0..{PAYOUT_DELAY_DAYS_MAX}")
        schedule = PayoutSchedule.of(
            merchant_id, interval, delay_days, minimums, self.ctx.clock.now_ms()
        )
        async with self.ctx.store.unit_of_work() as uow:
            await uow.put_payout_schedule(schedule)
        return schedule

    async def get_schedule(self, merchant_id: str) -> PayoutSchedule | None:
        return await self.ctx.store.get_payout_schedule(merchant_id)

    async def apply_notice(self, notice: PayoutNotification) -> str:
        """Record and apply a payout provider's notice: 'applied', 'duplicate', 'ignored' or
        'unknown_reference' (recorded, changes nothing)."""
        payout = await self.ctx.store.get_payout(notice.reference)
        if payout is not None:
            reply = await self.ctx.system.ask(
                MERCHANT, payout.merchant_id, ApplyPayoutNotice(notice)
            )
            assert isinstance(reply, str)
            return reply
        try:
            async with self.ctx.store.unit_of_work() as uow:
                await uow.record_payout_event(
                    notice.event_id, notice.kind.value, notice.reference, self.ctx.clock.now_ms()
                )
        except DuplicateKey as exc:
            if exc.key != "payout_events.event_id":
                raise
            return "duplicate"
        log.warning("payout notice %s for unknown payout %s", notice.event_id, notice.reference)
        return "unknown_reference"

    async def take_from_wallet(
        self,
        merchant_id: str,
        kind: TransactionKind,
        reference: str,
        amount: Money,
        counter_account: str,
        description: str = "",
    ) -> Transaction:
        """Take `amount` from the merchant's wallet under the wallet policy (the platform
        covers, the seller owes), decided by its merchant actor one after its payouts."""
        reply = await self.ctx.system.ask(
            MERCHANT,
            merchant_id,
            TakeFromWallet(kind, reference, amount, counter_account, description),
        )
        assert isinstance(reply, Transaction), reply
        return reply

    # --- recovery and the scheduler ------------------------------------------------------------
    async def recover(self) -> int:
        """Hand every payout in flight to its merchant's actor, which asks the provider by key
        first (and submits on NOT_FOUND)."""
        recovered = 0
        after: str | None = None
        while True:
            page = await when_store_answers(
                self.ctx.config,
                "payout recovery",
                functools.partial(
                    self.ctx.store.list_unfinished_payouts,
                    self.ctx.config.recovery_batch_size_max,
                    after,
                ),
            )
            if not page:
                return recovered
            for payout in page:
                await self.ctx.system.tell(
                    MERCHANT, payout.merchant_id, QueryPayout(payout.payout_id)
                )
                recovered += 1
            after = page[-1].payout_id

    async def run_scheduler(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Every `payout_schedule_interval_s`, tell each scheduled merchant to look. Never
        returns (cancelled with the engine)."""
        task_status.started()
        while True:
            await trio.sleep(self.ctx.config.payout_schedule_interval_s)
            await self.run_schedules_once()

    async def run_schedules_once(self) -> int:
        told = 0
        after: str | None = None
        while True:
            page = await when_store_answers(
                self.ctx.config,
                "payout scheduler",
                functools.partial(
                    self.ctx.store.list_payout_schedules,
                    self.ctx.config.recovery_batch_size_max,
                    after,
                ),
            )
            if not page:
                return told
            for schedule in page:
                await self.ctx.system.tell(MERCHANT, schedule.merchant_id, RunSchedule())
                told += 1
            after = page[-1].merchant_id
