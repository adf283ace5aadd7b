"""The order actor: one per payment order, NOT_STARTED -> EXECUTING -> SUCCESS | FAILED.

The order id is the PSP idempotency key, so every capture call for an order, first or retried,
after a timeout or after a crash, is the same capture at the PSP: at most one is ever made.

A timeout is not a failure. When the PSP does not answer (timeout, 5xx, connection lost) the
outcome is unknown: the order stays EXECUTING and retries the same capture with exponential
backoff and jitter; after `capture_attempts_max` unknown outcomes it stops capturing and asks
the PSP for the capture's status by key every `status_poll_interval_s`, until the PSP's word
arrives, by answer or by webhook. Webhooks may come before, during or after the call returns,
duplicated or out of order: a terminal state is final, so every interleaving converges.

A capture is booked (ledger transaction, wallet credit, booking flags) in the same unit of work
that records SUCCESS, so there is no captured-but-unbooked state to recover from.
"""

from __future__ import annotations

import logging
from decimal import ROUND_DOWN, Decimal
from typing import Any

import trio

from actors.context import Context
from actors.messages import (
    CHECKOUT,
    ORDER,
    ApplyPspEvent,
    AttemptCapture,
    CheckCompletion,
    ExecuteOrder,
    QueryCapture,
)
from engine.errors import DuplicateKey, VersionConflict
from engine.gateway import (
    CaptureResult,
    CaptureStatus,
    GatewayUnavailable,
    PspEventKind,
    PspNotification,
)
from engine.ledger import (
    PLATFORM_REVENUE,
    PSP_CLEARING,
    Entry,
    Transaction,
    TransactionKind,
    capture_entries,
    merchant_payable,
)
from engine.money import Money, currency_exponent
from engine.records import OutboxMessage, PaymentOrder, PspEvent, evolve
from engine.states import OrderStatus, transition
from engine.store.batching import batched_unit_of_work
from engine.store.port import UnitOfWork

log = logging.getLogger("payengine.order")

#: The ledger's unique business key: a second capture booking of an order fails on it.
LEDGER_KEY = "ledger_transactions.kind_reference"


