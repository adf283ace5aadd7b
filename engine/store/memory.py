"""The in-memory store: the `Store` port with PostgreSQL's transactional semantics, in a dict.

It exists for deterministic simulation: a simulated crash is "every unit of work not yet
committed is lost", exactly as with PostgreSQL. It must pass the same conformance suite.

How it keeps the semantics: a unit of work writes into its own overlay (reads see their own
writes), remembering the version of every row it updates. Commit validates the whole overlay
against the committed tables (unique keys, versions, non-negative wallets) and then applies it;
validation and application run without a checkpoint, so a commit is atomic under trio. Wallet
postings are stored as deltas and added at commit, so concurrent units never lose an update.

`checkpoint` (an awaitable factory, e.g. `trio.lowlevel.checkpoint`) is awaited before a unit
of work commits and in every committed-state read, so that concurrent units
of work interleave the way they would against a database; the engine package stays free of
trio.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import attrs

from engine.access import ApiKey, WebhookEndpoint
from engine.ledger import Entry, Transaction
from engine.records import (
    Balance,
    DeadLetter,
    Delivery,
    Dispute,
    IdempotencyRecord,
    Payment,
    PaymentOrder,
    Refund,
)
from engine.store.memory_payouts import PayoutReadsMixin
from engine.store.memory_recon import MemoryRecon, ReconTable
from engine.store.memory_tables import Tables
from engine.store.memory_unit import Checkpoint, MemoryUnitOfWork, _no_checkpoint
from engine.store.port import EntryCursor

__all__ = ["Checkpoint", "MemoryStore", "MemoryUnitOfWork"]


class _UnitOfWorkContext:
    """`async with store.unit_of_work() as uow`: commit on a normal exit, roll back otherwise.

    A plain class rather than `@asynccontextmanager`: a unit of work is opened on every
    actor message, and an async generator costs a generator, trio's async-generator hooks
    and contextlib's wrapper each time.

    One checkpoint per unit of work that wrote something, before its commit: other units may
    commit between its reads and its validation, which is the interleaving that matters
    (conflicts, duplicates). A second one at the start cost a task switch per unit for
    nothing. A unit that wrote nothing commits without one: it has nothing to validate or
    lose, so letting others run first would only move the same interleaving to the caller's
    next checkpoint.
    """

    __slots__ = ("_store", "_uow")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._uow = MemoryUnitOfWork(store._t, store._cp)

    async def __aenter__(self) -> MemoryUnitOfWork:
        return self._uow

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        store = self._store
        if exc_type is not None:
            store.rollbacks += 1
            return
        if self._uow.wrote():
            await store._cp()
        self._uow.commit()
        store.commits += 1


class MemoryStore(MemoryRecon, PayoutReadsMixin):
    """The `Store` port in memory. See the module docstring for how it keeps PostgreSQL's rules."""

    name = "memory"

    def __init__(self, checkpoint: Checkpoint | None = None) -> None:
        self._t = Tables()
        self._payout_table = self._t.payouts
        self._cp: Checkpoint = checkpoint or _no_checkpoint
        self.commits = 0
        self.rollbacks = 0
        self._recon = ReconTable()  # reconciliation runs (memory_recon.py)

    def unit_of_work(self) -> AbstractAsyncContextManager[MemoryUnitOfWork]:
        return _UnitOfWorkContext(self)

    async def register_subscriber(self, subscriber: str, topics: Sequence[str]) -> None:
        self._t.subscribe(subscriber, topics)

    # --- reads of committed state -----------------------------------------------------------
    async def get_payment(self, payment_id: str) -> Payment | None:
        await self._cp()
        return self._t.payments.get(payment_id)

    async def get_orders(self, payment_id: str) -> list[PaymentOrder]:
        await self._cp()
        return [self._t.orders[i] for i in sorted(self._t.orders_by_payment.get(payment_id, ()))]

    async def get_order(self, order_id: str) -> PaymentOrder | None:
        await self._cp()
        return self._t.orders.get(order_id)

    async def list_payments(self, limit: int, starting_after: str | None = None) -> list[Payment]:
        await self._cp()
        assert 0 < limit <= 1000
        ids = sorted(self._t.payments, reverse=True)
        if starting_after is not None:
            ids = [i for i in ids if i < starting_after]
        return [self._t.payments[i] for i in ids[:limit]]

    async def list_unfinished_payments(self, limit: int, after: str | None = None) -> list[Payment]:
        await self._cp()
        ids = sorted(i for i in self._t.unfinished_payments if after is None or i > after)
        return [self._t.payments[i] for i in ids[:limit]]

    async def list_unfinished_orders(
        self, limit: int, after: str | None = None
    ) -> list[PaymentOrder]:
        await self._cp()
        ids = sorted(i for i in self._t.unfinished_orders if after is None or i > after)
        return [self._t.orders[i] for i in ids[:limit]]

    async def get_refund(self, refund_id: str) -> Refund | None:
        await self._cp()
        return self._t.refunds.rows.get(refund_id)

    async def list_refunds(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Refund]:
        await self._cp()
        return self._t.refunds.page(self._t.refunds.by_order.get(order_id, []), limit, after)

    async def list_unfinished_refunds(self, limit: int, after: str | None = None) -> list[Refund]:
        await self._cp()
        return self._t.refunds.page(list(self._t.refunds.unfinished), limit, after)

    async def get_dispute(self, dispute_id: str) -> Dispute | None:
        await self._cp()
        return self._t.disputes.rows.get(dispute_id)

    async def list_disputes(
        self, limit: int, after: str | None = None, seller_id: str | None = None
    ) -> list[Dispute]:
        await self._cp()
        t = self._t

        def keep(d: Dispute) -> bool:
            return seller_id is None or t.orders[d.order_id].seller_id == seller_id

        return t.disputes.page(list(t.disputes.rows), limit, after, keep)

    async def list_unfinished_disputes(self, limit: int, after: str | None = None) -> list[Dispute]:
        await self._cp()
        return self._t.disputes.page(list(self._t.disputes.unfinished), limit, after, bool)

    async def get_transaction(self, txn_id: str) -> Transaction | None:
        await self._cp()
        return self._t.txns.get(txn_id)

    async def list_entries(
        self, account: str, limit: int, after: EntryCursor | None = None
    ) -> list[tuple[str, int, Entry]]:
        await self._cp()
        rows = sorted(self._t.entries_by_account.get(account, ()), key=lambda r: (r[0], r[1]))
        if after is not None:
            rows = [r for r in rows if (r[0], r[1]) > after]
        return rows[:limit]

    async def list_balances(self, merchant_id: str) -> list[Balance]:
        await self._cp()
        return [
            Balance(m, c, a, r)
            for (m, c), (a, r) in sorted(self._t.wallets.items())
            if m == merchant_id
        ]

    async def all_balances(self) -> list[Balance]:
        await self._cp()
        return [Balance(m, c, a, r) for (m, c), (a, r) in sorted(self._t.wallets.items())]

    async def trial_balance(self) -> dict[tuple[str, str], int]:
        await self._cp()
        return {key: total for key, total in sorted(self._t.sums.items())}

    async def count_transactions(self) -> int:
        await self._cp()
        return len(self._t.txns)

    async def fetch_due_deliveries(
        self, subscriber: str, now_ms: int, limit: int
    ) -> list[Delivery]:
        await self._cp()
        pending = self._t.pending.get(subscriber, {})
        # The dict keeps commit order, which is message order: stop at `limit` due ones.
        result = []
        for message_id, slot in pending.items():
            if slot.next_attempt_at_ms > now_ms:
                continue
            result.append(
                Delivery(
                    subscriber,
                    self._t.outbox[message_id],
                    slot.attempts,
                    slot.next_attempt_at_ms,
                    slot.last_error,
                )
            )
            if len(result) >= limit:
                break
        return result

    async def next_delivery_due_ms(self, subscriber: str) -> int | None:
        await self._cp()
        pending = self._t.pending.get(subscriber, {})
        return min((slot.next_attempt_at_ms for slot in pending.values()), default=None)

    async def count_pending_deliveries(self, subscriber: str | None = None) -> int:
        await self._cp()
        if subscriber is not None:
            return len(self._t.pending.get(subscriber, {}))
        return sum(len(p) for p in self._t.pending.values())

    async def list_dead_letters(self, limit: int) -> list[DeadLetter]:
        await self._cp()
        return sorted(self._t.dead.values(), key=lambda d: (d.dead_at_ms, d.message.message_id))[
            :limit
        ]

    async def purge_idempotency(self, before_ms: int) -> int:
        await self._cp()
        old = [k for k, r in self._t.idempotency.items() if r.created_at_ms < before_ms]
        for key in old:
            del self._t.idempotency[key]
        return len(old)

    async def take_over_idempotent(
        self, record: IdempotencyRecord, abandoned_before_ms: int
    ) -> bool:
        await self._cp()
        claim = self._t.idempotency.get((record.scope, record.key))
        if claim is None or claim.completed or claim.fingerprint != record.fingerprint:
            return False
        lease_until_ms = self._t.process_leases.get(claim.owner or "")
        owner_dead = (
            claim.owner is not None
            and claim.owner != record.owner
            and (lease_until_ms is None or lease_until_ms < record.created_at_ms)
        )
        if not (claim.created_at_ms < abandoned_before_ms or owner_dead):
            return False
        self._t.idempotency[(record.scope, record.key)] = attrs.evolve(
            claim, owner=record.owner, created_at_ms=record.created_at_ms
        )
        return True

    async def renew_process_lease(self, incarnation: str, now_ms: int, lease_until_ms: int) -> None:
        await self._cp()
        leases = self._t.process_leases
        for lapsed in [i for i, until_ms in leases.items() if until_ms < now_ms]:
            del leases[lapsed]
        leases[incarnation] = lease_until_ms

    async def end_process_lease(self, incarnation: str) -> None:
        await self._cp()
        self._t.process_leases.pop(incarnation, None)

    async def aclose(self) -> None:
        return None

    # --- API keys, webhook endpoints, readiness ------------------------------------------------
    async def get_api_key(self, key_hash: str) -> ApiKey | None:
        await self._cp()
        key_id = self._t.api_key_ids.get(key_hash)
        return None if key_id is None else self._t.api_keys[key_id]

    async def get_webhook_endpoint(self, merchant_id: str) -> WebhookEndpoint | None:
        await self._cp()
        return self._t.webhook_endpoints.get(merchant_id)

    async def readiness(self) -> list[str]:
        await self._cp()
        return []
