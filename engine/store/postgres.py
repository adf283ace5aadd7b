"""The PostgreSQL store: the `Store` port over asyncpg, bridged into trio.

asyncpg speaks asyncio and payengine runs on trio: asyncpg runs on its own asyncio loop in a
dedicated thread (pg_bridge.py, the only module that knows about it), and every port operation
is one job on it (`Bridge.run`), however many statements it sends (pg_queries.py,
pg_messages.py, pg_reads.py and the other pg_* statement modules). The store needs real time:
deadlines run on trio's clock, and an autojump clock would fire them while the database thinks.

A unit of work is one pooled connection and one READ COMMITTED transaction, begun lazily with
the unit's first operation (acquire, BEGIN and that operation are one job); statements run as
the caller calls them, and the end (COMMIT or ROLLBACK, then release) is one more job. A unit
that ran no operation never touches the database. Normal exit commits; any exception
(trio.Cancelled included) rolls back and propagates. Commit and rollback are shielded from
cancellation, with a timeout, so a cancelled caller never leaves a transaction undecided; a
commit that times out has an unknown outcome, so its connection is dropped and
`trio.TooSlowError` raised (the caller reloads, as after a crash). A caller cancelled while one
of its statements runs waits for that statement to be cancelled on the asyncio side before
`trio.Cancelled` reaches it (pg_bridge.py), and its unit then rolls back.

Errors: expected outcomes are raised without a failing statement (see pg_queries.py), so a
caller may catch one and go on with the unit, as with the memory store. When a database guard
refuses a statement, asyncpg's error is mapped by SQLSTATE and constraint name (pg_errors.py);
the database has then aborted the transaction, so the unit remembers the error and raises it again
if the caller swallowed it and tried to commit.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import asyncpg
import attrs
import trio
import trio.testing

from engine.access import ApiKey, WebhookEndpoint
from engine.errors import InvalidInput, StoreUnavailable
from engine.ledger import Entry, Transaction
from engine.records import (
    Balance,
    DeadLetter,
    Delivery,
    IdempotencyRecord,
    Payment,
    PaymentOrder,
)
from engine.store import migrate as migrations
from engine.store import pg_api as api
from engine.store import pg_leases
from engine.store import pg_messages as mq
from engine.store import pg_queries as q
from engine.store import pg_reads as reads
from engine.store.pg_admin import apply_migrations as apply_migrations
from engine.store.pg_admin import list_pending_migrations as list_pending_migrations
from engine.store.pg_batch import GROUP_LINGER_S, GROUP_SIZE_MAX, BatchedUnitOfWork, GroupCommitter
from engine.store.pg_bridge import Bridge, open_bridge
from engine.store.pg_bridge import tolerate_lost_connections as tolerate_lost_connections
from engine.store.pg_bridge import unavailable as unavailable
from engine.store.pg_money_back import PgMoneyBackReadsMixin
from engine.store.pg_payouts import PgPayoutReadsMixin
from engine.store.pg_recon import PostgresRecon
from engine.store.pg_txn import (
    UnitState,
    acquire,
    end_unit,
    in_unit,
    init_connection,
    keep_session,
    terminate,
)
from engine.store.pg_unit import PostgresUnitOfWork
from engine.store.port import EntryCursor, Store, UnitOfWork

T = TypeVar("T")
P = ParamSpec("P")


#: The default bound on pooled connections per process.
POOL_SIZE_MAX = 10


@attrs.frozen
class PostgresLimits:
    """Every bound of the PostgreSQL store, with its unit last."""

    pool_size_min: int = 1
    pool_size_max: int = POOL_SIZE_MAX
    connect_timeout_s: float = 10.0
    #: Waiting for a free pooled connection; a full pool slows callers down, then fails them.
    acquire_timeout_s: float = 30.0
    #: Enforced by the server on every statement.
    statement_timeout_s: float = 30.0
    #: The server ends a session that sits in an open transaction this long (a leaked unit).
    idle_in_transaction_timeout_s: float = 300.0
    #: Commit, rollback and release, each shielded from cancellation for at most this long.
    commit_timeout_s: float = 10.0
    shutdown_timeout_s: float = 5.0
    #: /readyz waits this long for the database: a partitioned database is "not ready" fast.
    readiness_timeout_s: float = 2.0
    #: Group commit (pg_batch.py): write-only units sharing one transaction, at most this
    #: many, gathered for this long (0: those that arrived together) before BEGIN.
    group_size_max: int = GROUP_SIZE_MAX
    group_linger_s: float = GROUP_LINGER_S

    def check(self) -> PostgresLimits:
        if self.group_linger_s < 0:
            raise InvalidInput("postgres limit group_linger_s must not be negative")
        if not 0 < self.pool_size_min <= self.pool_size_max:
            raise InvalidInput("postgres pool sizes need 0 < pool_size_min <= pool_size_max")
        for name, value in attrs.asdict(self).items():
            if value <= 0 and name != "group_linger_s":
                raise InvalidInput(f"postgres limit {name} must be positive, got {value!r}")
        return self


def _refuse_autojump_clock() -> None:
    clock = trio.lowlevel.current_clock()
    if isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold != math.inf:
        raise InvalidInput(
            "the postgres store needs real time: an autojump clock fires its timeouts "
            "while the database is answering; use the memory store for virtual time"
        )


# --- the store --------------------------------------------------------------------------------


@attrs.frozen
class PostgresStatistics:
    pool_size: int
    pool_idle: int
    units_committed: int
    units_rolled_back: int
    #: Reads of committed state that answered (a stall watch's sign of progress).
    reads_answered: int


class PostgresStore(PostgresRecon, PgPayoutReadsMixin, PgMoneyBackReadsMixin):
    """The `Store` port on PostgreSQL. Open it with `open_postgres_store`."""

    name = "postgres"

    def __init__(self, bridge: Bridge, pool: Any, limits: PostgresLimits) -> None:
        self._bridge = bridge
        self._pool = pool
        self._limits = limits
        self._closed = False
        self._committed = 0
        self._rolled_back = 0
        self._reads = 0
        #: Several processes on one database: due deliveries are claimed, not just read.
        self.delivery_claim_ms: int | None = None
        state = UnitState(pool, limits.acquire_timeout_s)
        #: Lives on the bridge's loop (pg_batch.py); only bridge jobs touch it.
        self.group = GroupCommitter(
            lambda: acquire(state),
            pool.release,
            size_max=limits.group_size_max,
            linger_s=limits.group_linger_s,
        )

    def statistics(self) -> PostgresStatistics:
        return PostgresStatistics(
            pool_size=int(self._pool.get_size()),
            pool_idle=int(self._pool.get_idle_size()),
            units_committed=self._committed,
            units_rolled_back=self._rolled_back,
            reads_answered=self._reads,
        )

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[PostgresUnitOfWork]:
        state = UnitState(self._pool, self._limits.acquire_timeout_s)
        bridge = self._bridge

        def run_in_unit(op: Any, _state: Any, /, *args: Any, **kwargs: Any) -> Awaitable[Any]:
            return bridge.run(in_unit, _state, op, *args, **kwargs)

        uow = PostgresUnitOfWork(cast(Any, run_in_unit), state)
        try:
            yield uow
            await pg_leases.fence_unit(uow, state.conn is not None)  # several processes
        except BaseException:
            await self._end(state, commit=False)
            raise
        if uow.aborted is not None:
            await self._end(state, commit=False)
            raise uow.aborted
        acks, uow.pending_acks = uow.pending_acks, []
        await self._end(state, commit=True, acks=acks)

    @asynccontextmanager
    async def batched_unit_of_work(self) -> AsyncIterator[PostgresUnitOfWork]:
        """A write-behind unit (pg_batch.py): reads of committed state, writes queued and
        group-committed at the end; catch its errors around the whole unit."""
        uow = BatchedUnitOfWork(cast(Any, self._read_in_unit), None)
        try:
            yield uow
        except BaseException:
            self._rolled_back += 1  # nothing was written
            raise
        writes, uow.pending_writes = uow.pending_writes, []
        acks, uow.pending_acks = uow.pending_acks, []
        if not (writes or acks):
            self._committed += 1
            return
        pg_leases.fence_writes(writes)  # several processes: checked in the same transaction
        with trio.move_on_after(self._limits.commit_timeout_s, shield=True) as scope:
            try:
                await self._bridge.run_abandoning(self.group.commit, writes, acks)
            except BaseException:
                self._rolled_back += 1
                raise
        if scope.cancelled_caught:
            raise trio.TooSlowError(
                f"commit did not answer within {self._limits.commit_timeout_s} s; "
                "its outcome is unknown"
            )
        self._committed += 1

    def _read_in_unit(self, op: Any, _: None, /, *args: Any) -> Awaitable[Any]:
        return self._bridge.run(op, self._pool, *args)

    async def _end(
        self, state: UnitState, *, commit: bool, acks: list[tuple[str, str]] | None = None
    ) -> None:
        """Commit or roll back and release, shielded, within `commit_timeout_s`.

        A unit that never ran an operation has no transaction: nothing to do, but for its
        deferred acks (one statement on its own). A rollback is best effort (the caller's
        exception is on its way): a connection that fails or hangs is dropped, and the server
        rolls back a closed session. A commit that fails ends as a rollback and raises; one
        that hangs has an unknown outcome.
        """
        acks = acks or []
        if state.conn is None and not (commit and acks):
            if commit:
                self._committed += 1
            else:
                self._rolled_back += 1
            return
        conn = state.conn
        with trio.move_on_after(self._limits.commit_timeout_s, shield=True) as scope:
            try:
                await self._bridge.run_abandoning(end_unit, state, commit=commit, acks=acks)
            except Exception:
                if commit:
                    self._rolled_back += 1
                    raise
                if conn is not None:
                    self._bridge.post(terminate, conn)
        if scope.cancelled_caught:
            if conn is not None:
                self._bridge.post(terminate, conn)
            if commit:
                raise trio.TooSlowError(
                    f"commit did not answer within {self._limits.commit_timeout_s} s; "
                    "its outcome is unknown"
                )
        if commit:
            self._committed += 1
        else:
            self._rolled_back += 1

    async def _read(
        self, op: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """A read of committed state: one statement (or a few) outside any unit of work."""
        result = await self._bridge.run(op, self._pool, *args, **kwargs)
        self._reads += 1
        return result

    async def register_subscriber(self, subscriber: str, topics: Sequence[str]) -> None:
        await self._read(mq.register_subscriber, subscriber, list(topics))

    async def get_payment(self, payment_id: str) -> Payment | None:
        return await self._read(q.get_payment, payment_id)

    async def get_order(self, order_id: str) -> PaymentOrder | None:
        return await self._read(q.get_order, order_id)

    async def get_orders(self, payment_id: str) -> list[PaymentOrder]:
        return await self._read(q.get_orders, payment_id)

    async def list_payments(self, limit: int, starting_after: str | None = None) -> list[Payment]:
        return await self._read(reads.list_payments, limit, starting_after)

    async def list_unfinished_payments(self, limit: int, after: str | None = None) -> list[Payment]:
        return await self._read(reads.list_unfinished_payments, limit, after)

    async def list_unfinished_orders(
        self, limit: int, after: str | None = None
    ) -> list[PaymentOrder]:
        return await self._read(reads.list_unfinished_orders, limit, after)

    async def get_transaction(self, txn_id: str) -> Transaction | None:
        return await self._read(q.get_transaction, txn_id)

    async def list_entries(
        self, account: str, limit: int, after: EntryCursor | None = None
    ) -> list[tuple[str, int, Entry]]:
        return await self._read(reads.list_entries, account, limit, after)

    async def list_balances(self, merchant_id: str) -> list[Balance]:
        return await self._read(reads.list_balances, merchant_id)

    async def all_balances(self) -> list[Balance]:
        return await self._read(reads.all_balances)

    async def trial_balance(self) -> dict[tuple[str, str], int]:
        return await self._read(reads.trial_balance)

    async def count_transactions(self) -> int:
        return await self._read(reads.count_transactions)

    async def fetch_due_deliveries(
        self, subscriber: str, now_ms: int, limit: int
    ) -> list[Delivery]:
        if self.delivery_claim_ms is not None:  # several processes (pg_leases.py)
            return await self._read(
                pg_leases.claim_due_deliveries,
                *(subscriber, now_ms, reads.check_limit(limit), self.delivery_claim_ms),
            )
        return await self._read(
            mq.fetch_due_deliveries, subscriber, now_ms, reads.check_limit(limit)
        )

    async def next_delivery_due_ms(self, subscriber: str) -> int | None:
        return await self._read(mq.next_delivery_due_ms, subscriber)

    async def count_pending_deliveries(self, subscriber: str | None = None) -> int:
        return await self._read(mq.count_pending_deliveries, subscriber)

    async def list_dead_letters(self, limit: int) -> list[DeadLetter]:
        return await self._read(mq.list_dead_letters, reads.check_limit(limit))

    async def purge_idempotency(self, before_ms: int) -> int:
        return await self._read(mq.purge_idempotency, before_ms)

    async def take_over_idempotent(
        self, record: IdempotencyRecord, abandoned_before_ms: int
    ) -> bool:
        return await self._read(mq.take_over_idempotent, record, abandoned_before_ms)

    async def renew_process_lease(self, incarnation: str, now_ms: int, lease_until_ms: int) -> None:
        await self._read(mq.renew_process_lease, incarnation, now_ms, lease_until_ms)

    async def end_process_lease(self, incarnation: str) -> None:
        await self._read(mq.end_process_lease, incarnation)

    async def aclose(self) -> None:
        """Close the pool, waiting at most `shutdown_timeout_s` for units still running."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(self._limits.shutdown_timeout_s, shield=True):
            try:
                await self._bridge.run(self._pool.close)
                return
            except Exception:
                pass
        self._bridge.post(self._pool.terminate)

    async def get_api_key(self, key_hash: str) -> ApiKey | None:
        return await self._read(api.get_api_key, key_hash)

    async def get_webhook_endpoint(self, merchant_id: str) -> WebhookEndpoint | None:
        return await self._read(api.get_webhook_endpoint, merchant_id)

    async def readiness(self) -> list[str]:
        try:
            with trio.fail_after(self._limits.readiness_timeout_s):
                return await self._read(api.readiness)
        except migrations.MigrationError as exc:
            return [str(exc)]
        except StoreUnavailable as exc:
            return [str(exc)]
        except (OSError, trio.TooSlowError, asyncpg.PostgresError) as exc:
            return [f"database unreachable: {type(exc).__name__}"]