class OrderActor:
    def __init__(self, ctx: Context, order_id: str) -> None:
        self.ctx = ctx
        self.order_id = order_id
        self.order: PaymentOrder | None = None
        self.session_id: str | None = None
        #: The order is final and the PSP's webhook about it was handled: nothing more is
        #: expected, so the runtime passivates the actor at once (a late message respawns it).
        self.finished = False
        #: At spawn the order is read with the first message, which may bring it as just
        #: committed (`ExecuteOrder.order`); after a crash or a conflict it is read at once.
        self._spawned = True
        self._unread = False

    async def on_start(self) -> None:
        if self._spawned:
            self._spawned = False
            self._unread = True
            return
        self._unread = False
        self.order = await self.ctx.store.get_order(self.order_id)
        # The PSP session is read lazily (_session_id): ExecuteOrder usually brings it.

    async def receive(self, message: Any) -> Any:
        if self._unread:
            self._unread = False
            snapshot = message.order if isinstance(message, ExecuteOrder) else None
            if snapshot is not None and snapshot.order_id == self.order_id:
                self.order = snapshot  # a stale copy fails its update on the version
            else:
                self.order = await self.ctx.store.get_order(self.order_id)
        if isinstance(message, ApplyPspEvent):
            return await self._apply_event(message.event)
        if self.order is None:
            return "unknown_order"
        if isinstance(message, ExecuteOrder):
            return await self._execute(message.session_id, message.fresh)
        if isinstance(message, AttemptCapture):
            return await self._attempt_capture()
        if isinstance(message, QueryCapture):
            return await self._query()
        raise AssertionError(f"order actor got {message!r}")

    # --- capture -----------------------------------------------------------------------------
    async def _execute(self, session_id: str, fresh: bool) -> str:
        order = self.order
        assert order is not None
        self.session_id = session_id
        if fresh and order.status is OrderStatus.EXECUTING and order.attempts == 0:
            # The checkout started this order with its authorization: capture now.
            return await self._attempt_capture()
        if order.status is OrderStatus.NOT_STARTED:
            async with batched_unit_of_work(self.ctx.store) as uow:
                self.order = await uow.update_order(
                    evolve(
                        order,
                        status=transition(order.status, OrderStatus.EXECUTING),
                        updated_at_ms=self.ctx.clock.now_ms(),
                    )
                )
            self._later(0.0, AttemptCapture())
            return "executing"
        if order.status is OrderStatus.EXECUTING:
            # Resumed after a restart: the outcome of an earlier call is unknown; ask first.
            self._later(0.0, QueryCapture())
            return "resumed"
        if order.status is OrderStatus.SUCCESS and not order.booked:
            return await self._book_succeeded()
        await self.ctx.system.tell(CHECKOUT, order.payment_id, CheckCompletion())
        return order.status.value

    async def _session_id(self) -> str | None:
        """The payment's PSP session, read from the store once if no message brought it."""
        if self.session_id is None and self.order is not None:
            payment = await self.ctx.store.get_payment(self.order.payment_id)
            self.session_id = None if payment is None else payment.psp_session_id
        return self.session_id

    def _capture_key(self) -> str:
        if "new_key_on_retry" in self.ctx.faults and self.order and self.order.attempts > 0:
            return self.ctx.ids.new("key")  # planted bug, test-only seam
        if "capture_without_idempotency_key" in self.ctx.faults:
            return self.ctx.ids.new("key")  # planted bug, test-only seam
        return self.order_id

    async def _attempt_capture(self) -> str:
        order = self.order
        assert order is not None
        if order.status is not OrderStatus.EXECUTING:
            return order.status.value
        session_id = await self._session_id()
        assert session_id is not None, f"order {order.order_id} has no PSP session"
        try:
            with trio.fail_after(self.ctx.config.psp_call_timeout_s):
                result = await self.ctx.gateway.capture(
                    self._capture_key(), session_id, order.amount
                )
        except (GatewayUnavailable, trio.TooSlowError) as exc:
            return await self._outcome_unknown(repr(exc))
        return await self._settle(result, event=None)

    async def _query(self) -> str:
        order = self.order
        assert order is not None
        if order.status is not OrderStatus.EXECUTING:
            return order.status.value
        try:
            with trio.fail_after(self.ctx.config.psp_call_timeout_s):
                result = await self.ctx.gateway.query_capture(self.order_id)
        except (GatewayUnavailable, trio.TooSlowError):
            self._later(
                min(self.ctx.backoff_s(order.attempts + 1), self.ctx.config.status_poll_interval_s),
                QueryCapture(),
            )
            return "unknown"
        if result.status is CaptureStatus.NOT_FOUND:
            # The PSP never received a capture with this key: capturing now is safe.
            self._later(0.0, AttemptCapture())
            return "not_found"
        return await self._settle(result, event=None)

    async def _outcome_unknown(self, error: str) -> str:
        order = self.order
        assert order is not None
        if "timeout_as_failure" in self.ctx.faults:  # planted bug, test-only seam
            return await self._settle(CaptureResult(CaptureStatus.DECLINED, reason=error), None)
        if (
            "fail_after_unknown_outcomes" in self.ctx.faults  # planted bug, test-only seam
            and order.attempts + 1 >= self.ctx.config.capture_attempts_max
        ):
            return await self._settle(CaptureResult(CaptureStatus.DECLINED, reason=error), None)
        async with batched_unit_of_work(self.ctx.store) as uow:
            self.order = await uow.update_order(
                evolve(order, attempts=order.attempts + 1, updated_at_ms=self.ctx.clock.now_ms())
            )
        attempts = self.order.attempts
        if attempts < self.ctx.config.capture_attempts_max:
            self._later(self.ctx.backoff_s(attempts), AttemptCapture())
        else:
            self._later(self.ctx.config.status_poll_interval_s, QueryCapture())
        return "unknown"

    # --- outcomes ----------------------------------------------------------------------------
    async def _settle(self, result: CaptureResult, event: PspNotification | None) -> str:
        """Apply the PSP's word (a call's answer or a webhook) in one unit of work."""
        order = self.order
        assert order is not None
        if result.status is CaptureStatus.NOT_FOUND:
            return "not_found"
        target = (
            OrderStatus.SUCCESS if result.status is CaptureStatus.CAPTURED else OrderStatus.FAILED
        )
        trust_order = "trust_webhook_order" in self.ctx.faults and event is not None
        if order.status is not OrderStatus.EXECUTING and not trust_order:
            if event is not None:
                return await self._record_only(event, conflicting=order.status is not target)
            return order.status.value
        try:
            async with batched_unit_of_work(self.ctx.store) as uow:
                if event is not None:
                    await uow.record_psp_event(_event_record(event, self.ctx.clock.now_ms()))
                await self._transition(uow, order, target, result)
        except DuplicateKey as exc:
            if exc.key == LEDGER_KEY:  # our copy was stale: booked meanwhile (_book)
                raise VersionConflict(f"order {order.order_id} was booked meanwhile") from exc
            if exc.key != "psp_events.event_id":
                raise
            await self.on_start()
            return "duplicate"
        if "order_message_in_second_unit" in self.ctx.faults:  # planted bug, test-only seam
            topic = "order.succeeded" if target is OrderStatus.SUCCESS else "order.failed"
            async with self.ctx.store.unit_of_work() as uow:
                await uow.append_outbox(self._order_message(topic, order, result.capture_id))
        self.ctx.doorbell.ring(
            ("order.succeeded",) if target is OrderStatus.SUCCESS else ("order.failed",)
        )
        await self.ctx.system.tell(CHECKOUT, order.payment_id, CheckCompletion())
        self.finished = event is not None
        return "applied" if event is not None else target.value

    async def _transition(
        self, uow: UnitOfWork, order: PaymentOrder, target: OrderStatus, result: CaptureResult
    ) -> None:
        status = (
            target if "trust_webhook_order" in self.ctx.faults else transition(order.status, target)
        )
        booked = order.booked
        if target is OrderStatus.SUCCESS and not booked:
            # EXECUTING proves it unbooked: booking and leaving EXECUTING are one unit.
            await self._book(uow, order, unbooked=order.status is OrderStatus.EXECUTING)
            booked = True
        self.order = await uow.update_order(
            evolve(
                order,
                status=status,
                psp_capture_id=result.capture_id or order.psp_capture_id,
                failure_reason=(
                    None if target is OrderStatus.SUCCESS else result.reason or result.status.value
                ),
                ledger_booked=booked,
                wallet_booked=booked,
                updated_at_ms=self.ctx.clock.now_ms(),
            )
        )
        topic = "order.succeeded" if target is OrderStatus.SUCCESS else "order.failed"
        if "order_message_in_second_unit" not in self.ctx.faults:  # else a planted bug
            await uow.append_outbox(self._order_message(topic, order, result.capture_id))

    async def _book(
        self, uow: UnitOfWork, order: PaymentOrder, reference: str = "", *, unbooked: bool = False
    ) -> None:
        """Post the capture transaction (its wallet credit comes with it) in `uow`.

        The ledger's unique business key `(capture, order_id)` makes a second booking
        impossible; the check before posting only avoids the failed statement. With
        `unbooked` the actor's copy of the order proves the booking absent (an EXECUTING
        order: the booking commits with its leaving EXECUTING) and the read is skipped; a
        stale copy then fails on that key, and `_settle` reloads as for a version conflict.
        """
        reference = reference or order.order_id
        if not unbooked and await uow.get_transaction_by_reference(
            TransactionKind.CAPTURE, reference
        ):
            return
        entries, _, _ = capture_entries(
            order.seller_id, order.amount, self.ctx.config.commission_bps
        )
        if "commission_rounded_to_cent" in self.ctx.faults:  # planted bug, test-only seam
            entries = _planted_cent_rounded_capture_entries(order, self.ctx.config.commission_bps)
        await uow.post_transaction(
            Transaction(
                txn_id=self.ctx.ids.new("txn"),
                kind=TransactionKind.CAPTURE,
                reference=reference,
                entries=entries,
                created_at_ms=self.ctx.clock.now_ms(),
                description=f"capture of order {order.order_id}",
            )
        )

    async def _book_succeeded(self) -> str:
        """A SUCCESS order not booked yet (written before booking moved here): book it now."""
        order = self.order
        assert order is not None and order.status is OrderStatus.SUCCESS and not order.booked
        async with self.ctx.store.unit_of_work() as uow:
            await self._book(uow, order)
            self.order = await uow.update_order(
                evolve(
                    order,
                    ledger_booked=True,
                    wallet_booked=True,
                    updated_at_ms=self.ctx.clock.now_ms(),
                )
            )
        await self.ctx.system.tell(CHECKOUT, order.payment_id, CheckCompletion())
        return "booked"

    def _order_message(
        self, topic: str, order: PaymentOrder, capture_id: str | None
    ) -> OutboxMessage:
        return self.ctx.message(
            topic,
            order.order_id,
            {
                "order_id": order.order_id,
                "payment_id": order.payment_id,
                "seller_id": order.seller_id,
                "amount_minor": order.amount_minor,
                "currency": order.currency,
                "capture_id": capture_id,
            },
        )

    async def _apply_event(self, event: PspNotification) -> str:
        order = self.order
        if order is None:
            try:
                async with batched_unit_of_work(self.ctx.store) as uow:
                    await uow.record_psp_event(_event_record(event, self.ctx.clock.now_ms()))
            except DuplicateKey:
                return "duplicate"
            log.warning("PSP event %s for unknown order %s", event.event_id, event.reference)
            return "unknown_reference"
        if order.status is OrderStatus.NOT_STARTED:
            return "retry_later"  # keep nothing: the PSP delivers it again
        if (
            event.kind is PspEventKind.CAPTURE_FAILED
            and order.status is OrderStatus.EXECUTING
            and "trust_webhook_order" not in self.ctx.faults
        ):
            # A failed *attempt* may be followed by a successful retry under the same key whose
            # answer we have not heard yet: only the PSP's current word on the key is final.
            try:
                async with batched_unit_of_work(self.ctx.store) as uow:
                    await uow.record_psp_event(_event_record(event, self.ctx.clock.now_ms()))
            except DuplicateKey:
                return "duplicate"
            self._later(0.0, QueryCapture())
            return "applied"
        status = (
            CaptureStatus.CAPTURED
            if event.kind is PspEventKind.CAPTURE_SUCCEEDED
            else CaptureStatus.DECLINED
        )
        return await self._settle(CaptureResult(status, event.capture_id, event.reason), event)

    async def _record_only(self, event: PspNotification, *, conflicting: bool) -> str:
        """A late or duplicate event about a settled order: keep it, change nothing."""
        order = self.order
        assert order is not None
        if "crash_on_late_event" in self.ctx.faults:  # planted bug, test-only seam
            raise RuntimeError(f"planted: late event {event.event_id} crashed the order actor")
        try:
            async with batched_unit_of_work(self.ctx.store) as uow:
                await uow.record_psp_event(_event_record(event, self.ctx.clock.now_ms()))
                if (
                    "duplicate_webhook_booked_twice" in self.ctx.faults  # planted bug seam
                    and event.kind is PspEventKind.CAPTURE_SUCCEEDED
                    and order.status is OrderStatus.SUCCESS
                ):
                    # Books the duplicate under a fresh reference, past the unique key.
                    await self._book(uow, order, reference=self.ctx.ids.new("key"))
                if conflicting:
                    # The PSP contradicts a final state: a person must look (reconciliation).
                    await uow.append_outbox(
                        self.ctx.message(
                            "order.conflicting_psp_event",
                            order.order_id,
                            {
                                "order_id": order.order_id,
                                "event_id": event.event_id,
                                "status": order.status.value,
                                "event_kind": event.kind.value,
                            },
                        )
                    )
        except DuplicateKey as exc:
            if exc.key != "psp_events.event_id":
                raise
            return "duplicate"
        if conflicting:
            log.error(
                "PSP event %s contradicts order %s (%s)",
                event.event_id,
                order.order_id,
                order.status,
            )
        self.finished = order.status is OrderStatus.FAILED or order.booked
        return "ignored"

    def _later(self, delay_s: float, message: Any) -> None:
        self.ctx.tell_later(delay_s, ORDER, self.order_id, message)


def _planted_cent_rounded_capture_entries(order: PaymentOrder, rate_bps: int) -> tuple[Entry, ...]:
    """Planted bug (test-only seam): the commission computed in major units and cut to two
    decimals, whatever the currency has (JPY floored to the yen, BHD to 10 fils)."""
    exponent = currency_exponent(order.currency)
    major = Decimal(order.amount_minor).scaleb(-exponent) * rate_bps / 10_000
    commission = int((major.quantize(Decimal("0.01"), ROUND_DOWN)).scaleb(exponent))
    amount = order.amount
    return (
        Entry.debit(PSP_CLEARING, amount),
        Entry.credit(
            merchant_payable(order.seller_id), Money(amount.minor - commission, amount.currency)
        ),
        *(
            (Entry.credit(PLATFORM_REVENUE, Money(commission, amount.currency)),)
            if commission
            else ()
        ),
    )


def _event_record(event: PspNotification, now_ms: int) -> PspEvent:
    return PspEvent(event.event_id, event.kind.value, dict(event.raw), now_ms)
