"""Small builders for records, shared by the test tiers."""

from __future__ import annotations

import itertools

from engine.ledger import Transaction, TransactionKind, capture_entries
from engine.money import Money
from engine.records import OutboxMessage, Payment, PaymentOrder, PspEvent
from engine.states import OrderStatus, PaymentStatus

_counter = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}_{next(_counter):026d}"


def payment_with_orders(
    amounts: list[int], currency: str = "USD", checkout_id: str | None = None
) -> tuple[Payment, list[PaymentOrder]]:
    payment_id = next_id("pay")
    payment = Payment(
        payment_id=payment_id,
        checkout_id=checkout_id or next_id("chk"),
        buyer_id="buyer-1",
        currency=currency,
        amount_minor=sum(amounts),
        status=PaymentStatus.CREATED,
        created_at_ms=1_000,
        updated_at_ms=1_000,
        expires_at_ms=10_000,
    )
    orders = [
        PaymentOrder(
            order_id=next_id("ord"),
            payment_id=payment_id,
            seller_id=f"seller-{i}",
            currency=currency,
            amount_minor=amount,
            status=OrderStatus.NOT_STARTED,
            created_at_ms=1_000,
            updated_at_ms=1_000,
        )
        for i, amount in enumerate(amounts)
    ]
    return payment, orders


def capture_txn(
    seller_id: str, amount_minor: int, currency: str = "USD", reference: str | None = None
) -> Transaction:
    entries, _, _ = capture_entries(seller_id, Money(amount_minor, currency), 1000)
    return Transaction(
        txn_id=next_id("txn"),
        kind=TransactionKind.CAPTURE,
        reference=reference or next_id("ord"),
        entries=entries,
        created_at_ms=2_000,
    )


def message(topic: str = "order.succeeded", key: str = "ord-1") -> OutboxMessage:
    return OutboxMessage(next_id("msg"), topic, key, {"order_id": key, "n": 1}, 3_000)


def psp_event(event_id: str | None = None) -> PspEvent:
    return PspEvent(event_id or next_id("evt"), "charge.captured", {"id": "x"}, 4_000)
