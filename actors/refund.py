"""The refund actor: one per captured ORDER, keyed by the order id, for all of its refunds.

Why per order: how much of an order is left to refund is decided from the order's refunds, so
creations for one order must not interleave. One actor handles one message at a time, so two
racing requests are decided one after the other, each seeing the other's refund (in flight
ones included): together they never refund more than was captured. (The order actor is not
reused: it lives for the capture and passivates when that is final, while refunds come days
later; keeping refunds apart keeps both state machines small.)

A refund is REQUESTED -> SUBMITTED -> SUCCEEDED | FAILED (engine/states.py):

- Creation writes the refund REQUESTED, its ledger transaction (the seller's net share as its
  debt and our commission move to `refunds_clearing`; engine/ledger.py `refund_entries`) and a
  `refund.requested` message in ONE unit of work; then the seller's merchant actor takes the
  debt from the wallet as far as it goes (actors/debts.py), as after a FAILED reversal.
- The refund id is the PSP idempotency key, so every call for a refund, first or retried, after
  a timeout or a crash, is the same refund at the PSP. A timeout is not a failure: the refund
  stays as it is and the call is retried with backoff under the same key; after
  `refund_attempts_max` unknown outcomes it only asks the PSP by key, every
  `status_poll_interval_s`. It never becomes FAILED on silence.
- The PSP's word (its answer, a query, or a `refund.succeeded` / `refund.failed` webhook,
  recorded by event id in the same unit of work as its effect) ends it: SUCCEEDED posts
  `refund_settled_entries`, FAILED reverses the creation's transaction exactly; each with its
  outbox message. A pending refund is asked about every `status_poll_interval_s` in case its
  webhook is lost.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from actors.context import Context
from actors.debts import ask_settle
from actors.dispute import DisputeHandler
from actors.messages import (
    REFUND,
    ApplyDisputeEvent,
    ApplyRefundEvent,
    AttemptRefund,
    CreateRefund,
    QueryDispute,
    QueryRefund,
)
from actors.service import Rejection
from engine.errors import DuplicateKey
from engine.gateway import (
    GatewayUnavailable,
    PspEventKind,
    PspNotification,
    PspRefundStatus,
    RefundResult,
)
from engine.ledger import (
    Transaction,
    TransactionKind,
    refund_entries,
    refund_settled_entries,
    reversal_of,
)
from engine.records import OutboxMessage, PaymentOrder, PspEvent, Refund, evolve
from engine.states import OrderStatus, RefundStatus, is_terminal, transition
from engine.store.port import UnitOfWork

log = logging.getLogger("payengine.refund")

REFUND_TOPICS = ("refund.requested", "refund.succeeded", "refund.failed")


def refund_rejection(
    order: PaymentOrder | None, refunds: list[Refund], command: CreateRefund, refunds_max: int
) -> tuple[int, Rejection | None]:
    """The amount to refund, or why the refund is refused: a pure decision.

    What is left to refund is the captured amount minus every refund not FAILED (in-flight ones
    included, as their money is held until the PSP says).
    """
    if order is None:
        return 0, Rejection("order_not_found", "no such order")
    if order.status is not OrderStatus.SUCCESS or not order.booked or not order.psp_capture_id:
        return 0, Rejection(
            "order_not_captured", f"order {order.order_id} is {order.status}, not captured"
        )
    if command.currency is not None and command.currency != order.currency:
        return 0, Rejection(
            "refund_currency_mismatch",
            f"order {order.order_id} was captured in {order.currency}, not {command.currency}",
        )
    if command.amount_minor is not None and command.amount_minor <= 0:
        return 0, Rejection("refund_amount_not_positive", "a refund amount must be positive")
    if len(refunds) >= refunds_max:
        return 0, Rejection(
            "refunds_per_order_exceeded", f"an order may have at most {refunds_max} refunds"
        )
    held = sum(r.amount_minor for r in refunds if r.status is not RefundStatus.FAILED)
    left = order.amount_minor - held
    amount = left if command.amount_minor is None else command.amount_minor
    if left <= 0:
        return 0, Rejection(
            "order_fully_refunded", f"order {order.order_id} has nothing left to refund"
        )
    if amount > left:
        return 0, Rejection(
            "refund_exceeds_captured",
            f"order {order.order_id} has {left} minor units left to refund, not {amount}",
        )
    return amount, None


class RefundActor:
    def __init__(self, ctx: Context, order_id: str) -> None:
        self.ctx = ctx
        self.order_id = order_id
        #: Set once the last refund it handled is final, so the runtime passivates it at once
        #: (a timer's later message or a new request spawns it again).
        self.finished = False
        #: The order's disputes (actors/dispute.py): decided here too, one message at a time.
        self.disputes = DisputeHandler(ctx, order_id, self._set_finished)

    def _set_finished(self, finished: bool) -> None:
        self.finished = finished

    async def on_start(self) -> None:
        """Holds no state between messages: each reads what it needs in its unit of work."""

    async def receive(self, message: Any) -> Any:
        self.finished = False
        if isinstance(message, CreateRefund):
            return await self._create(message)
        if isinstance(message, AttemptRefund):
            return await self._attempt(message.refund_id)
        if isinstance(message, QueryRefund):
            return await self._query(message.refund_id)
        if isinstance(message, ApplyRefundEvent):
            return await self._apply_event(message.event)
        if isinstance(message, ApplyDisputeEvent | QueryDispute):
            return await self.disputes.receive(message)
        raise AssertionError(f"refund actor got {message!r}")

    # --- creation ----------------------------------------------------------------------------
    async def _create(self, command: CreateRefund) -> Refund | Rejection:
        try:
            return await self._create_once(command)
        except DuplicateKey as exc:
            if exc.key != "refunds.creation_key":
                raise
            # Another order's actor took this creation key first (a key reused across orders).
            existing = await self._by_creation_key(command.creation_key)
            return self._same_request(existing, command)

    async def _by_creation_key(self, creation_key: str) -> Refund:
        async with self.ctx.store.unit_of_work() as uow:
            existing = await uow.get_refund_by_creation_key(creation_key)
        assert existing is not None, f"duplicate creation key {creation_key} but no refund"
        return existing

    async def _create_once(self, command: CreateRefund) -> Refund | Rejection:
        ctx = self.ctx
        async with ctx.store.unit_of_work() as uow:
            existing = await uow.get_refund_by_creation_key(command.creation_key)
            if existing is not None:
                return self._same_request(existing, command)
            order = await uow.get_order(self.order_id)
            refunds = await uow.list_refunds(self.order_id, ctx.config.refunds_per_order_max)
            if await uow.list_order_disputes(self.order_id, 1):  # the PSP would refuse it
                return Rejection("order_disputed", f"order {self.order_id} is disputed")
            amount_minor, rejection = refund_rejection(
                order, refunds, command, ctx.config.refunds_per_order_max
            )
            if rejection is not None:
                return rejection
            assert order is not None
            now_ms = ctx.clock.now_ms()
            refund = Refund(
                refund_id=ctx.ids.new("re"),
                order_id=order.order_id,
                currency=order.currency,
                amount_minor=amount_minor,
                status=RefundStatus.REQUESTED,
                created_at_ms=now_ms,
                updated_at_ms=now_ms,
                creation_key=command.creation_key,
                reason=command.reason,
            )
            await uow.insert_refund(refund)
            # The seller's whole share becomes its debt here; its merchant actor takes it from
            # the wallet (actors/debts.py), so only that actor ever spends the wallet.
            entries = refund_entries(
                order.seller_id, refund.amount, ctx.config.commission_bps, available_minor=0
            )
            await uow.post_transaction(
                self._txn(TransactionKind.REFUND, refund, entries, f"refund of {order.order_id}")
            )
            await uow.append_outbox(self._message("refund.requested", refund, order.seller_id))
        ctx.doorbell.ring(("refund.requested",))
        await ask_settle(ctx, order.seller_id, order.currency)
        self._later(0.0, AttemptRefund(refund.refund_id))
        return refund

    def _same_request(self, existing: Refund, command: CreateRefund) -> Refund | Rejection:
        """A repeated creation key: the first refund, if the request is the same one."""
        same = (
            existing.order_id == self.order_id
            and command.amount_minor in (None, existing.amount_minor)
            and command.currency in (None, existing.currency)
        )
        if not same:
            return Rejection(
                "creation_key_reused",
                f"refund {existing.refund_id} was created with this key for another request",
            )
        return existing

    # --- the PSP call ------------------------------------------------------------------------
    def _key(self, refund: Refund) -> str:
        if "refund_key_regenerated_on_retry" in self.ctx.faults and refund.attempts > 0:
            return self.ctx.ids.new("key")  # planted bug, test-only seam
        return refund.refund_id

    async def _attempt(self, refund_id: str) -> str:
        refund = await self.ctx.store.get_refund(refund_id)
        if refund is None or refund.order_id != self.order_id:
            return "unknown_refund"
        if refund.status is not RefundStatus.REQUESTED:
            return refund.status.value
        order = await self.ctx.store.get_order(self.order_id)
        assert order is not None and order.psp_capture_id is not None, order
        try:
            with trio.fail_after(self.ctx.config.psp_call_timeout_s):
                result = await self.ctx.gateway.refund(
                    self._key(refund), order.psp_capture_id, refund.amount
                )
        except (GatewayUnavailable, trio.TooSlowError) as exc:
            return await self._outcome_unknown(refund, repr(exc))
        return await self._settle(refund, result, event=None)

    async def _query(self, refund_id: str) -> str:
        refund = await self.ctx.store.get_refund(refund_id)
        if refund is None or refund.order_id != self.order_id:
            return "unknown_refund"
        if is_terminal(refund.status):
            self.finished = True
            return refund.status.value
        try:
            with trio.fail_after(self.ctx.config.psp_call_timeout_s):
                result = await self.ctx.gateway.query_refund(refund.refund_id)
        except (GatewayUnavailable, trio.TooSlowError):
            self._later(
                min(
                    self.ctx.backoff_s(refund.attempts + 1),
                    self.ctx.config.status_poll_interval_s,
                ),
                QueryRefund(refund_id),
            )
            return "unknown"
        if result.status is PspRefundStatus.NOT_FOUND:
            # The PSP never received a refund with this key: calling now is safe.
            if refund.status is RefundStatus.REQUESTED:
                self._later(0.0, AttemptRefund(refund_id))
            return "not_found"
        return await self._settle(refund, result, event=None)

    async def _outcome_unknown(self, refund: Refund, error: str) -> str:
        async with self.ctx.store.unit_of_work() as uow:
            refund = await uow.update_refund(
                evolve(refund, attempts=refund.attempts + 1, updated_at_ms=self.ctx.clock.now_ms())
            )
        log.info(
            "refund %s outcome unknown (attempt %d): %s", refund.refund_id, refund.attempts, error
        )
        if refund.attempts < self.ctx.config.refund_attempts_max:
            self._later(self.ctx.backoff_s(refund.attempts), AttemptRefund(refund.refund_id))
        else:
            self._later(self.ctx.config.status_poll_interval_s, QueryRefund(refund.refund_id))
        return "unknown"

    # --- outcomes ----------------------------------------------------------------------------
    async def _settle(
        self, refund: Refund, result: RefundResult, event: PspNotification | None
    ) -> str:
        """Apply the PSP's word (an answer, a query or a webhook) in one unit of work."""
        if result.status is PspRefundStatus.NOT_FOUND:
            return "not_found"
        target = {
            PspRefundStatus.PENDING: RefundStatus.SUBMITTED,
            PspRefundStatus.SUCCEEDED: RefundStatus.SUCCEEDED,
            PspRefundStatus.FAILED: RefundStatus.FAILED,
        }[result.status]
        if target is refund.status or is_terminal(refund.status):
            if event is not None:
                return await self._record_only(refund, event)
            if refund.status is RefundStatus.SUBMITTED:  # still pending: ask again later
                self._later(self.ctx.config.status_poll_interval_s, QueryRefund(refund.refund_id))
            self.finished = is_terminal(refund.status)
            return refund.status.value
        try:
            async with self.ctx.store.unit_of_work() as uow:
                if event is not None:
                    await uow.record_psp_event(_event_record(event, self.ctx.clock.now_ms()))
                refund = await self._transition(uow, refund, target, result)
        except DuplicateKey as exc:
            if exc.key != "psp_events.event_id":
                raise
            return "duplicate"
        if target is RefundStatus.SUBMITTED:
            # Pending at the PSP: its webhook says when it ends; ask too, in case it is lost.
            self._later(self.ctx.config.status_poll_interval_s, QueryRefund(refund.refund_id))
        else:
            self.ctx.doorbell.ring((f"refund.{target.value.lower()}",))
            self.finished = True
        if target is RefundStatus.FAILED:  # the reversal gave the seller's share back
            order = await self.ctx.store.get_order(self.order_id)
            assert order is not None, refund
            await ask_settle(self.ctx, order.seller_id, refund.currency)
        return "applied" if event is not None else target.value

    async def _transition(
        self, uow: UnitOfWork, refund: Refund, target: RefundStatus, result: RefundResult
    ) -> Refund:
        order = await uow.get_order(refund.order_id)
        assert order is not None, refund
        updated = await uow.update_refund(
            evolve(
                refund,
                status=transition(refund.status, target),
                psp_refund_id=result.refund_id or refund.psp_refund_id,
                failure_reason=result.reason if target is RefundStatus.FAILED else None,
                updated_at_ms=self.ctx.clock.now_ms(),
            )
        )
        if target is RefundStatus.SUCCEEDED:
            entries = refund_settled_entries(refund.amount)
            await uow.post_transaction(
                self._txn(TransactionKind.REFUND_SETTLED, refund, entries, "refund paid by PSP")
            )
            await uow.append_outbox(self._message("refund.succeeded", updated, order.seller_id))
        elif target is RefundStatus.FAILED:
            posted = await uow.get_transaction_by_reference(
                TransactionKind.REFUND, refund.refund_id
            )
            assert posted is not None, f"refund {refund.refund_id} has no ledger transaction"
            await uow.post_transaction(
                self._txn(
                    TransactionKind.REFUND_REVERSED,
                    refund,
                    reversal_of(posted.entries),
                    "refund failed at PSP",
                )
            )
            await uow.append_outbox(self._message("refund.failed", updated, order.seller_id))
        return updated

    async def _apply_event(self, event: PspNotification) -> str:
        refund = await self.ctx.store.get_refund(event.reference)
        if refund is None or refund.order_id != self.order_id:
            return await self._record_unknown(event)
        status = (
            PspRefundStatus.SUCCEEDED
            if event.kind is PspEventKind.REFUND_SUCCEEDED
            else PspRefundStatus.FAILED
        )
        return await self._settle(
            refund, RefundResult(status, event.refund_id, event.reason), event
        )

    async def _record_only(self, refund: Refund, event: PspNotification) -> str:
        """A late or duplicate event about a settled refund: keep it, change nothing."""
        said = (
            RefundStatus.SUCCEEDED
            if event.kind is PspEventKind.REFUND_SUCCEEDED
            else RefundStatus.FAILED
        )
        conflicting = is_terminal(refund.status) and said is not refund.status
        try:
            async with self.ctx.store.unit_of_work() as uow:
                await uow.record_psp_event(_event_record(event, self.ctx.clock.now_ms()))
                if conflicting:  # the PSP contradicts a final state: a person must look
                    await uow.append_outbox(
                        self.ctx.message(
                            "refund.conflicting_psp_event",
                            refund.refund_id,
                            {
                                "refund_id": refund.refund_id,
                                "order_id": refund.order_id,
                                "event_id": event.event_id,
                                "status": refund.status.value,
                                "event_kind": event.kind.value,
                            },
                        )
                    )
        except DuplicateKey as exc:
            if exc.key != "psp_events.event_id":
                raise
            return "duplicate"
        if conflicting:
            log.error("PSP event %s contradicts refund %s", event.event_id, refund.refund_id)
        self.finished = is_terminal(refund.status)
        return "ignored"

    async def _record_unknown(self, event: PspNotification) -> str:
        try:
            async with self.ctx.store.unit_of_work() as uow:
                await uow.record_psp_event(_event_record(event, self.ctx.clock.now_ms()))
        except DuplicateKey:
            return "duplicate"
        log.warning("PSP refund event %s for unknown refund %s", event.event_id, event.reference)
        return "unknown_reference"

    # --- helpers -----------------------------------------------------------------------------
    def _txn(
        self, kind: TransactionKind, refund: Refund, entries: Any, description: str
    ) -> Transaction:
        return Transaction(
            txn_id=self.ctx.ids.new("txn"),
            kind=kind,
            reference=refund.refund_id,
            entries=tuple(entries),
            created_at_ms=self.ctx.clock.now_ms(),
            description=description,
        )

    def _message(self, topic: str, refund: Refund, seller_id: str) -> OutboxMessage:
        return self.ctx.message(
            topic,
            refund.refund_id,
            {
                "refund_id": refund.refund_id,
                "order_id": refund.order_id,
                "seller_id": seller_id,
                "amount_minor": refund.amount_minor,
                "currency": refund.currency,
                "status": refund.status.value,
                "psp_refund_id": refund.psp_refund_id,
                "failure_reason": refund.failure_reason,
            },
        )

    def _later(self, delay_s: float, message: Any) -> None:
        self.ctx.tell_later(delay_s, REFUND, self.order_id, message)


def _event_record(event: PspNotification, now_ms: int) -> PspEvent:
    return PspEvent(event.event_id, event.kind.value, dict(event.raw), now_ms)
