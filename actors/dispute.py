"""Disputes (chargebacks): recorded by the refund actor of the disputed order.

Why the refund actor (kind `refund`, keyed by the order id): a dispute and a refund of one
order both give the order's money back, so deciding them one after the other in one actor
keeps them from racing each other (a refund is refused once the order is disputed,
actors/refund.py). This module holds the dispute half so refund.py stays small; the actor
delegates `ApplyDisputeEvent` and `QueryDispute` here.

A dispute is born at the PSP. Its first word (`charge.dispute.created`, `funds_withdrawn`,
`closed` or `funds_reinstated`, in any order, duplicated) records it OPEN and posts the
chargeback: the PSP withdrew the amount (Dr chargebacks / Cr psp_clearing). The close moves it
OPEN -> WON | LOST (engine/states.py) in one unit of work with its posting:

- WON (`closed` with status won, or `funds_reinstated`): the PSP gives the amount back,
  Dr psp_clearing / Cr chargebacks (`chargeback_reinstated_entries`).
- LOST (`closed` with status lost): recovered from the seller by the refund wallet policy
  ("the platform covers, the seller owes"; `chargeback_recovery_entries`): the seller's whole
  net share is recorded as its debt (`merchant_receivable:<id>`), the platform gives back its
  commission; Cr chargebacks. After the commit the seller's merchant actor takes the debt from
  its wallet as far as it goes (actors/debts.py): only that actor spends a wallet.

Every step is one unit of work holding the PSP event (deduplicated by event id), the dispute
row, its ledger transaction and an outbox message (`dispute.created`, `dispute.won`,
`dispute.lost`), so a closed-before-created sequence ends exactly as created-then-closed. An
OPEN dispute asks the PSP for its status every `dispute_poll_interval_s` in case its close is
lost; recovery starts that question for every OPEN dispute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import trio

from actors.context import Context
from actors.debts import ask_settle
from actors.messages import REFUND, ApplyDisputeEvent, QueryDispute
from engine.errors import DuplicateKey
from engine.gateway import (
    DisputeResult,
    GatewayUnavailable,
    PspDisputeStatus,
    PspEventKind,
    PspNotification,
)
from engine.ledger import (
    Entry,
    Transaction,
    TransactionKind,
    chargeback_entries,
    chargeback_recovery_entries,
    chargeback_reinstated_entries,
)
from engine.money import currency_exponent
from engine.records import Dispute, OutboxMessage, PaymentOrder, PspEvent, evolve
from engine.states import DisputeStatus, OrderStatus, is_terminal, transition
from engine.store.port import UnitOfWork

log = logging.getLogger("payengine.dispute")

DISPUTE_TOPICS = ("dispute.created", "dispute.won", "dispute.lost")
#: The PSP contradicts a closed dispute (won, then lost): a person must look.
DISPUTE_ALERT = "dispute.conflicting_psp_event"

_CLOSED = {PspDisputeStatus.WON: DisputeStatus.WON, PspDisputeStatus.LOST: DisputeStatus.LOST}


@attrs.frozen
class DisputeWord:
    """What the PSP said of one dispute (an event or the answer to a query), normalized."""

    dispute_id: str
    capture_id: str
    amount_minor: int
    currency: str
    target: DisputeStatus
    reason: str | None = None


def word_of_event(event: PspNotification) -> DisputeWord | None:
    """The dispute event as a `DisputeWord`; None when it lacks what a dispute needs."""
    if event.kind is PspEventKind.DISPUTE_FUNDS_REINSTATED:
        target = DisputeStatus.WON
    elif event.kind is PspEventKind.DISPUTE_CLOSED:
        try:
            said = PspDisputeStatus(event.dispute_status or "")
        except ValueError:
            return None
        target = _CLOSED.get(said, DisputeStatus.OPEN)
    else:
        target = DisputeStatus.OPEN
    return _word(
        event.dispute_id, event.capture_id, event.amount_minor, event.currency, target, event.reason
    )


def word_of_result(result: DisputeResult) -> DisputeWord | None:
    if result.status is PspDisputeStatus.NOT_FOUND:
        return None
    target = _CLOSED.get(result.status, DisputeStatus.OPEN)
    return _word(
        result.dispute_id,
        result.capture_id,
        result.amount_minor,
        result.currency,
        target,
        result.reason,
    )


def _word(
    dispute_id: str | None,
    capture_id: str | None,
    amount_minor: int | None,
    currency: str | None,
    target: DisputeStatus,
    reason: str | None,
) -> DisputeWord | None:
    if not dispute_id or not capture_id or currency is None:
        return None
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        return None
    try:
        currency_exponent(currency)
    except Exception:
        return None
    return DisputeWord(dispute_id, capture_id, amount_minor, currency, target, reason)


def dispute_mismatch(order: PaymentOrder, word: DisputeWord) -> str | None:
    """Why the PSP's dispute cannot be of this captured order, or None."""
    if word.currency != order.currency:
        return f"dispute {word.dispute_id} is in {word.currency}, order in {order.currency}"
    if word.amount_minor > order.amount_minor:
        return f"dispute {word.dispute_id} of {word.amount_minor} exceeds the order's capture"
    if order.psp_capture_id is not None and word.capture_id != order.psp_capture_id:
        return f"dispute {word.dispute_id} is on capture {word.capture_id}, not the order's"
    return None


