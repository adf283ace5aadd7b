"""The `Store` port: units of work over payments, orders, the ledger, the outbox and the keys.

Two implementations honour it with the same semantics, checked by one conformance suite
(tests/store): `memory` (for deterministic simulation) and `postgres` (the source of truth).

Semantics both stores guarantee:

- `async with store.unit_of_work() as uow:` commits when the block exits normally and rolls
  back when it raises; nothing of a rolled-back unit is visible afterwards (a crash is a
  rollback). Reads inside a unit see its own writes.
- Unique keys raise `DuplicateKey(key)` with the same `key` name in both stores:
  `payments.payment_id`, `payments.checkout_id`, `payment_orders.order_id`,
  `ledger_transactions.txn_id`, `ledger_transactions.kind_reference`,
  `outbox.message_id`, `psp_events.event_id`, `idempotency.scope_key`,
  `api_keys.key_id`, `api_keys.key_hash`, `refunds.refund_id`, `refunds.creation_key`,
  `disputes.dispute_id`.
- Updates are optimistic: the caller passes the record as it read it (its `version`); the store
  writes `version + 1` and raises `VersionConflict` if the row changed meanwhile.
- `post_transaction` appends the ledger transaction and applies its wallet deltas in the same
  unit, so wallet = ledger holds at every commit. A delta that would take a balance below zero
  raises `NegativeBalance`. Deltas are applied as increments, so concurrent postings to the
  same wallet never lose an update.
- Every outbox message is fanned out, in the same unit, to one pending delivery per subscriber
  of its topic. A subscriber's pending deliveries are its durable cursor: each is acked, retried
  at a later time, or dead-lettered, independently of other subscribers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from engine.access import ApiKey, WebhookEndpoint
from engine.ledger import Entry, Transaction
from engine.payouts import PayoutSchedule
from engine.reconciliation.run import ReconItem, ReconRun
from engine.records import (
    Balance,
    DeadLetter,
    Delivery,
    Dispute,
    IdempotencyRecord,
    OutboxMessage,
    Payment,
    PaymentOrder,
    Payout,
    PspEvent,
    Refund,
)

#: (txn_id, entry_no): the position of one ledger entry in an account's history.
EntryCursor = tuple[str, int]


#: The most rows one read returns; callers page with `starting_after`.
PAGE_SIZE_MAX = 1000


class UnitOfWork(Protocol):
    """One database transaction. All methods may raise `StoreError` subclasses."""

    # --- payments and orders ---------------------------------------------------------------
    async def insert_payment(self, payment: Payment, orders: Sequence[PaymentOrder]) -> None:
        """Record a checkout with its orders. Raises DuplicateKey on a known checkout id."""
        ...

    async def update_payment(self, payment: Payment) -> Payment:
        """Write `payment` (read at `payment.version`); returns it at the new version."""
        ...

    async def update_order(self, order: PaymentOrder) -> PaymentOrder:
        """Write `order` (read at `order.version`); returns it at the new version."""
        ...

    async def get_payment(self, payment_id: str) -> Payment | None: ...

    async def get_payment_by_checkout(self, checkout_id: str) -> Payment | None: ...

    async def get_order(self, order_id: str) -> PaymentOrder | None: ...

    async def get_orders(self, payment_id: str) -> list[PaymentOrder]:
        """The payment's orders, in order-id order."""
        ...

    # --- refunds ------------------------------------------------------------------------------
    async def insert_refund(self, refund: Refund) -> None:
        """Record a new refund of an existing order. DuplicateKey('refunds.refund_id' or
        'refunds.creation_key'); NotFound when its order does not exist."""
        ...

    async def update_refund(self, refund: Refund) -> Refund:
        """Write `refund` (read at `refund.version`); returns it at the new version."""
        ...

    async def get_refund(self, refund_id: str) -> Refund | None: ...

    async def get_refund_by_creation_key(self, creation_key: str) -> Refund | None: ...

    async def list_refunds(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Refund]:
        """The order's refunds, ascending refund id, strictly after `after`."""
        ...

    # --- disputes (migration 0007; actors/dispute.py) -----------------------------------------
    async def insert_dispute(self, dispute: Dispute) -> None:
        """Record a dispute the PSP opened on an existing order. DuplicateKey
        ('disputes.dispute_id'); NotFound when its order does not exist."""
        ...

    async def update_dispute(self, dispute: Dispute) -> Dispute:
        """Write `dispute` (read at `dispute.version`); returns it at the new version."""
        ...

    async def get_dispute(self, dispute_id: str) -> Dispute | None: ...

    async def list_order_disputes(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Dispute]:
        """The order's disputes, ascending dispute id, strictly after `after`."""
        ...

    # --- ledger and wallets ----------------------------------------------------------------
    async def post_transaction(self, txn: Transaction) -> None:
        """Append `txn` and apply its wallet deltas. DuplicateKey on (kind, reference)."""
        ...

    async def get_transaction_by_reference(
        self, kind: str, reference: str
    ) -> Transaction | None: ...

    async def get_balance(self, merchant_id: str, currency: str) -> Balance: ...

    # --- outbox ----------------------------------------------------------------------------
    async def append_outbox(self, message: OutboxMessage) -> None: ...

    async def ack_delivery(self, subscriber: str, message_id: str) -> None:
        """The subscriber handled the message; its delivery is done (idempotent)."""
        ...

    async def retry_delivery(
        self, subscriber: str, message_id: str, next_attempt_at_ms: int, error: str
    ) -> None:
        """Count a failed attempt and schedule the next one."""
        ...

    async def dead_letter_delivery(
        self, subscriber: str, message_id: str, error: str, now_ms: int
    ) -> None:
        """Move the delivery to the dead-letter queue with its last error."""
        ...

    async def replay_dead_letter(self, subscriber: str, message_id: str, now_ms: int) -> bool:
        """Put a dead letter back as a pending delivery with zero attempts; False if absent."""
        ...

    # --- inbound dedup and idempotency -----------------------------------------------------
    async def record_psp_event(self, event: PspEvent) -> None:
        """Keep the event. Raises DuplicateKey('psp_events.event_id') if seen before."""
        ...

    async def begin_idempotent(self, record: IdempotencyRecord) -> None:
        """Claim (scope, key) for an in-flight request. DuplicateKey if already claimed."""
        ...

    async def get_idempotency(self, scope: str, key: str) -> IdempotencyRecord | None: ...

    async def complete_idempotent(
        self,
        scope: str,
        key: str,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
    ) -> None: ...

    async def release_idempotent(self, scope: str, key: str) -> None:
        """Forget an in-flight claim whose request failed before producing an answer."""
        ...

    # --- API keys and merchant webhook endpoints (the HTTP API's data) ----------------------
    async def insert_api_key(self, key: ApiKey) -> None:
        """Keep a new key. DuplicateKey('api_keys.key_id' or 'api_keys.key_hash') if taken."""
        ...

    async def revoke_api_key(self, key_id: str, now_ms: int) -> bool:
        """Mark the key revoked (idempotent: the first revocation time stays); False if absent."""
        ...

    async def put_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Register or replace the merchant's webhook endpoint (one per merchant)."""
        ...

    # --- payouts (engine/payouts.py, actors/merchant.py; migration 0006) ----------------------
    async def insert_payout(self, payout: Payout) -> None:
        """Record a new payout. DuplicateKey('payouts.payout_id' or 'payouts.creation_key')."""
        ...

    async def update_payout(self, payout: Payout) -> Payout:
        """Write `payout` (read at `payout.version`); returns it at the new version."""
        ...

    async def get_payout(self, payout_id: str) -> Payout | None: ...

    async def get_payout_by_creation_key(self, creation_key: str) -> Payout | None: ...

    async def record_payout_event(
        self, event_id: str, kind: str, payout_id: str, received_at_ms: int
    ) -> None:
        """Keep a payout provider's notice. DuplicateKey('payout_events.event_id') if seen."""
        ...

    async def get_payout_schedule(self, merchant_id: str) -> PayoutSchedule | None: ...

    async def put_payout_schedule(self, schedule: PayoutSchedule) -> None:
        """Register or replace the merchant's payout schedule (one per merchant)."""
        ...

    async def pending_capture_minor(self, merchant_id: str, currency: str, since_ms: int) -> int:
        """The merchant's net share of its captures posted at or after `since_ms` (what the
        payout delay still holds back), in minor units."""
        ...

    async def receivable_minor(self, merchant_id: str, currency: str) -> int:
        """What the merchant owes the platform in `currency` (`merchant_receivable:<id>`, a
        debit sum; negative when a reversal gave back a share already collected), as this unit
        sees it (engine/receivables.py)."""
        ...


