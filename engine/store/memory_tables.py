"""The memory store's committed tables: what a unit of work validates against and applies to.

Split from memory_unit.py so the unit of work (an overlay, its validation and its apply) reads
on its own; the tables are plain dicts and sets, indexed the way the store's reads need them
(orders by payment, entries by account, unfinished aggregates, deliveries pending per
subscriber).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import attrs

from engine.access import ApiKey, WebhookEndpoint
from engine.ledger import Entry, Transaction
from engine.records import (
    DeadLetter,
    IdempotencyRecord,
    OutboxMessage,
    Payment,
    PaymentOrder,
    PspEvent,
)
from engine.states import OrderStatus, is_terminal
from engine.store.memory_disputes import DisputeTable
from engine.store.memory_payouts import PayoutTable
from engine.store.memory_refunds import RefundTable


def zero_pair() -> list[int]:
    return [0, 0]


def order_unfinished(order: PaymentOrder) -> bool:
    return not is_terminal(order.status) or (
        order.status is OrderStatus.SUCCESS and not order.booked
    )


@attrs.define
class Pending:
    seq: int
    attempts: int
    next_attempt_at_ms: int
    last_error: str | None = None


class Tables:
    """The committed state."""

    def __init__(self) -> None:
        self.payments: dict[str, Payment] = {}
        self.checkouts: dict[str, str] = {}
        self.orders: dict[str, PaymentOrder] = {}
        self.orders_by_payment: dict[str, list[str]] = defaultdict(list)
        self.unfinished_payments: set[str] = set()
        self.unfinished_orders: set[str] = set()
        self.txns: dict[str, Transaction] = {}
        self.txn_refs: dict[tuple[str, str], str] = {}
        self.entries_by_account: dict[str, list[tuple[str, int, Entry]]] = defaultdict(list)
        self.sums: dict[tuple[str, str], int] = defaultdict(int)
        self.wallets: dict[tuple[str, str], list[int]] = {}
        self.outbox: dict[str, OutboxMessage] = {}
        self.outbox_seq: dict[str, int] = {}
        self.subscriptions: dict[str, set[str]] = defaultdict(set)
        #: `subscriptions` sorted, per topic: a message fans out on every commit.
        self._subscribers_sorted: dict[str, tuple[str, ...]] = {}
        self.pending: dict[str, dict[str, Pending]] = defaultdict(dict)
        self.dead: dict[tuple[str, str], DeadLetter] = {}
        self.psp_events: dict[str, PspEvent] = {}
        self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        #: incarnation -> lease_until_ms; lapsed leases are dropped at each renewal.
        self.process_leases: dict[str, int] = {}
        self.next_seq = 1
        self.api_keys: dict[str, ApiKey] = {}  # by key_id
        self.api_key_ids: dict[str, str] = {}  # key_hash -> key_id
        self.webhook_endpoints: dict[str, WebhookEndpoint] = {}
        self.refunds = RefundTable()
        self.disputes = DisputeTable()
        self.payouts = PayoutTable()

    def subscribe(self, subscriber: str, topics: Sequence[str]) -> None:
        for topic in topics:
            self.subscriptions[topic].add(subscriber)
        self._subscribers_sorted.clear()

    def subscribers_of(self, topic: str) -> tuple[str, ...]:
        found = self._subscribers_sorted.get(topic)
        if found is None:
            found = tuple(sorted(self.subscriptions.get(topic, ())))
            self._subscribers_sorted[topic] = found
        return found
