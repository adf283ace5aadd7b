"""`PaymentService`: the facade the web layer, the CLI and the simulator call.

It validates commands, makes checkout creation idempotent on the checkout id, runs the risk
rules, records the checkout with its orders in one unit of work, and asks the checkout actor to
register it with the PSP. Refund requests go to the refund actor of their order, which decides
them one at a time (actors/refund.py). PSP events are routed to the actor that owns their
reference, which records and applies them in one unit of work.

Expected outcomes are values: a `Rejection` with a sentence-like reason. Bad input raises
`InvalidInput` whose message names the rule.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict, deque

import attrs

from actors.context import Context
from actors.messages import (
    CHECKOUT,
    ORDER,
    REFUND,
    ApplyDisputeEvent,
    ApplyPspEvent,
    ApplyRefundEvent,
    CreateRefund,
    RegisterCheckout,
)
from actors.runtime import AskTimeout
from engine.errors import DuplicateKey, InvalidInput, StoreUnavailable
from engine.gateway import DISPUTE_EVENTS, REFUND_EVENTS, SESSION_EVENTS, PspNotification
from engine.leases import NotOwner
from engine.money import AMOUNT_MINOR_MAX, currency_exponent
from engine.records import Dispute, Payment, PaymentOrder, PspEvent, Refund
from engine.risk import CheckoutFacts, RiskRule, assess, default_rules
from engine.states import OrderStatus, PaymentStatus, transition
from engine.store.batching import batched_unit_of_work

#: The longest identifier (checkout id, buyer id, seller id) we accept from outside.
EXTERNAL_ID_LENGTH_MAX = 128
#: The longest refund reason (free text from the merchant) we keep.
REFUND_REASON_LENGTH_MAX = 500


@attrs.frozen
class OrderLine:
    seller_id: str
    amount_minor: int


@attrs.frozen
class CreateCheckout:
    checkout_id: str
    buyer_id: str
    currency: str
    orders: tuple[OrderLine, ...]
    return_url: str | None = None

    def fingerprint(self) -> str:
        body = json.dumps(
            [self.buyer_id, self.currency, [(o.seller_id, o.amount_minor) for o in self.orders]],
            separators=(",", ":"),
        )
        return hashlib.sha256(body.encode()).hexdigest()


@attrs.frozen
class Rejection:
    """An expected refusal: `reason` is a stable machine word, `detail` a sentence."""

    reason: str
    detail: str


@attrs.frozen
class PaymentView:
    payment: Payment
    orders: tuple[PaymentOrder, ...]
    created: bool = False


def _check_external_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > EXTERNAL_ID_LENGTH_MAX:
        raise InvalidInput(f"{name} must be a string of 1..{EXTERNAL_ID_LENGTH_MAX} characters")
    if not value.isprintable() or value != value.strip():
        raise InvalidInput(f"{name} must be printable with no surrounding whitespace")
    return value


def validate(command: CreateCheckout, orders_max: int) -> None:
    """Raise InvalidInput naming the first broken rule of a checkout command."""
    _check_external_id("checkout_id", command.checkout_id)
    _check_external_id("buyer_id", command.buyer_id)
    currency_exponent(command.currency)
    if not command.orders:
        raise InvalidInput("orders must hold at least one order (the cart is empty)")
    if len(command.orders) > orders_max:
        raise InvalidInput(f"orders holds {len(command.orders)} orders; the limit is {orders_max}")
    sellers = [o.seller_id for o in command.orders]
    for seller in sellers:
        _check_external_id("seller_id", seller)
    if len(set(sellers)) != len(sellers):
        raise InvalidInput("orders must name each seller once (one payment order per seller)")
    for line in command.orders:
        if isinstance(line.amount_minor, bool) or not isinstance(line.amount_minor, int):
            raise InvalidInput("order amount must be an integer of minor units")
        if line.amount_minor <= 0:
            raise InvalidInput(f"order amount for {line.seller_id} must be positive")
    if sum(o.amount_minor for o in command.orders) > AMOUNT_MINOR_MAX:
        raise InvalidInput("checkout total exceeds the amount limit")


class VelocityWindow:
    """Recent checkouts per buyer within a window, for the velocity rule; bounded in buyers."""

    def __init__(self, window_s: float, buyers_max: int) -> None:
        self._window_s = window_s
        self._buyers_max = buyers_max
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def count(self, buyer_id: str, now_s: float) -> int:
        times = self._seen.get(buyer_id)
        if times is None:
            return 0
        while times and times[0] <= now_s - self._window_s:
            times.popleft()
        return len(times)

    def forget(self, buyer_id: str, now_s: float) -> None:
        """Take back an `add` whose checkout was never recorded (the store was unavailable),
        so a client retrying through an outage is not rejected for velocity."""
        times = self._seen.get(buyer_id)
        if times is not None and now_s in times:
            times.remove(now_s)

    def add(self, buyer_id: str, now_s: float) -> None:
        times = self._seen.pop(buyer_id, None) or deque()
        times.append(now_s)
        self._seen[buyer_id] = times
        while len(self._seen) > self._buyers_max:
            self._seen.popitem(last=False)


class PaymentService:
    def __init__(self, ctx: Context, rules: tuple[RiskRule, ...] | None = None) -> None:
        self.ctx = ctx
        self.rules = default_rules(ctx.config) if rules is None else rules
        self.velocity = VelocityWindow(
            ctx.config.risk_velocity_window_s, ctx.config.risk_velocity_buyers_tracked_max
        )

    async def create_checkout(
        self, command: CreateCheckout, *, register_timeout_s: float | None = None
    ) -> PaymentView | Rejection:
        validate(command, self.ctx.config.orders_per_checkout_max)
        existing = await self._existing(command)
        if existing is not None:
            return existing
        now_ms = self.ctx.clock.now_ms()
        now_s = self.ctx.clock.monotonic()
        total = sum(o.amount_minor for o in command.orders)
        facts = CheckoutFacts(
            buyer_id=command.buyer_id,
            currency=command.currency,
            amount_minor=total,
            seller_ids=tuple(o.seller_id for o in command.orders),
            recent_checkouts_by_buyer=self.velocity.count(command.buyer_id, now_s),
        )
        risk = assess(self.rules, facts)
        self.velocity.add(command.buyer_id, now_s)
        status = PaymentStatus.CREATED
        if risk is not None:
            status = transition(PaymentStatus.CREATED, PaymentStatus.REJECTED_BY_RISK)
        payment = Payment(
            payment_id=self.ctx.ids.new("pay"),
            checkout_id=command.checkout_id,
            buyer_id=command.buyer_id,
            currency=command.currency,
            amount_minor=total,
            status=status,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
            expires_at_ms=now_ms + int(self.ctx.config.checkout_expiry_s * 1000),
            return_url=command.return_url,
            failure_reason=risk,
        )
        order_status = OrderStatus.NOT_STARTED if risk is None else OrderStatus.FAILED
        orders = tuple(
            PaymentOrder(
                order_id=self.ctx.ids.new("ord"),
                payment_id=payment.payment_id,
                seller_id=line.seller_id,
                currency=command.currency,
                amount_minor=line.amount_minor,
                status=order_status,
                created_at_ms=now_ms,
                updated_at_ms=now_ms,
                failure_reason=None if risk is None else "rejected_by_risk",
            )
            for line in command.orders
        )
        topic = "payment.created" if risk is None else "payment.rejected_by_risk"
        try:
            async with batched_unit_of_work(self.ctx.store) as uow:
                await uow.insert_payment(payment, orders)
                await uow.append_outbox(
                    self.ctx.message(
                        topic,
                        payment.payment_id,
                        {
                            "payment_id": payment.payment_id,
                            "checkout_id": payment.checkout_id,
                            "fingerprint": command.fingerprint(),
                            "status": status.value,
                            "amount_minor": total,
                            "currency": command.currency,
                        },
                    )
                )
        except StoreUnavailable:
            self.velocity.forget(command.buyer_id, now_s)
            raise
        except DuplicateKey as exc:
            if exc.key != "payments.checkout_id":
                raise
            # Lost the race against a concurrent request with the same checkout id.
            existing = await self._existing(command)
            assert existing is not None, "duplicate checkout id but no payment found"
            return existing
        self.ctx.doorbell.ring((topic,))
        if risk is not None:
            return PaymentView(payment, orders, created=True)
        try:
            registered = await self.ctx.system.ask(
                CHECKOUT,
                payment.payment_id,
                RegisterCheckout(payment),
                timeout_s=register_timeout_s,
            )
            payment = registered
        except (AskTimeout, StoreUnavailable, NotOwner):
            # The payment is recorded; its actor keeps registering it (after an outage too,
            # actors/runtime.py; in the process that owns it, actors/engine_leases.py): the
            # client sees CREATED and may read it again.
            pass
        return PaymentView(payment, orders, created=True)

    async def _existing(self, command: CreateCheckout) -> PaymentView | Rejection | None:
        async with self.ctx.store.unit_of_work() as uow:
            payment = await uow.get_payment_by_checkout(command.checkout_id)
            if payment is None:
                return None
            orders = await uow.get_orders(payment.payment_id)
        same = (
            payment.buyer_id == command.buyer_id
            and payment.currency == command.currency
            and sorted((o.seller_id, o.amount_minor) for o in orders)
            == sorted((o.seller_id, o.amount_minor) for o in command.orders)
        )
        if not same:
            return Rejection(
                "checkout_id_reused",
                f"checkout {command.checkout_id} exists with a different buyer, currency or cart",
            )
        return PaymentView(payment, tuple(orders), created=False)

    async def get_payment(self, payment_id: str) -> PaymentView | None:
        payment = await self.ctx.store.get_payment(payment_id)
        if payment is None:
            return None
        return PaymentView(payment, tuple(await self.ctx.store.get_orders(payment_id)))

    async def handle_psp_event(self, event: PspNotification) -> str:
        """Record and apply a verified PSP event; returns what happened to it.

        'applied', 'duplicate', 'ignored' (recorded, changes nothing), 'unknown_reference'
        (recorded for investigation), or 'retry_later' (nothing recorded: redeliver).
        """
        if event.kind in REFUND_EVENTS:
            return await self._apply_refund_event(event)
        if event.kind in DISPUTE_EVENTS:
            return await self._apply_dispute_event(event)
        kind = CHECKOUT if event.kind in SESSION_EVENTS else ORDER
        reply = await self.ctx.system.ask(kind, event.reference, ApplyPspEvent(event))
        assert isinstance(reply, str)
        return reply

    async def _apply_refund_event(self, event: PspNotification) -> str:
        """A refund event names our refund id (the PSP key): its order's refund actor records
        and applies it in one unit of work. An event for no refund of ours is kept (for
        investigation) and changes nothing."""
        refund = await self.ctx.store.get_refund(event.reference)
        if refund is not None:
            reply = await self.ctx.system.ask(REFUND, refund.order_id, ApplyRefundEvent(event))
            assert isinstance(reply, str)
            return reply
        return await self._record_unknown(event)

    async def _apply_dispute_event(self, event: PspNotification) -> str:
        """A dispute event names the disputed capture's key, our order id: the order's refund
        actor records and applies it (actors/dispute.py). One for no order of ours is kept."""
        if await self.ctx.store.get_order(event.reference) is not None:
            reply = await self.ctx.system.ask(REFUND, event.reference, ApplyDisputeEvent(event))
            assert isinstance(reply, str)
            return reply
        return await self._record_unknown(event)

    async def _record_unknown(self, event: PspNotification) -> str:
        record = PspEvent(
            event.event_id, event.kind.value, dict(event.raw), self.ctx.clock.now_ms()
        )
        try:
            async with batched_unit_of_work(self.ctx.store) as uow:
                await uow.record_psp_event(record)
        except DuplicateKey as exc:
            if exc.key != "psp_events.event_id":
                raise
            return "duplicate"
        return "unknown_reference"

    # --- refunds (actors/refund.py) -----------------------------------------------------------
    async def create_refund(
        self,
        order_id: str,
        amount_minor: int | None = None,
        reason: str | None = None,
        *,
        idempotency_key: str | None = None,
        currency: str | None = None,
    ) -> Refund | Rejection:
        """Refund `amount_minor` (None: all that is left) of a captured order, once per
        `idempotency_key` (None: a new key, so every call is a new request).

        The caller namespaces the key (the HTTP layer prefixes its API key's id), since one
        creation key names one refund across the whole engine. Rejections: order_not_found,
        order_not_captured, refund_currency_mismatch, refund_amount_not_positive,
        refund_exceeds_captured, order_fully_refunded, refunds_per_order_exceeded,
        creation_key_reused.
        """
        _check_external_id("order_id", order_id)
        if amount_minor is not None and (
            isinstance(amount_minor, bool) or not isinstance(amount_minor, int)
        ):
            raise InvalidInput("refund amount must be an integer of minor units")
        if amount_minor is not None and amount_minor > AMOUNT_MINOR_MAX:
            raise InvalidInput("refund amount exceeds the amount limit")
        if currency is not None:
            currency_exponent(currency)
        if reason is not None and (
            not isinstance(reason, str) or len(reason) > REFUND_REASON_LENGTH_MAX
        ):
            raise InvalidInput(f"reason must be a string of at most {REFUND_REASON_LENGTH_MAX}")
        key = self.ctx.ids.new("key") if idempotency_key is None else idempotency_key
        if not key or len(key) > 2 * EXTERNAL_ID_LENGTH_MAX + 1:
            raise InvalidInput("idempotency key must be 1..257 characters")
        reply = await self.ctx.system.ask(
            REFUND, order_id, CreateRefund(key, amount_minor, currency, reason)
        )
        assert isinstance(reply, Refund | Rejection), reply
        return reply

    async def get_refund(self, refund_id: str) -> Refund | None:
        return await self.ctx.store.get_refund(refund_id)

    async def list_refunds(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Refund]:
        """The order's refunds, ascending id, at most `limit` (1..1000) after `after`."""
        return await self.ctx.store.list_refunds(order_id, limit, after)

    # --- disputes (actors/dispute.py) ---------------------------------------------------------
    async def get_dispute(self, dispute_id: str) -> Dispute | None:
        return await self.ctx.store.get_dispute(dispute_id)

    async def list_disputes(
        self, limit: int, after: str | None = None, seller_id: str | None = None
    ) -> list[Dispute]:
        """Disputes ascending id, at most `limit` (1..1000) after `after`; one seller's when
        `seller_id` is given."""
        return await self.ctx.store.list_disputes(limit, after, seller_id)
