"""The memory store's tables and its unit of work: an overlay validated and applied at commit.

Split from memory.py (the store and its committed-state reads) so each file holds one idea. A
unit of work writes into its own overlay (reads see their own writes) and remembers the
version of every row it updates; `commit()` validates the overlay against the committed tables
(unique keys, versions, non-negative wallets) and then applies it, with no checkpoint in
between, so a commit is atomic under trio.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs

from engine.access import ApiKey, WebhookEndpoint
from engine.errors import (
    DuplicateKey,
    NegativeBalance,
    NotFound,
    UnbalancedTransaction,
    VersionConflict,
)
from engine.ledger import Entry, Transaction, imbalance
from engine.records import (
    Balance,
    DeadLetter,
    Dispute,
    IdempotencyRecord,
    OutboxMessage,
    Payment,
    PaymentOrder,
    PspEvent,
    Refund,
    evolve,
)
from engine.states import is_terminal
from engine.store.memory_api import ApiUnitMixin
from engine.store.memory_disputes import DisputeOverlay
from engine.store.memory_payouts import PayoutOverlay, PayoutUnitMixin
from engine.store.memory_receivables import ReceivableUnitMixin
from engine.store.memory_refunds import RefundOverlay
from engine.store.memory_tables import Pending, Tables, order_unfinished, zero_pair

Checkpoint = Callable[[], Awaitable[None]]


async def _no_checkpoint() -> None:
    return None


_DELETED = None


class MemoryUnitOfWork(PayoutUnitMixin, ReceivableUnitMixin, ApiUnitMixin):
    def __init__(self, tables: Tables, checkpoint: Checkpoint) -> None:
        self._t = tables
        self._cp = checkpoint
        self._payments: dict[str, Payment] = {}
        self._payment_base: dict[str, int | None] = {}  # None: inserted by this unit
        self._orders: dict[str, PaymentOrder] = {}
        self._order_base: dict[str, int | None] = {}
        self._txns: list[Transaction] = []
        self._deltas: dict[tuple[str, str], list[int]] = defaultdict(zero_pair)
        self._outbox: list[OutboxMessage] = []
        self._delivery_ops: list[tuple[str, str, str, int, str | None]] = []
        self._psp_events: list[PspEvent] = []
        self._idem: dict[tuple[str, str], IdempotencyRecord | None] = {}
        self._idem_claims: set[tuple[str, str]] = set()
        self._api_keys: dict[str, ApiKey] = {}  # inserted or revoked by this unit, by key_id
        self._api_key_new: set[str] = set()
        self._endpoints: dict[str, WebhookEndpoint] = {}
        self._refunds = RefundOverlay(tables.refunds)
        self._disputes = DisputeOverlay(tables.disputes)
        self._payouts = PayoutOverlay(tables.payouts)

    # --- payments and orders ---------------------------------------------------------------
    async def insert_payment(self, payment: Payment, orders: Sequence[PaymentOrder]) -> None:
        assert all(o.payment_id == payment.payment_id for o in orders)
        assert sum(o.amount_minor for o in orders) == payment.amount_minor, "orders != payment"
        if await self.get_payment_by_checkout(payment.checkout_id) is not None:
            raise DuplicateKey("payments.checkout_id", payment.checkout_id)
        if payment.payment_id in self._t.payments or payment.payment_id in self._payments:
            raise DuplicateKey("payments.payment_id", payment.payment_id)
        seen: set[str] = set()
        for order in orders:
            if (
                order.order_id in seen
                or order.order_id in self._t.orders
                or (order.order_id in self._orders)
            ):
                raise DuplicateKey("payment_orders.order_id", order.order_id)
            seen.add(order.order_id)
        self._payments[payment.payment_id] = payment
        self._payment_base[payment.payment_id] = None
        for order in orders:
            self._orders[order.order_id] = order
            self._order_base[order.order_id] = None

    async def update_payment(self, payment: Payment) -> Payment:
        current = await self.get_payment(payment.payment_id)
        if current is None:
            raise NotFound(f"payment {payment.payment_id} does not exist")
        if current.version != payment.version:
            raise VersionConflict(
                f"payment {payment.payment_id} is at version {current.version}, "
                f"not {payment.version}"
            )
        if current.checkout_id != payment.checkout_id:
            raise AssertionError("checkout_id is immutable")
        updated = evolve(payment, version=payment.version + 1)
        self._payment_base.setdefault(payment.payment_id, current.version)
        self._payments[payment.payment_id] = updated
        return updated

    async def update_order(self, order: PaymentOrder) -> PaymentOrder:
        current = await self.get_order(order.order_id)
        if current is None:
            raise NotFound(f"payment order {order.order_id} does not exist")
        if current.version != order.version:
            raise VersionConflict(
                f"payment order {order.order_id} is at version {current.version}, "
                f"not {order.version}"
            )
        updated = evolve(order, version=order.version + 1)
        self._order_base.setdefault(order.order_id, current.version)
        self._orders[order.order_id] = updated
        return updated

    async def get_payment(self, payment_id: str) -> Payment | None:
        return self._payments.get(payment_id) or self._t.payments.get(payment_id)

    async def get_payment_by_checkout(self, checkout_id: str) -> Payment | None:
        for payment in self._payments.values():
            if payment.checkout_id == checkout_id:
                return payment
        payment_id = self._t.checkouts.get(checkout_id)
        return None if payment_id is None else await self.get_payment(payment_id)

    async def get_order(self, order_id: str) -> PaymentOrder | None:
        return self._orders.get(order_id) or self._t.orders.get(order_id)

    async def get_orders(self, payment_id: str) -> list[PaymentOrder]:
        ids = set(self._t.orders_by_payment.get(payment_id, ()))
        ids.update(o.order_id for o in self._orders.values() if o.payment_id == payment_id)
        found = [await self.get_order(i) for i in sorted(ids)]
        return [o for o in found if o is not None]

    # --- refunds (memory_refunds.py) -------------------------------------------------------
    async def insert_refund(self, refund: Refund) -> None:
        self._refunds.insert(refund, lambda i: self._orders.get(i) or self._t.orders.get(i))

    async def update_refund(self, refund: Refund) -> Refund:
        return self._refunds.update(refund)

    async def get_refund(self, refund_id: str) -> Refund | None:
        return self._refunds.get(refund_id)

    async def get_refund_by_creation_key(self, creation_key: str) -> Refund | None:
        return self._refunds.by_creation_key(creation_key)

    async def list_refunds(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Refund]:
        return self._refunds.of_order(order_id, limit, after)

    # --- disputes (memory_disputes.py) -----------------------------------------------------
    async def insert_dispute(self, dispute: Dispute) -> None:
        self._disputes.insert(dispute, lambda i: self._orders.get(i) or self._t.orders.get(i))

    async def update_dispute(self, dispute: Dispute) -> Dispute:
        return self._disputes.update(dispute)

    async def get_dispute(self, dispute_id: str) -> Dispute | None:
        return self._disputes.get(dispute_id)

    async def list_order_disputes(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Dispute]:
        return self._disputes.of_order(order_id, limit, after)

    # --- ledger and wallets ----------------------------------------------------------------
    def _committed_entries(self, account: str) -> list[tuple[str, int, Entry]]:
        return self._t.entries_by_account.get(account, [])

    def _committed_txn(self, txn_id: str) -> Transaction:
        return self._t.txns[txn_id]

    async def post_transaction(self, txn: Transaction) -> None:
        # Assert at the boundary, as the database's deferred trigger does at commit.
        if len(txn.entries) < 2 or imbalance(txn.entries):
            raise UnbalancedTransaction(f"transaction {txn.txn_id} does not balance")
        if txn.txn_id in self._t.txns or any(t.txn_id == txn.txn_id for t in self._txns):
            raise DuplicateKey("ledger_transactions.txn_id", txn.txn_id)
        if await self.get_transaction_by_reference(txn.kind, txn.reference) is not None:
            raise DuplicateKey("ledger_transactions.kind_reference", (txn.kind, txn.reference))
        deltas = txn.wallet_deltas()
        for key, (available, reserved) in deltas.items():
            base = self._t.wallets.get(key, [0, 0])
            mine = self._deltas.get(key, [0, 0])
            if base[0] + mine[0] + available < 0 or base[1] + mine[1] + reserved < 0:
                raise NegativeBalance(f"wallet {key[0]} {key[1]} would go below zero")
        for key, (available, reserved) in deltas.items():
            slot = self._deltas[key]
            slot[0] += available
            slot[1] += reserved
        self._txns.append(txn)

    async def get_transaction_by_reference(self, kind: str, reference: str) -> Transaction | None:
        for txn in self._txns:
            if txn.kind == kind and txn.reference == reference:
                return txn
        txn_id = self._t.txn_refs.get((kind, reference))
        return None if txn_id is None else self._t.txns[txn_id]

    async def get_balance(self, merchant_id: str, currency: str) -> Balance:
        base = self._t.wallets.get((merchant_id, currency), [0, 0])
        mine = self._deltas.get((merchant_id, currency), [0, 0])
        return Balance(merchant_id, currency, base[0] + mine[0], base[1] + mine[1])

    # --- outbox ----------------------------------------------------------------------------
    async def append_outbox(self, message: OutboxMessage) -> None:
        if message.message_id in self._t.outbox or any(
            m.message_id == message.message_id for m in self._outbox
        ):
            raise DuplicateKey("outbox.message_id", message.message_id)
        self._outbox.append(message)

    async def ack_delivery(self, subscriber: str, message_id: str) -> None:
        self._delivery_ops.append(("ack", subscriber, message_id, 0, None))

    async def retry_delivery(
        self, subscriber: str, message_id: str, next_attempt_at_ms: int, error: str
    ) -> None:
        self._delivery_ops.append(("retry", subscriber, message_id, next_attempt_at_ms, error))

    async def dead_letter_delivery(
        self, subscriber: str, message_id: str, error: str, now_ms: int
    ) -> None:
        self._delivery_ops.append(("dead", subscriber, message_id, now_ms, error))

    async def replay_dead_letter(self, subscriber: str, message_id: str, now_ms: int) -> bool:
        if (subscriber, message_id) not in self._t.dead:
            return False
        self._delivery_ops.append(("replay", subscriber, message_id, now_ms, None))
        return True

    # --- inbound dedup and idempotency -----------------------------------------------------
    async def record_psp_event(self, event: PspEvent) -> None:
        if event.event_id in self._t.psp_events or any(
            e.event_id == event.event_id for e in self._psp_events
        ):
            raise DuplicateKey("psp_events.event_id", event.event_id)
        self._psp_events.append(event)

    async def begin_idempotent(self, record: IdempotencyRecord) -> None:
        key = (record.scope, record.key)
        if await self.get_idempotency(*key) is not None:
            raise DuplicateKey("idempotency.scope_key", key)
        self._idem[key] = record
        self._idem_claims.add(key)

    async def get_idempotency(self, scope: str, key: str) -> IdempotencyRecord | None:
        if (scope, key) in self._idem:
            return self._idem[(scope, key)]
        return self._t.idempotency.get((scope, key))

    async def complete_idempotent(
        self, scope: str, key: str, status: int, body: bytes, headers: Mapping[str, str]
    ) -> None:
        record = await self.get_idempotency(scope, key)
        if record is None:
            raise NotFound(f"idempotency key {key!r} is not claimed")
        self._idem[(scope, key)] = attrs.evolve(
            record,
            completed=True,
            response_status=status,
            response_body=bytes(body),
            response_headers=dict(headers),
        )

    async def release_idempotent(self, scope: str, key: str) -> None:
        self._idem[(scope, key)] = _DELETED

    # --- commit ----------------------------------------------------------------------------
    def _validate(self) -> None:
        t = self._t
        for payment_id, base in self._payment_base.items():
            committed = t.payments.get(payment_id)
            if base is None:
                if committed is not None:
                    raise DuplicateKey("payments.payment_id", payment_id)
                checkout_id = self._payments[payment_id].checkout_id
                if checkout_id in t.checkouts:
                    raise DuplicateKey("payments.checkout_id", checkout_id)
            elif committed is None or committed.version != base:
                raise VersionConflict(f"payment {payment_id} changed since it was read")
        for order_id, base in self._order_base.items():
            committed_order = t.orders.get(order_id)
            if base is None:
                if committed_order is not None:
                    raise DuplicateKey("payment_orders.order_id", order_id)
            elif committed_order is None or committed_order.version != base:
                raise VersionConflict(f"payment order {order_id} changed since it was read")
        for txn in self._txns:
            if txn.txn_id in t.txns:
                raise DuplicateKey("ledger_transactions.txn_id", txn.txn_id)
            if (txn.kind, txn.reference) in t.txn_refs:
                raise DuplicateKey("ledger_transactions.kind_reference", (txn.kind, txn.reference))
        for key, (available, reserved) in self._deltas.items():
            base_wallet = t.wallets.get(key, [0, 0])
            if base_wallet[0] + available < 0 or base_wallet[1] + reserved < 0:
                raise NegativeBalance(f"wallet {key[0]} {key[1]} would go below zero")
        for message in self._outbox:
            if message.message_id in t.outbox:
                raise DuplicateKey("outbox.message_id", message.message_id)
        for event in self._psp_events:
            if event.event_id in t.psp_events:
                raise DuplicateKey("psp_events.event_id", event.event_id)
        for claim in self._idem_claims:
            if claim in t.idempotency and self._idem.get(claim) is not _DELETED:
                raise DuplicateKey("idempotency.scope_key", claim)
        self._refunds.validate(lambda i: i in t.orders or i in self._orders)
        self._disputes.validate(lambda i: i in t.orders or i in self._orders)
        self._payouts.validate()

    def _apply(self) -> None:
        t = self._t
        for payment_id, payment in self._payments.items():
            if self._payment_base[payment_id] is None:
                t.checkouts[payment.checkout_id] = payment_id
            t.payments[payment_id] = payment
            if is_terminal(payment.status):
                t.unfinished_payments.discard(payment_id)
            else:
                t.unfinished_payments.add(payment_id)
        for order_id, order in self._orders.items():
            if self._order_base[order_id] is None:
                t.orders_by_payment[order.payment_id].append(order_id)
            t.orders[order_id] = order
            if order_unfinished(order):
                t.unfinished_orders.add(order_id)
            else:
                t.unfinished_orders.discard(order_id)
        for txn in self._txns:
            t.txns[txn.txn_id] = txn
            t.txn_refs[(txn.kind, txn.reference)] = txn.txn_id
            for entry_no, entry in enumerate(txn.entries):
                t.entries_by_account[entry.account].append((txn.txn_id, entry_no, entry))
                t.sums[(entry.account, entry.currency)] += entry.amount_minor
        for key, (available, reserved) in self._deltas.items():
            wallet = t.wallets.setdefault(key, [0, 0])
            wallet[0] += available
            wallet[1] += reserved
            assert wallet[0] >= 0 and wallet[1] >= 0
        for message in self._outbox:
            t.outbox[message.message_id] = message
            t.outbox_seq[message.message_id] = t.next_seq
            for subscriber in t.subscribers_of(message.topic):
                t.pending[subscriber][message.message_id] = Pending(
                    t.next_seq, 0, message.created_at_ms
                )
            t.next_seq += 1
        for op, subscriber, message_id, at_ms, error in self._delivery_ops:
            pending = t.pending[subscriber]
            if op == "ack":
                pending.pop(message_id, None)
            elif op == "retry" and message_id in pending:
                slot = pending[message_id]
                slot.attempts += 1
                slot.next_attempt_at_ms = at_ms
                slot.last_error = error
            elif op == "dead" and message_id in pending:
                slot = pending.pop(message_id)
                assert error is not None
                t.dead[(subscriber, message_id)] = DeadLetter(
                    subscriber, t.outbox[message_id], slot.attempts + 1, error, at_ms
                )
            elif op == "replay" and (subscriber, message_id) in t.dead:
                del t.dead[(subscriber, message_id)]
                pending[message_id] = Pending(t.outbox_seq[message_id], 0, at_ms)
        for event in self._psp_events:
            t.psp_events[event.event_id] = event
        self._refunds.apply()
        self._disputes.apply()
        self._payouts.apply()
        for key, record in self._idem.items():
            if record is _DELETED:
                t.idempotency.pop(key, None)
            else:
                t.idempotency[key] = record

    def wrote(self) -> bool:
        """Whether this unit wrote anything (a read-only unit has nothing to validate)."""
        return bool(
            self._payments
            or self._orders
            or self._txns
            or self._deltas
            or self._outbox
            or self._delivery_ops
            or self._psp_events
            or self._idem
            or self._api_keys
            or self._endpoints
            or self._refunds.rows
            or self._disputes.rows
            or self._payouts.wrote()
        )

    def commit(self) -> None:
        """Validate and apply atomically (no checkpoint in between)."""
        self._validate()
        self._validate_api()
        self._apply()
        self._apply_api()