class DisputeHandler:
    """The dispute half of one order's refund actor (one message at a time, like it)."""

    def __init__(self, ctx: Context, order_id: str, finished: Callable[[bool], None]) -> None:
        self.ctx = ctx
        self.order_id = order_id
        self._finished = finished

    async def receive(self, message: ApplyDisputeEvent | QueryDispute) -> str:
        if isinstance(message, ApplyDisputeEvent):
            return await self._apply_event(message.event)
        return await self._query(message.dispute_id)

    # --- the PSP's word ------------------------------------------------------------------------
    async def _apply_event(self, event: PspNotification) -> str:
        word = word_of_event(event)
        order = await self.ctx.store.get_order(self.order_id)
        if word is None or order is None:
            return await self._record_unknown(event)
        if order.status is not OrderStatus.SUCCESS or not order.booked:
            # The PSP disputes only captures: ours is not recorded yet (its answer and webhook
            # are late). Nothing is recorded, so the PSP delivers the event again.
            return "retry_later"
        mismatch = dispute_mismatch(order, word)
        if mismatch is not None:
            log.error("PSP event %s: %s", event.event_id, mismatch)
            return await self._record_unknown(event)
        return await self._settle(order, word, event)

    async def _query(self, dispute_id: str) -> str:
        ctx = self.ctx
        dispute = await ctx.store.get_dispute(dispute_id)
        if dispute is None:
            # Reconciliation found a dispute of this order we never heard of (its webhooks
            # lost): the PSP's answer records it, as its first event would have.
            return await self._query_unheard(dispute_id)
        if dispute.order_id != self.order_id:
            return "unknown_dispute"
        if is_terminal(dispute.status):
            self._finished(True)
            return dispute.status.value
        try:
            with trio.fail_after(ctx.config.psp_call_timeout_s):
                result = await ctx.gateway.query_dispute(dispute_id)
        except (GatewayUnavailable, trio.TooSlowError):
            self._poll_later(dispute_id)
            return "unknown"
        word = word_of_result(result)
        order = await ctx.store.get_order(self.order_id)
        assert order is not None, dispute
        if word is None or word.target is DisputeStatus.OPEN:
            self._poll_later(dispute_id)
            return "open" if word is not None else "not_found"
        return await self._settle(order, word, None)

    async def _query_unheard(self, dispute_id: str) -> str:
        ctx = self.ctx
        try:
            with trio.fail_after(ctx.config.psp_call_timeout_s):
                result = await ctx.gateway.query_dispute(dispute_id)
        except (GatewayUnavailable, trio.TooSlowError):
            return "unknown"
        word = word_of_result(result)
        order = await ctx.store.get_order(self.order_id)
        if word is None or order is None or order.status is not OrderStatus.SUCCESS:
            return "unknown_dispute"
        if not order.booked or dispute_mismatch(order, word) is not None:
            return "unknown_dispute"
        return await self._settle(order, word, None)

    async def _settle(
        self, order: PaymentOrder, word: DisputeWord, event: PspNotification | None
    ) -> str:
        """Apply the PSP's word in one unit of work. A lost dispute's recovery records the
        seller's share as its debt and touches no wallet, so no concurrent posting can make it
        fail: the seller's merchant actor takes the debt from the wallet (actors/debts.py)."""
        return await self._settle_once(order, word, event)

    async def _settle_once(
        self, order: PaymentOrder, word: DisputeWord, event: PspNotification | None
    ) -> str:
        ctx = self.ctx
        topics: list[str] = []
        created = False
        conflicting: Dispute | None = None
        try:
            async with ctx.store.unit_of_work() as uow:
                dispute = await uow.get_dispute(word.dispute_id)
                recover_again = (  # planted bug, test-only seam: duplicates not recognised
                    "lost_dispute_recovered_twice" in ctx.faults
                    and dispute is not None
                    and dispute.status is DisputeStatus.LOST is word.target
                )
                if event is not None and not recover_again:
                    await uow.record_psp_event(_event_record(event, ctx.clock.now_ms()))
                if dispute is None:
                    dispute = await self._open(uow, order, word)
                    topics.append("dispute.created")
                    created = True
                assert dispute.order_id == order.order_id, (dispute, order.order_id)
                if word.target is not DisputeStatus.OPEN:
                    if dispute.status is DisputeStatus.OPEN:
                        dispute = await self._close(uow, order, dispute, word.target)
                        topics.append(f"dispute.{word.target.value.lower()}")
                    elif dispute.status is not word.target:
                        conflicting = dispute
                        await uow.append_outbox(self._alert(dispute, event))
                    elif recover_again:
                        reference = f"{dispute.dispute_id}/{ctx.ids.new('txn')}"
                        await self._recover(uow, order, dispute, reference)
        except DuplicateKey as exc:
            if exc.key != "psp_events.event_id":
                raise
            return "duplicate"
        if topics:
            ctx.doorbell.ring(tuple(topics))
        if "dispute.lost" in topics or recover_again:  # a debt was recorded: settle it now
            await ask_settle(ctx, order.seller_id, word.currency)
        if conflicting is not None:
            log.error("PSP contradicts dispute %s (%s)", conflicting.dispute_id, conflicting.status)
        if created and dispute.status is DisputeStatus.OPEN:
            self._poll_later(dispute.dispute_id)
        self._finished(is_terminal(dispute.status))
        if event is None:
            return dispute.status.value
        return "applied" if topics else "ignored"

    async def _open(self, uow: UnitOfWork, order: PaymentOrder, word: DisputeWord) -> Dispute:
        """Record the dispute OPEN and post the chargeback: the PSP withdrew its amount."""
        now_ms = self.ctx.clock.now_ms()
        dispute = Dispute(
            dispute_id=word.dispute_id,
            order_id=order.order_id,
            psp_capture_id=word.capture_id,
            currency=word.currency,
            amount_minor=word.amount_minor,
            status=DisputeStatus.OPEN,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
            reason=word.reason,
        )
        await uow.insert_dispute(dispute)
        await uow.post_transaction(
            self._txn(
                TransactionKind.CHARGEBACK,
                dispute,
                chargeback_entries(dispute.amount),
                f"chargeback on {order.order_id}",
            )
        )
        await uow.append_outbox(self._message("dispute.created", dispute, order.seller_id))
        return dispute

    async def _close(
        self, uow: UnitOfWork, order: PaymentOrder, dispute: Dispute, target: DisputeStatus
    ) -> Dispute:
        ctx = self.ctx
        updated = await uow.update_dispute(
            evolve(
                dispute,
                status=transition(dispute.status, target),
                updated_at_ms=ctx.clock.now_ms(),
            )
        )
        if target is DisputeStatus.WON:
            if "won_dispute_not_reinstated" not in ctx.faults:  # planted bug, test-only seam
                await uow.post_transaction(
                    self._txn(
                        TransactionKind.CHARGEBACK_REINSTATED,
                        dispute,
                        chargeback_reinstated_entries(dispute.amount),
                        "dispute won: funds reinstated",
                    )
                )
        else:
            await self._recover(uow, order, dispute, dispute.dispute_id)
        await uow.append_outbox(
            self._message(f"dispute.{target.value.lower()}", updated, order.seller_id)
        )
        return updated

    async def _recover(
        self, uow: UnitOfWork, order: PaymentOrder, dispute: Dispute, reference: str
    ) -> None:
        """Take a lost dispute's amount back from the seller by the wallet policy."""
        entries = chargeback_recovery_entries(
            order.seller_id, dispute.amount, self.ctx.config.commission_bps, available_minor=0
        )  # the seller's whole share is its debt; its merchant actor collects it
        if "dispute_commission_kept" in self.ctx.faults:  # planted bug, test-only seam
            entries = _planted_commission_kept_entries(order, dispute, 0)
        await uow.post_transaction(
            self._txn(
                TransactionKind.CHARGEBACK_RECOVERY,
                attrs.evolve(dispute, dispute_id=reference),
                entries,
                "dispute lost: recovered from the seller",
            )
        )

    async def _record_unknown(self, event: PspNotification) -> str:
        """An event for no captured order of ours, or malformed: kept, changes nothing."""
        try:
            async with self.ctx.store.unit_of_work() as uow:
                await uow.record_psp_event(_event_record(event, self.ctx.clock.now_ms()))
        except DuplicateKey:
            return "duplicate"
        log.warning("PSP dispute event %s for unknown %s", event.event_id, event.reference)
        return "unknown_reference"

    # --- helpers -------------------------------------------------------------------------------
    def _poll_later(self, dispute_id: str) -> None:
        self.ctx.tell_later(
            self.ctx.config.dispute_poll_interval_s, REFUND, self.order_id, QueryDispute(dispute_id)
        )

    def _txn(self, kind: TransactionKind, dispute: Dispute, entries: Any, text: str) -> Transaction:
        return Transaction(
            txn_id=self.ctx.ids.new("txn"),
            kind=kind,
            reference=dispute.dispute_id,
            entries=tuple(entries),
            created_at_ms=self.ctx.clock.now_ms(),
            description=text,
        )

    def _message(self, topic: str, dispute: Dispute, seller_id: str) -> OutboxMessage:
        return self.ctx.message(topic, dispute.dispute_id, dispute_payload(dispute, seller_id))

    def _alert(self, dispute: Dispute, event: PspNotification | None) -> OutboxMessage:
        return self.ctx.message(
            DISPUTE_ALERT,
            dispute.dispute_id,
            {
                "dispute_id": dispute.dispute_id,
                "order_id": dispute.order_id,
                "status": dispute.status.value,
                "event_id": None if event is None else event.event_id,
            },
        )


def dispute_payload(dispute: Dispute, seller_id: str) -> dict[str, Any]:
    """A dispute as its outbox messages (and merchant notifications) carry it."""
    return {
        "dispute_id": dispute.dispute_id,
        "order_id": dispute.order_id,
        "seller_id": seller_id,
        "amount_minor": dispute.amount_minor,
        "currency": dispute.currency,
        "status": dispute.status.value,
        "reason": dispute.reason,
    }


def _planted_commission_kept_entries(
    order: PaymentOrder, dispute: Dispute, available_minor: int
) -> tuple[Entry, ...]:
    """Planted bug (test-only seam): the platform keeps its commission and the seller pays the
    whole disputed amount (against the stated policy)."""
    return chargeback_recovery_entries(order.seller_id, dispute.amount, 0, available_minor)


def _event_record(event: PspNotification, now_ms: int) -> PspEvent:
    return PspEvent(event.event_id, event.kind.value, dict(event.raw), now_ms)
