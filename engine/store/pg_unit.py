"""The PostgreSQL unit of work: one database transaction on one pooled connection.

postgres.py opens and ends the transaction (pg_bridge.py runs asyncpg); this class runs the
port's operations in it, each as one bridge crossing. Expected outcomes leave the unit as it
was, so a caller may catch one and go on. A statement the database refused has aborted the
whole transaction: from then on the unit can only roll back, and says so loudly.

Outbox acks are deferred: `ack_delivery` cannot fail or tell anything (it deletes a pending
delivery if there is one), so a unit's acks wait in `pending_acks` and go to the database as
one statement, before the unit's next operation or with its end (postgres.py). A consumer's
ack unit (acks only) is then one statement, one round trip and one crossing, however many
messages it acknowledges, instead of BEGIN, one DELETE per message and COMMIT.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

import trio

from engine.access import ApiKey, WebhookEndpoint
from engine.errors import PayengineError
from engine.ledger import Transaction
from engine.records import (
    Balance,
    Dispute,
    IdempotencyRecord,
    OutboxMessage,
    Payment,
    PaymentOrder,
    PspEvent,
    Refund,
)
from engine.store import pg_api as api
from engine.store import pg_disputes as dq
from engine.store import pg_messages as mq
from engine.store import pg_queries as q
from engine.store import pg_refunds as rq
from engine.store.pg_payouts import PgPayoutUnitMixin
from engine.store.pg_receivables import PgReceivableUnitMixin

T = TypeVar("T")
P = ParamSpec("P")


class Runner(Protocol):
    """Runs an asyncio-native coroutine function from trio (postgres.py's bridge)."""

    async def __call__(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T: ...


async def _after_acks(
    conn: Any, acks: list[tuple[str, str]], op: Callable[..., Awaitable[T]], *args: Any, **kw: Any
) -> T:
    """The unit's deferred acks, then `op`: one crossing."""
    await mq.ack_deliveries(conn, acks)
    return await op(conn, *args, **kw)


class PostgresUnitOfWork(PgPayoutUnitMixin, PgReceivableUnitMixin):
    """One database transaction on one connection. Used by one task at a time (a lock keeps
    concurrent callers in line, as the memory store tolerates them)."""

    def __init__(self, run: Runner, conn: Any) -> None:
        self._run_on_asyncio = run
        self._conn = conn
        self._lock = trio.StrictFIFOLock()
        #: Set when the database aborted the transaction; the unit can then only roll back.
        self.aborted: BaseException | None = None
        #: (subscriber, message_id) acknowledged but not yet sent (see the module's doc).
        self.pending_acks: list[tuple[str, str]] = []

    async def _run(
        self, op: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        async with self._lock:
            if self.aborted is not None:
                raise AssertionError("unit of work used after the database aborted it") from (
                    self.aborted
                )
            try:
                if self.pending_acks:
                    acks, self.pending_acks = self.pending_acks, []
                    run_any = cast(Any, self._run_on_asyncio)
                    return cast(
                        T, await run_any(_after_acks, self._conn, acks, op, *args, **kwargs)
                    )
                return await self._run_on_asyncio(op, self._conn, *args, **kwargs)
            except PayengineError as exc:
                if exc.__cause__ is not None:  # mapped from a refused statement (pg_errors)
                    self.aborted = exc
                raise
            except BaseException as exc:
                self.aborted = exc
                raise

    async def insert_payment(self, payment: Payment, orders: Sequence[PaymentOrder]) -> None:
        await self._run(q.insert_payment, payment, orders)

    async def update_payment(self, payment: Payment) -> Payment:
        return await self._run(q.update_payment, payment)

    async def update_order(self, order: PaymentOrder) -> PaymentOrder:
        return await self._run(q.update_order, order)

    async def get_payment(self, payment_id: str) -> Payment | None:
        return await self._run(q.get_payment, payment_id)

    async def get_payment_by_checkout(self, checkout_id: str) -> Payment | None:
        return await self._run(q.get_payment_by_checkout, checkout_id)

    async def get_order(self, order_id: str) -> PaymentOrder | None:
        return await self._run(q.get_order, order_id)

    async def get_orders(self, payment_id: str) -> list[PaymentOrder]:
        return await self._run(q.get_orders, payment_id)

    async def insert_refund(self, refund: Refund) -> None:
        await self._run(rq.insert_refund, refund)

    async def update_refund(self, refund: Refund) -> Refund:
        return await self._run(rq.update_refund, refund)

    async def get_refund(self, refund_id: str) -> Refund | None:
        return await self._run(rq.get_refund, refund_id)

    async def get_refund_by_creation_key(self, creation_key: str) -> Refund | None:
        return await self._run(rq.get_refund_by_creation_key, creation_key)

    async def list_refunds(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Refund]:
        return await self._run(rq.list_refunds, order_id, limit, after)

    async def insert_dispute(self, dispute: Dispute) -> None:
        await self._run(dq.insert_dispute, dispute)

    async def update_dispute(self, dispute: Dispute) -> Dispute:
        return await self._run(dq.update_dispute, dispute)

    async def get_dispute(self, dispute_id: str) -> Dispute | None:
        return await self._run(dq.get_dispute, dispute_id)

    async def list_order_disputes(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Dispute]:
        return await self._run(dq.list_order_disputes, order_id, limit, after)

    async def post_transaction(self, txn: Transaction) -> None:
        await self._run(q.post_transaction, txn)

    async def get_transaction_by_reference(self, kind: str, reference: str) -> Transaction | None:
        return await self._run(q.get_transaction_by_reference, kind, reference)

    async def get_balance(self, merchant_id: str, currency: str) -> Balance:
        return await self._run(q.get_balance, merchant_id, currency)

    async def append_outbox(self, message: OutboxMessage) -> None:
        await self._run(mq.append_outbox, message)

    async def ack_delivery(self, subscriber: str, message_id: str) -> None:
        if self.aborted is not None:
            raise AssertionError("unit of work used after the database aborted it") from (
                self.aborted
            )
        self.pending_acks.append((subscriber, message_id))  # sent later, in one statement

    async def retry_delivery(
        self, subscriber: str, message_id: str, next_attempt_at_ms: int, error: str
    ) -> None:
        await self._run(mq.retry_delivery, subscriber, message_id, next_attempt_at_ms, error)

    async def dead_letter_delivery(
        self, subscriber: str, message_id: str, error: str, now_ms: int
    ) -> None:
        await self._run(mq.dead_letter_delivery, subscriber, message_id, error, now_ms)

    async def replay_dead_letter(self, subscriber: str, message_id: str, now_ms: int) -> bool:
        return await self._run(mq.replay_dead_letter, subscriber, message_id, now_ms)

    async def record_psp_event(self, event: PspEvent) -> None:
        await self._run(mq.record_psp_event, event)

    async def begin_idempotent(self, record: IdempotencyRecord) -> None:
        await self._run(mq.begin_idempotent, record)

    async def get_idempotency(self, scope: str, key: str) -> IdempotencyRecord | None:
        return await self._run(mq.get_idempotency, scope, key)

    async def complete_idempotent(
        self, scope: str, key: str, status: int, body: bytes, headers: Mapping[str, str]
    ) -> None:
        await self._run(mq.complete_idempotent, scope, key, status, body, headers)

    async def release_idempotent(self, scope: str, key: str) -> None:
        await self._run(mq.release_idempotent, scope, key)

    async def insert_api_key(self, key: ApiKey) -> None:
        await self._run(api.insert_api_key, key)

    async def revoke_api_key(self, key_id: str, now_ms: int) -> bool:
        return await self._run(api.revoke_api_key, key_id, now_ms)

    async def put_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None:
        await self._run(api.put_webhook_endpoint, endpoint)