class Store(Protocol):
    """Units of work plus committed-state reads for queries, recovery and the oracle."""

    name: str

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]: ...

    async def register_subscriber(self, subscriber: str, topics: Sequence[str]) -> None:
        """Subscribe `subscriber` to `topics` (idempotent); later messages fan out to it."""
        ...

    # --- reads of committed state -----------------------------------------------------------
    async def get_payment(self, payment_id: str) -> Payment | None: ...

    async def get_orders(self, payment_id: str) -> list[PaymentOrder]: ...

    async def get_order(self, order_id: str) -> PaymentOrder | None: ...

    async def list_payments(self, limit: int, starting_after: str | None = None) -> list[Payment]:
        """Payments newest first (descending id); `starting_after` is an id from a prior page."""
        ...

    async def list_unfinished_payments(self, limit: int, after: str | None = None) -> list[Payment]:
        """Non-terminal payments, or COMPLETED-pending ones, ascending id: recovery's input."""
        ...

    async def list_unfinished_orders(
        self, limit: int, after: str | None = None
    ) -> list[PaymentOrder]:
        """Orders not yet terminal-and-booked, ascending id."""
        ...

    async def get_refund(self, refund_id: str) -> Refund | None: ...

    async def list_refunds(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Refund]:
        """The order's refunds, ascending refund id, strictly after `after`."""
        ...

    async def list_unfinished_refunds(self, limit: int, after: str | None = None) -> list[Refund]:
        """Refunds not yet SUCCEEDED or FAILED, ascending id: recovery's input."""
        ...

    # --- disputes (migration 0007) -------------------------------------------------------------
    async def get_dispute(self, dispute_id: str) -> Dispute | None: ...

    async def list_disputes(
        self, limit: int, after: str | None = None, seller_id: str | None = None
    ) -> list[Dispute]:
        """Disputes ascending id, strictly after `after`; only the seller's orders' when
        `seller_id` is given."""
        ...

    async def list_unfinished_disputes(self, limit: int, after: str | None = None) -> list[Dispute]:
        """Disputes still OPEN, ascending id: recovery's input."""
        ...

    async def get_transaction(self, txn_id: str) -> Transaction | None: ...

    async def list_entries(
        self, account: str, limit: int, after: EntryCursor | None = None
    ) -> list[tuple[str, int, Entry]]:
        """(txn_id, entry_no, entry) for `account`, ascending (txn_id, entry_no), strictly after
        `after`. The cursor names an entry, not a transaction: a transaction may hold several
        entries of one account, and a page may end between them."""
        ...

    async def list_balances(self, merchant_id: str) -> list[Balance]: ...

    async def all_balances(self) -> list[Balance]: ...

    async def trial_balance(self) -> dict[tuple[str, str], int]:
        """(account, currency) -> sum of entries (debits positive) over the whole ledger."""
        ...

    async def count_transactions(self) -> int: ...

    async def fetch_due_deliveries(
        self, subscriber: str, now_ms: int, limit: int
    ) -> list[Delivery]:
        """Pending deliveries due at `now_ms`, oldest message first."""
        ...

    async def next_delivery_due_ms(self, subscriber: str) -> int | None:
        """When the subscriber's earliest pending delivery is due; None when it has none."""
        ...

    async def count_pending_deliveries(self, subscriber: str | None = None) -> int: ...

    async def list_dead_letters(self, limit: int) -> list[DeadLetter]: ...

    async def purge_idempotency(self, before_ms: int) -> int:
        """Delete idempotency records created before `before_ms`; returns how many."""
        ...

    async def take_over_idempotent(
        self, record: IdempotencyRecord, abandoned_before_ms: int
    ) -> bool:
        """Give an abandoned in-flight claim to `record.owner`, atomically; True if taken.

        Taken only when the claim is not completed, has `record`'s fingerprint, and either was
        made before `abandoned_before_ms` (the in-flight timeout) or its owner is another
        process whose lease has lapsed at `record.created_at_ms` (killed: no live lease). The
        claim then carries `record.owner` and `record.created_at_ms`.
        """
        ...

    async def renew_process_lease(self, incarnation: str, now_ms: int, lease_until_ms: int) -> None:
        """Hold (or renew) `incarnation`'s lease until `lease_until_ms`; leases that lapsed
        before `now_ms` are forgotten (their processes are dead: their claims may be taken)."""
        ...

    async def end_process_lease(self, incarnation: str) -> None:
        """A process that stops gives its lease up: its claims are free at once."""
        ...

    async def aclose(self) -> None: ...

    # --- API keys, webhook endpoints, readiness (the HTTP API's data) -----------------------
    async def get_api_key(self, key_hash: str) -> ApiKey | None:
        """The key whose text hashes to `key_hash` (revoked ones too; the caller checks)."""
        ...

    async def get_webhook_endpoint(self, merchant_id: str) -> WebhookEndpoint | None: ...

    async def readiness(self) -> list[str]:
        """What keeps the store from serving (unreachable, migrations pending); empty: ready."""
        ...

    # --- payouts (migration 0006) -------------------------------------------------------------
    async def get_payout(self, payout_id: str) -> Payout | None: ...

    async def list_payouts(
        self, merchant_id: str, limit: int, after: str | None = None
    ) -> list[Payout]:
        """The merchant's payouts, ascending payout id, strictly after `after`."""
        ...

    async def list_unfinished_payouts(self, limit: int, after: str | None = None) -> list[Payout]:
        """Payouts whose money is reserved and fate unknown, ascending id: recovery's input."""
        ...

    async def get_payout_schedule(self, merchant_id: str) -> PayoutSchedule | None: ...

    async def list_payout_schedules(
        self, limit: int, after: str | None = None
    ) -> list[PayoutSchedule]:
        """Daily and weekly schedules (not manual ones), ascending merchant id."""
        ...


