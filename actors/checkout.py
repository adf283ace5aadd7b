"""The checkout actor: one per payment, from PSP registration to COMPLETED.

It registers the checkout with the PSP (the payment id is the nonce, so a retried registration
returns the same session), waits for the buyer's outcome (a webhook, or the session's status
when the buyer's time is up), tells each order to capture once authorized, and completes the
checkout when every order is terminal and every captured order is booked.

Each message is at most one unit of work; PSP calls happen outside it. A webhook is recorded in
the same unit of work as its effect, so a duplicate is recognised by its event id.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from actors.context import Context
from actors.messages import (
    CHECKOUT,
    ORDER,
    ApplyPspEvent,
    CheckCompletion,
    ExecuteOrder,
    ExpireCheckout,
    RegisterCheckout,
    ResumeCheckout,
)
from engine.errors import DuplicateKey
from engine.gateway import GatewayUnavailable, PspEventKind, PspNotification, SessionStatus
from engine.records import Payment, PaymentOrder, PspEvent, evolve
from engine.states import OrderStatus, PaymentStatus, can_transition, is_terminal, transition
from engine.store.batching import batched_unit_of_work
from engine.store.port import UnitOfWork

log = logging.getLogger("payengine.checkout")

#: While the PSP's risk team reviews a session, how often we ask again.
REVIEW_RECHECK_S = 15 * 60.0


class CheckoutActor:
    def __init__(self, ctx: Context, payment_id: str) -> None:
        self.ctx = ctx
        self.payment_id = payment_id
        self.payment: Payment | None = None
        self.register_attempts = 0
        #: Unanswered session closes (their retries back off; the count rides on the retry).
        self.expire_attempts = 0
        #: Topics of the outbox messages made since the last ring (one message at a time).
        self._topics: set[str] = set()
        #: The orders `_authorize` just started, for `_execute_orders(fresh=True)`.
        self._started: list[PaymentOrder] = []
        #: At spawn the payment is read with the first message, which may bring it as just
        #: committed (`RegisterCheckout.payment`); after a crash or a conflict it is read at once.
        self._spawned = True
        self._unread = False

    @property
    def finished(self) -> bool:
        """The checkout is final: the runtime passivates the actor once its mailbox is empty."""
        return self.payment is not None and is_terminal(self.payment.status)

    async def on_start(self) -> None:
        if self._spawned:
            self._spawned = False
            self._unread = True
            return
        self._unread = False
        self.payment = await self.ctx.store.get_payment(self.payment_id)

    async def receive(self, message: Any) -> Any:
        if self._unread:
            self._unread = False
            snapshot = message.payment if isinstance(message, RegisterCheckout) else None
            if snapshot is not None and snapshot.payment_id == self.payment_id:
                self.payment = snapshot  # a stale copy fails its update on the version
            else:
                self.payment = await self.ctx.store.get_payment(self.payment_id)
        if isinstance(message, ApplyPspEvent):
            return await self._apply_event(message.event)
        if self.payment is None:
            return "unknown_payment"
        if isinstance(message, RegisterCheckout):
            self.register_attempts = max(self.register_attempts, message.attempts)
            return await self._register()
        if isinstance(message, ExpireCheckout):
            self.expire_attempts = max(self.expire_attempts, message.attempts)
            return await self._expire()
        if isinstance(message, CheckCompletion):
            return await self._check_completion()
        if isinstance(message, ResumeCheckout):
            return await self._resume()
        raise AssertionError(f"checkout actor got {message!r}")

    # --- registration ------------------------------------------------------------------------
    async def _register(self) -> Payment:
        payment = self.payment
        assert payment is not None
        if payment.status is not PaymentStatus.CREATED:
            return payment
        try:
            with trio.fail_after(self.ctx.config.psp_call_timeout_s):
                registration = await self.ctx.gateway.register_checkout(
                    payment.payment_id, payment.amount, payment.return_url
                )
        except (GatewayUnavailable, trio.TooSlowError) as exc:
            self.register_attempts += 1
            if self.register_attempts >= self.ctx.config.register_attempts_max:
                return await self._finish(PaymentStatus.FAILED, f"psp_registration_failed: {exc!r}")
            self.ctx.tell_later(
                self.ctx.backoff_s(self.register_attempts),
                CHECKOUT,
                payment.payment_id,
                RegisterCheckout(attempts=self.register_attempts),
            )
            return payment
        now_ms = self.ctx.clock.now_ms()
        async with batched_unit_of_work(self.ctx.store) as uow:
            self.payment = await uow.update_payment(
                evolve(
                    payment,
                    status=transition(payment.status, PaymentStatus.AWAITING_PAYMENT),
                    psp_session_id=registration.session_id,
                    hosted_url=registration.hosted_url,
                    updated_at_ms=now_ms,
                )
            )
            await uow.append_outbox(self._event_message("payment.awaiting_payment"))
        self._ring()
        self._schedule_expiry()
        return self.payment

    def _schedule_expiry(self) -> None:
        assert self.payment is not None
        delay_s = max(0.0, (self.payment.expires_at_ms - self.ctx.clock.now_ms()) / 1000)
        self._expire_later(delay_s)

    def _expire_later(self, delay_s: float) -> None:
        """Tell this checkout ExpireCheckout in `delay_s`, replacing its pending expiry."""
        ctx, payment_id, attempts = self.ctx, self.payment_id, self.expire_attempts
        self._cancel_expiry()

        async def fire() -> None:
            if ctx.checkout_expiries.get(payment_id) is handle:
                del ctx.checkout_expiries[payment_id]
            await ctx.system.tell(CHECKOUT, payment_id, ExpireCheckout(attempts))

        handle = ctx.timers.call_later(delay_s, fire)
        ctx.checkout_expiries[payment_id] = handle

    def _cancel_expiry(self) -> None:
        """Drop the pending expiry, to replace it or once the payment has left AWAITING_PAYMENT
        in a *committed* unit of work: no transition leads back, so the expiry would only
        start an incarnation (a store read) to answer "not_awaiting"."""
        handle = self.ctx.checkout_expiries.pop(self.payment_id, None)
        if handle is not None:
            handle.cancel()

    # --- the buyer's outcome -----------------------------------------------------------------
    async def _apply_event(self, event: PspNotification) -> str:
        record = PspEvent(
            event.event_id, event.kind.value, dict(event.raw), self.ctx.clock.now_ms()
        )
        payment = self.payment
        target = _SESSION_OUTCOMES.get(event.kind)
        if payment is not None and payment.status is PaymentStatus.CREATED and target is not None:
            # We have not recorded the session yet (registration in flight or retrying): keep
            # nothing, so the PSP delivers the event again later.
            return "retry_later"
        recorded: PspEvent | None = record
        if "event_recorded_before_effect" in self.ctx.faults:  # planted bug, test-only seam
            try:
                async with self.ctx.store.unit_of_work() as uow:
                    await uow.record_psp_event(record)
            except DuplicateKey:
                return "duplicate"
            recorded = None
        try:
            async with batched_unit_of_work(self.ctx.store) as uow:
                if recorded is not None:
                    await uow.record_psp_event(recorded)
                if payment is None:
                    log.warning(
                        "PSP event %s for unknown payment %s", event.event_id, event.reference
                    )
                    return "unknown_reference"
                if target is None or not can_transition(payment.status, target):
                    if event.kind is PspEventKind.SESSION_AUTHORIZED and is_terminal(
                        payment.status
                    ):
                        # Money authorized for a checkout we already gave up: a human must look.
                        await uow.append_outbox(
                            self._event_message("payment.authorized_after_close", event.event_id)
                        )
                    return "ignored"
                if target is PaymentStatus.AUTHORIZED:
                    await self._authorize(uow, payment)
                else:
                    await self._close(uow, payment, target, event.reason or event.kind.value)
        except DuplicateKey as exc:
            if exc.key != "psp_events.event_id":
                raise
            await self.on_start()  # nothing of this unit was kept
            return "duplicate"
        self._ring()
        self._cancel_expiry()  # committed: AUTHORIZED, FAILED or EXPIRED
        if self.payment is not None and self.payment.status is PaymentStatus.AUTHORIZED:
            await self._execute_orders(fresh=True)
        return "applied"

    async def _authorize(self, uow: UnitOfWork, payment: Payment) -> None:
        """AUTHORIZED, and its unstarted orders EXECUTING, in one unit of work.

        Starting the orders here spares each order a unit of work of its own before its
        capture; `_execute_orders(fresh=True)` then tells them to capture at once.
        """
        now_ms = self.ctx.clock.now_ms()
        self.payment = await uow.update_payment(
            evolve(
                payment,
                status=transition(payment.status, PaymentStatus.AUTHORIZED),
                updated_at_ms=now_ms,
            )
        )
        self._started = []
        for order in await uow.get_orders(payment.payment_id):
            if order.status is OrderStatus.NOT_STARTED:
                order = await uow.update_order(
                    evolve(
                        order,
                        status=transition(order.status, OrderStatus.EXECUTING),
                        updated_at_ms=now_ms,
                    )
                )
            self._started.append(order)
        await uow.append_outbox(self._event_message("payment.authorized"))

    async def _close(
        self, uow: UnitOfWork, payment: Payment, target: PaymentStatus, reason: str
    ) -> None:
        """FAILED / EXPIRED / REJECTED: the payment and its unstarted orders end together."""
        now_ms = self.ctx.clock.now_ms()
        self.payment = await uow.update_payment(
            evolve(
                payment,
                status=transition(payment.status, target),
                failure_reason=reason,
                updated_at_ms=now_ms,
            )
        )
        for order in await uow.get_orders(payment.payment_id):
            if order.status is OrderStatus.NOT_STARTED:
                await uow.update_order(
                    evolve(
                        order,
                        status=transition(order.status, OrderStatus.FAILED),
                        failure_reason=f"checkout_{target.value.lower()}",
                        updated_at_ms=now_ms,
                    )
                )
        await uow.append_outbox(self._event_message(f"payment.{target.value.lower()}"))

    async def _finish(self, target: PaymentStatus, reason: str) -> Payment:
        assert self.payment is not None
        async with self.ctx.store.unit_of_work() as uow:
            await self._close(uow, self.payment, target, reason)
        self._ring()
        self._cancel_expiry()
        return self.payment

    async def _expire(self) -> str:
        payment = self.payment
        assert payment is not None
        if payment.status is not PaymentStatus.AWAITING_PAYMENT:
            return "not_awaiting"
        assert payment.psp_session_id is not None
        if self.ctx.clock.now_ms() < payment.expires_at_ms:
            self._schedule_expiry()
            return "not_yet"
        try:
            with trio.fail_after(self.ctx.config.psp_call_timeout_s):
                status = await self.ctx.gateway.expire_session(payment.psp_session_id)
        except (GatewayUnavailable, trio.TooSlowError):
            # Back off like any PSP call: during an outage a fixed 1 s retry from every checkout
            # awaiting its buyer would hammer the PSP as it comes back.
            self.expire_attempts += 1
            self._expire_later(self.ctx.backoff_s(self.expire_attempts))
            return "retry"
        if status is SessionStatus.REVIEW:
            self._expire_later(REVIEW_RECHECK_S)
            return "in_review"
        if (
            status is SessionStatus.AUTHORIZED
            and "expiry_ignores_late_authorization" not in self.ctx.faults  # else planted bug
        ):
            # The buyer paid but the webhook is late or lost: the PSP's word decides.
            async with self.ctx.store.unit_of_work() as uow:
                await self._authorize(uow, payment)
            self._ring()
            self._cancel_expiry()
            await self._execute_orders(fresh=True)
            return "authorized"
        target = PaymentStatus.FAILED if status is SessionStatus.DECLINED else PaymentStatus.EXPIRED
        await self._finish(target, f"session_{status.value}")
        return target.value

    # --- orders and completion ---------------------------------------------------------------
    async def _execute_orders(self, *, fresh: bool = False) -> None:
        """Tell every unfinished order to capture; `fresh` right after `_authorize` committed."""
        payment = self.payment
        assert payment is not None and payment.psp_session_id is not None
        if fresh:
            orders, self._started = self._started, []
        else:
            orders = await self.ctx.store.get_orders(payment.payment_id)
        for order in orders:
            if order.status in (OrderStatus.NOT_STARTED, OrderStatus.EXECUTING) or (
                order.status is OrderStatus.SUCCESS and not order.booked  # an older version's
            ):
                await self.ctx.system.tell(
                    ORDER,
                    order.order_id,
                    ExecuteOrder(
                        payment.psp_session_id, fresh=fresh, order=order if fresh else None
                    ),
                )

    async def _check_completion(self) -> str:
        payment = self.payment
        assert payment is not None
        if "crash_in_completion_check" in self.ctx.faults:  # planted bug, test-only seam
            raise RuntimeError("planted: completion check crashed")
        if payment.status is not PaymentStatus.AUTHORIZED:
            return payment.status.value
        orders = await self.ctx.store.get_orders(payment.payment_id)
        done = all(
            o.status is OrderStatus.FAILED or (o.status is OrderStatus.SUCCESS and o.booked)
            for o in orders
        )
        if "completed_before_orders_final" in self.ctx.faults:  # planted bug, test-only seam
            done = all(o.status is not OrderStatus.NOT_STARTED for o in orders)
        if not done:
            return "waiting"
        succeeded = any(o.status is OrderStatus.SUCCESS for o in orders)
        if "partial_capture_marks_failed" in self.ctx.faults:  # planted bug, test-only seam
            succeeded = all(o.status is OrderStatus.SUCCESS for o in orders)
        target = PaymentStatus.COMPLETED if succeeded else PaymentStatus.FAILED
        async with batched_unit_of_work(self.ctx.store) as uow:
            self.payment = await uow.update_payment(
                evolve(
                    payment,
                    status=transition(payment.status, target),
                    failure_reason=None if succeeded else "every_order_failed",
                    updated_at_ms=self.ctx.clock.now_ms(),
                )
            )
            await uow.append_outbox(self._event_message(f"payment.{target.value.lower()}"))
        self._ring()
        return target.value

    async def _resume(self) -> str:
        payment = self.payment
        assert payment is not None
        if payment.status is PaymentStatus.CREATED:
            await self._register()
        elif payment.status is PaymentStatus.AWAITING_PAYMENT:
            self._schedule_expiry()
        elif payment.status is PaymentStatus.AUTHORIZED:
            await self._execute_orders()
            await self._check_completion()
        return payment.status.value

    def _ring(self) -> None:
        """Wake the consumers of the topics this actor wrote (after its commit)."""
        topics, self._topics = self._topics, set()
        self.ctx.doorbell.ring(topics)

    def _event_message(self, topic: str, event_id: str | None = None) -> Any:
        self._topics.add(topic)
        payment = self.payment
        assert payment is not None
        payload = {
            "payment_id": payment.payment_id,
            "checkout_id": payment.checkout_id,
            "status": payment.status.value,
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
        }
        if event_id is not None:
            payload["psp_event_id"] = event_id
        return self.ctx.message(topic, payment.payment_id, payload)


_SESSION_OUTCOMES = {
    PspEventKind.SESSION_AUTHORIZED: PaymentStatus.AUTHORIZED,
    PspEventKind.SESSION_DECLINED: PaymentStatus.FAILED,
    PspEventKind.SESSION_EXPIRED: PaymentStatus.EXPIRED,
}
