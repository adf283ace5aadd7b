"""Write-behind units of work and group commit for the PostgreSQL store (issue 15).

Why: a port operation is one bridge crossing (a trio wake-up, an asyncio task) and its own
round trip, and each unit adds BEGIN and COMMIT; per full payment that was ~26 crossings and
~19 BEGIN/COMMIT pairs, the bulk of the Python CPU left on PostgreSQL (docs/benchmarks.md).
Most of a payment's units only write (an actor owns its state and knows every write at
commit), so:

- **Write-behind** (`BatchedUnitOfWork`, opened with `PostgresStore.batched_unit_of_work()`,
  or store-agnostically with `engine.store.batching.batched_unit_of_work`): every write
  answers what is known without asking (inserts nothing, an update the record at version + 1)
  and is queued; the unit's writes go to the database together at its end, atomically, as
  one crossing. Its reads see committed state (READ COMMITTED, one statement each, outside
  any transaction), not the unit's own queued writes: callers read first, or keep what they
  wrote (an actor owns its state). The price, which is why it is opt-in: an expected error
  of a write (`DuplicateKey`, `VersionConflict`, `NotFound`, `NegativeBalance`) is raised by
  the end of the `async with` block, not by the write's own call, so the caller must catch
  it around the whole unit (the actors do), never around one write. Operations it cannot
  queue (those that answer from the database, e.g. `replay_dead_letter`) are refused.
- **Group commit** (`GroupCommitter`, on the asyncio side): every write-behind unit hands
  its writes to the committer. Units that arrive
  together (from many actors) share one transaction, one BEGIN and one COMMIT, bounded by
  `group_size_max` units and `group_linger_s` (named limits, PostgresLimits). Each unit learns
  exactly whether *its* work committed: if any unit of a group fails (an expected error, a
  refused statement, a deadlock between groups), the group is rolled back and every unit is
  run again alone in its own transaction, so the failing one fails alone and the others
  commit. Conflicts are rare, so the common case costs no savepoint. An outage or a COMMIT
  that did not answer fails every unit of the group with the same error (outcome unknown, as
  for a unit alone).

The one place a unit's writes are applied is `apply_unit_writes` (interactive units' end
and group members alike): a per-unit check inside the transaction (e.g. an ownership lease's
fencing statement) belongs there, as one more statement per unit of work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import attrs

from engine.ledger import Transaction
from engine.records import (
    IdempotencyRecord,
    OutboxMessage,
    Payment,
    PaymentOrder,
    PspEvent,
    Refund,
    evolve,
)
from engine.store import pg_disputes as dq
from engine.store import pg_messages as mq
from engine.store import pg_queries as q
from engine.store import pg_refunds as rq
from engine.store.pg_bridge import unavailable
from engine.store.pg_unit import PostgresUnitOfWork

T = TypeVar("T")
P = ParamSpec("P")

#: One queued write: the asyncio-side statement function and its arguments (after `conn`).
Write = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]

#: Default bounds of a group commit (PostgresLimits carries the ones in force).
GROUP_SIZE_MAX = 64
GROUP_LINGER_S = 0.0
#: Groups committing at once (each on its own pooled connection).
GROUPS_IN_FLIGHT_MAX = 2


async def apply_unit_writes(
    conn: Any, writes: Sequence[Write], acks: Sequence[tuple[str, str]]
) -> None:
    """A unit's queued writes in order, then its deferred acks, in the open transaction.

    Lease fencing (another branch) goes here: one statement per unit, before its writes.
    """
    for op, args in writes:
        await op(conn, *args)
    if acks:
        await mq.ack_deliveries(conn, acks)


#: What a write-behind unit may read (of committed state, outside its transaction).
_READS: frozenset[Callable[..., Awaitable[Any]]] = frozenset(
    {
        q.get_payment,
        q.get_payment_by_checkout,
        q.get_order,
        q.get_orders,
        q.get_transaction_by_reference,
        q.get_balance,
        mq.get_idempotency,
        rq.get_refund,
        rq.get_refund_by_creation_key,
        rq.list_refunds,
        dq.get_dispute,
        dq.list_order_disputes,
    }
)


class BatchedUnitOfWork(PostgresUnitOfWork):
    """A write-behind unit (module doc): its writes are queued and applied atomically at the
    end, its reads see committed state (READ COMMITTED without the unit's own queued
    writes: callers read before they write, or keep what they wrote). It never holds a
    connection between calls; its runner reads through the pool."""

    def __init__(self, run: Any, conn: Any) -> None:
        super().__init__(run, conn)
        #: The unit's writes, in call order, applied at its end (`apply_unit_writes`).
        self.pending_writes: list[Write] = []

    async def _run(
        self, op: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self.aborted is not None:
            raise AssertionError("unit of work used after the database aborted it") from (
                self.aborted
            )
        if op not in _READS:
            raise AssertionError(f"{op.__name__} is not batched: use store.unit_of_work()")
        return await self._run_on_asyncio(op, self._conn, *args, **kwargs)

    def _defer(self, op: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self.aborted is not None:
            raise AssertionError("unit of work used after the database aborted it") from (
                self.aborted
            )
        self.pending_writes.append((op, args))

    async def insert_payment(self, payment: Payment, orders: Sequence[PaymentOrder]) -> None:
        self._defer(q.insert_payment, payment, tuple(orders))

    async def update_payment(self, payment: Payment) -> Payment:
        self._defer(q.update_payment, payment)
        return evolve(payment, version=payment.version + 1)

    async def update_order(self, order: PaymentOrder) -> PaymentOrder:
        self._defer(q.update_order, order)
        return evolve(order, version=order.version + 1)

    async def post_transaction(self, txn: Transaction) -> None:
        self._defer(q.post_transaction, txn)

    async def append_outbox(self, message: OutboxMessage) -> None:
        self._defer(mq.append_outbox, message)

    async def record_psp_event(self, event: PspEvent) -> None:
        self._defer(mq.record_psp_event, event)

    async def begin_idempotent(self, record: IdempotencyRecord) -> None:
        self._defer(mq.begin_idempotent, record)

    async def complete_idempotent(
        self, scope: str, key: str, status: int, body: bytes, headers: Mapping[str, str]
    ) -> None:
        self._defer(mq.complete_idempotent, scope, key, status, bytes(body), dict(headers))

    async def release_idempotent(self, scope: str, key: str) -> None:
        self._defer(mq.release_idempotent, scope, key)

    async def insert_refund(self, refund: Refund) -> None:
        self._defer(rq.insert_refund, refund)

    async def update_refund(self, refund: Refund) -> Refund:
        self._defer(rq.update_refund, refund)
        return evolve(refund, version=refund.version + 1)


@attrs.frozen
class GroupStatistics:
    groups: int
    units: int
    #: Groups rolled back because one unit failed, their units then run alone.
    fallbacks: int


class _Member:
    __slots__ = ("acks", "future", "writes")

    def __init__(
        self,
        writes: list[Write],
        acks: list[tuple[str, str]],
        future: asyncio.Future[None],
    ) -> None:
        self.writes = writes
        self.acks = acks
        self.future = future


class GroupCommitter:
    """Commits write-only units that arrive together in one transaction (module doc).
    Lives on the asyncio loop's thread; `commit` is what a bridge job awaits."""

    def __init__(
        self,
        acquire: Callable[[], Awaitable[Any]],
        release: Callable[[Any], Awaitable[None]],
        *,
        size_max: int = GROUP_SIZE_MAX,
        linger_s: float = GROUP_LINGER_S,
        in_flight_max: int = GROUPS_IN_FLIGHT_MAX,
    ) -> None:
        assert size_max >= 1 and linger_s >= 0 and in_flight_max >= 1
        self._acquire = acquire
        self._release = release
        self._size_max = size_max
        self._linger_s = linger_s
        self._in_flight_max = in_flight_max
        self._pending: list[_Member] = []
        #: Flushers running (their tasks are kept in `_flushers` so they are not collected).
        self._running = 0
        self._flushers: set[asyncio.Task[None]] = set()
        self.groups = 0
        self.units = 0
        self.fallbacks = 0

    def statistics(self) -> GroupStatistics:
        return GroupStatistics(self.groups, self.units, self.fallbacks)

    async def commit(self, writes: list[Write], acks: list[tuple[str, str]]) -> None:
        """Commit one unit's writes (and acks) in the next group; raises its own error."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Member(writes, acks, future))
        if self._running < self._in_flight_max and (
            self._running == 0 or len(self._pending) >= self._size_max
        ):
            # Counted here and uncounted in the flusher's own last step, with no await between
            # its last look at `_pending` and that: a unit never waits without a flusher.
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                # Let every job of the bridge's current batch join (and linger, if asked to).
                await asyncio.sleep(self._linger_s)
                group = [m for m in self._pending[: self._size_max] if not m.future.done()]
                del self._pending[: self._size_max]
                if group:
                    try:
                        await self._commit_group(group)
                    except Exception as exc:  # no connection, or an outage mid-group
                        for member in group:
                            _settle(member, exc)
                    except BaseException as exc:
                        for member in group:
                            _settle(member, exc)
                        raise
        finally:
            self._running -= 1

    async def _commit_group(self, group: list[_Member]) -> None:
        conn = await self._acquire()
        try:
            self.groups += 1
            self.units += len(group)
            try:
                async with conn.transaction(isolation="read_committed"):
                    for member in group:
                        await apply_unit_writes(conn, member.writes, member.acks)
            except Exception as exc:
                if len(group) == 1 or unavailable(exc) is not None or conn.is_closed():
                    for member in group:
                        _settle(member, exc)
                    return
                self.fallbacks += 1
                for member in group:  # each alone: the failing unit fails alone
                    try:
                        async with conn.transaction(isolation="read_committed"):
                            await apply_unit_writes(conn, member.writes, member.acks)
                    except Exception as alone:
                        _settle(member, alone)
                        if unavailable(alone) is not None or conn.is_closed():
                            raise
                    else:
                        _settle(member, None)
                return
            for member in group:
                _settle(member, None)
        finally:
            await self._release(conn)


def _settle(member: _Member, exc: BaseException | None) -> None:
    if member.future.done():
        return
    if exc is None:
        member.future.set_result(None)
    elif isinstance(exc, Exception):
        member.future.set_exception(exc)
    else:  # the loop is stopping under the group: the caller sees the store go away
        with contextlib.suppress(asyncio.InvalidStateError):
            member.future.cancel()