# --- reconciliation (issue 12; engine/store/memory_recon.py, pg_recon.py, migration 0008) ----
class ReconStore(Protocol):
    """Reconciliation runs and their items. Each method is one atomic step of its own (a run
    is written whole with its items, or not at all), outside the payment units of work."""

    async def record_recon_run(self, run: ReconRun, items: Sequence[ReconItem]) -> ReconRun:
        """Keep `run` with its items; if a run of the same file hash exists, keep nothing and
        return that earlier run (a re-upload is recognised, never run twice)."""
        ...

    async def get_recon_run(self, run_id: str) -> ReconRun | None: ...

    async def get_recon_run_by_hash(self, file_hash: str) -> ReconRun | None: ...

    async def get_recon_run_by_batch(self, batch: str) -> ReconRun | None:
        """The earliest run whose file paid PSP batch `batch` (its `batches` name it)."""
        ...

    async def get_recon_item(self, item_id: str) -> ReconItem | None: ...

    async def list_recon_items(
        self,
        limit: int,
        after: str | None = None,
        *,
        run_id: str | None = None,
        klass: str | None = None,
        status: str | None = None,
        reference: str | None = None,
    ) -> list[ReconItem]:
        """Items ascending by id, strictly after `after`, filtered by run, class, status and
        the reference they name."""
        ...

    async def resolve_recon_item(self, item_id: str, note: str, now_ms: int) -> ReconItem | None:
        """Resolve an open item with `note` (an already resolved one is returned unchanged);
        None when no such item exists."""
        ...


class ReconciledStore(Store, ReconStore, Protocol):
    """A store that also keeps reconciliation runs (both shipped stores are)."""