# --- opening ----------------------------------------------------------------------------------


@asynccontextmanager
async def open_postgres_store(
    dsn: str,
    *,
    migrate: bool = True,
    pool_size_max: int = POOL_SIZE_MAX,
    limits: PostgresLimits | None = None,
) -> AsyncIterator[PostgresStore]:
    """Connect a pool to `dsn`, bring the schema up to date (unless `migrate=False`), and yield
    the store; the pool and the bridge's thread close on exit."""
    _refuse_autojump_clock()
    limits = attrs.evolve(limits or PostgresLimits(), pool_size_max=pool_size_max).check()
    async with open_bridge() as bridge:
        with trio.fail_after(limits.connect_timeout_s):
            pool = await bridge.run(
                asyncpg.create_pool,
                dsn,
                timeout=limits.connect_timeout_s,  # each (re)connect, e.g. after an outage
                min_size=limits.pool_size_min,
                max_size=limits.pool_size_max,
                init=init_connection,
                reset=keep_session,
                server_settings={
                    "application_name": "payengine",
                    "statement_timeout": str(round(limits.statement_timeout_s * 1000)),
                    "idle_in_transaction_session_timeout": str(
                        round(limits.idle_in_transaction_timeout_s * 1000)
                    ),
                },
            )
        store = PostgresStore(bridge, pool, limits)
        try:
            if migrate:
                await bridge.run(migrations.migrate, pool)
            yield store
        finally:
            await store.aclose()


def _implements_the_port(store: PostgresStore, uow: PostgresUnitOfWork) -> tuple[Store, UnitOfWork]:
    """Never called: mypy checks here that the classes satisfy the port's protocols."""
    return store, uow
