"""The PostgreSQL store: the `Store` port over asyncpg, bridged into trio.

Why the bridge lives here alone: asyncpg speaks asyncio and payengine runs on trio, so the
process runs under `trio_asyncio.open_loop()` and every asyncpg call crosses over with
`aio_as_trio`, once per port operation (pg_queries.py, pg_messages.py and pg_reads.py send all
of an operation's statements in that one crossing). No other module touches trio_asyncio.

`open_postgres_store` works either way: inside `async with trio_asyncio.open_loop()` it uses
that loop; without one it opens its own for the store's lifetime. The store passes its loop
explicitly to every call, so any task of the same trio run may use it. It needs real time:
deadlines run on trio's clock, and an autojump clock would fire them while the database thinks.

A unit of work is one pooled connection and one READ COMMITTED transaction; statements run as the
caller calls them. Normal exit commits; any exception (trio.Cancelled included) rolls back and
propagates. Commit and rollback are shielded from cancellation, with a timeout, so a cancelled
caller never leaves a transaction undecided; a commit that times out has an unknown outcome, so
its connection is dropped and `trio.TooSlowError` raised (the caller reloads, as after a crash).

Errors: expected outcomes are raised without a failing statement (see pg_queries.py), so a
caller may catch one and go on with the unit, as with the memory store. When a database guard
refuses a statement, asyncpg's error is mapped by SQLSTATE and constraint name (pg_errors.py);
the database has then aborted the transaction, so the unit remembers the error and raises it again
if the caller swallowed it and tried to commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import asyncpg
import attrs
import trio
import trio.testing
import trio_asyncio

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
    Refund,
)
from engine.store import migrate as migrations
from engine.store import pg_api as api
from engine.store import pg_messages as mq
from engine.store import pg_queries as q
from engine.store import pg_reads as reads
from engine.store import pg_refunds as rq
from engine.store.pg_errors import map_error
from engine.store.pg_payouts import PgPayoutReadsMixin
from engine.store.pg_unit import PostgresUnitOfWork
from engine.store.port import EntryCursor, Store, UnitOfWork

log = logging.getLogger("payengine.store")

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

    def check(self) -> PostgresLimits:
        if not 0 < self.pool_size_min <= self.pool_size_max:
            raise InvalidInput("postgres pool sizes need 0 < pool_size_min <= pool_size_max")
        for name, value in attrs.asdict(self).items():
            if value <= 0:
                raise InvalidInput(f"postgres limit {name} must be positive, got {value!r}")
        return self


#: SQLSTATEs of a server that is going away or not yet accepting connections (class 57P:
#: admin shutdown, crash shutdown, cannot connect now); class 08 is a connection exception.
_GOING_AWAY_STATES = frozenset({"57P01", "57P02", "57P03"})


#: What asyncpg's InternalClientError says of a protocol left mid-operation by a lost
#: connection (units use their connection one statement at a time, so nothing else says it).
_BUSY_AFTER_LOSS_SIGN = "another operation"
#: What asyncpg's InterfaceError says when the connection under it was lost.
_LOST_CONNECTION_SIGNS = ("connection is closed", "released back to the pool")


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """`StoreUnavailable` when `exc` says the database did not answer, else None.

    A refused or dropped socket (OSError, which includes TimeoutError), a connection asyncpg
    knows is closed, a server shutting down or starting up: all of these pass when the
    database is back. A statement the database refused is not one of them (pg_errors.py).
    """
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if not (state.startswith("08") or state in _GOING_AWAY_STATES):
            return None
    elif isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", or a unit's connection the pool took back when the server
        # dropped it ("released back to the pool": units release only at their end); any
        # other misuse is a bug.
        if not any(sign in str(exc) for sign in _LOST_CONNECTION_SIGNS):
            return None
    elif isinstance(exc, asyncpg.exceptions.InternalClientError):
        # A connection the server dropped while an operation was under way: asyncpg's
        # protocol is left mid-operation ("cannot switch to state ...; another operation is
        # in progress") and every later statement on it fails so. The pool replaces it.
        if _BUSY_AFTER_LOSS_SIGN not in str(exc):
            return None
    elif not isinstance(exc, OSError):
        return None
    return StoreUnavailable(f"database unreachable: {type(exc).__name__}: {exc}")


class _Bridge:
    """Runs asyncio-native coroutines from trio on one trio-asyncio loop, mapping refusals
    (pg_errors.py) and outages (`StoreUnavailable`) to the port's errors."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            result = await trio_asyncio.aio_as_trio(fn, loop=self._loop)(*args, **kwargs)
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
            OSError,
        ) as exc:
            mapped = map_error(exc) or unavailable(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return cast(T, result)


@asynccontextmanager
async def _open_bridge() -> AsyncIterator[_Bridge]:
    """The running trio-asyncio loop, or a new one for as long as the caller needs it.

    A loop of our own is an implementation detail, so the exception groups its nurseries wrap
    around the caller's errors are unwrapped: `except DuplicateKey` works either way.
    """
    loop = trio_asyncio.current_loop.get()
    if loop is not None:
        tolerate_lost_connections(loop)
        yield _Bridge(loop)
        return
    try:
        async with trio_asyncio.open_loop() as own_loop:
            tolerate_lost_connections(own_loop)
            yield _Bridge(own_loop)
    except BaseExceptionGroup as group:
        _raise_sole_error(group)
        raise


def tolerate_lost_connections(loop: Any) -> None:
    """Make a lost connection's leftover asyncio error weather on `loop`, not a crash.

    When PostgreSQL drops a connection (a restart, a failover, `pg_terminate_backend`),
    asyncpg may leave a future holding `ConnectionError('unexpected connection_lost() call')`
    that nobody awaits; asyncio reports it to the loop's exception handler, and trio-asyncio's
    default handler raises every such report into its nursery, which ends the process's
    loop: the whole engine, for an outage the pool survives by reconnecting. Errors that say
    the database did not answer (`unavailable`) are logged instead; anything else still goes
    to trio-asyncio's handler, which raises it.
    """
    if getattr(loop, "_payengine_tolerates_lost_connections", False):
        return

    def handle(loop: Any, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException) and unavailable(exc) is not None:
            log.warning(
                "asyncpg: %s: %r (a lost connection; the pool reconnects)",
                context.get("message", "error"),
                exc,
            )
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    loop._payengine_tolerates_lost_connections = True


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def _raise_sole_error(group: BaseExceptionGroup[BaseException]) -> None:
    """Re-raise the group's one error (or its first Cancelled, when that is all it holds),
    keeping its own cause and context; return when there are several."""
    leaves = _leaves(group)
    errors = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if len(errors) > 1:
        return
    sole = errors[0] if errors else leaves[0]
    context = sole.__context__
    try:
        raise sole
    finally:
        sole.__context__ = context


def _refuse_autojump_clock() -> None:
    clock = trio.lowlevel.current_clock()
    if isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold != math.inf:
        raise InvalidInput(
            "the postgres store needs real time: an autojump clock fires its timeouts "
            "while the database is answering; use the memory store for virtual time"
        )


# --- asyncio side: connection set-up, and the two ends of a unit ------------------------------


async def _init_connection(conn: Any) -> None:
    """Every pooled connection decodes json/jsonb into dicts (payloads, response headers)."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, schema="pg_catalog", encoder=q.dump_json, decoder=json.loads
        )


async def _keep_session(conn: Any) -> None:
    """Pool reset: units always end their transaction and change no session state, so the
    default reset (RESET ALL and friends, one more round trip per unit) is not needed. asyncpg
    still rolls back a transaction left open."""


async def _begin_unit(pool: Any) -> tuple[Any, Any]:
    """Acquire a connection and open a READ COMMITTED transaction: one bridge crossing."""
    conn = await pool.acquire()
    try:
        txn = conn.transaction(isolation="read_committed")
        await txn.start()
    except BaseException:
        await pool.release(conn)
        raise
    return conn, txn


async def _end_unit(pool: Any, conn: Any, txn: Any, *, commit: bool) -> None:
    """Commit or roll back, then give the connection back: one bridge crossing."""
    try:
        if commit:
            await txn.commit()
        else:
            await txn.rollback()
    finally:
        await pool.release(conn)


def _terminate(conn: Any) -> None:
    """Drop a connection whose state is unknown; the server rolls back a closed session.

    `_end_unit` gives the connection back to the pool even when its commit or rollback fails,
    and a released proxy refuses every call: that refusal must not replace the caller's error.
    """
    with contextlib.suppress(asyncpg.InterfaceError):  # already released: the pool has it
        conn.terminate()


# --- the store --------------------------------------------------------------------------------


@attrs.frozen
class PostgresStatistics:
    pool_size: int
    pool_idle: int
    units_committed: int
    units_rolled_back: int
    #: Reads of committed state that answered (a stall watch's sign of progress).
    reads_answered: int


class PostgresStore(PgPayoutReadsMixin):
    """The `Store` port on PostgreSQL. Open it with `open_postgres_store`."""

    name = "postgres"

    def __init__(self, bridge: _Bridge, pool: Any, limits: PostgresLimits) -> None:
        self._bridge = bridge
        self._pool = pool
        self._limits = limits
        self._closed = False
        self._committed = 0
        self._rolled_back = 0
        self._reads = 0

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
        # Shielded: a cancellation that lands after asyncio acquired the connection but before
        # trio received it would leak the connection (and hang the pool's close). Bounded by
        # the acquire timeout; a pending cancellation takes effect at the next checkpoint.
        with trio.fail_after(self._limits.acquire_timeout_s) as scope:
            scope.shield = True
            conn, txn = await self._bridge.run(_begin_unit, self._pool)
        uow = PostgresUnitOfWork(self._bridge.run, conn)
        try:
            yield uow
        except BaseException:
            await self._end(conn, txn, commit=False)
            raise
        if uow.aborted is not None:
            await self._end(conn, txn, commit=False)
            raise uow.aborted
        await self._end(conn, txn, commit=True)

    async def _end(self, conn: Any, txn: Any, *, commit: bool) -> None:
        """Commit or roll back and release, shielded, within `commit_timeout_s`.

        A rollback is best effort (the caller's exception is on its way): a connection that
        fails or hangs is dropped, and the server rolls back a closed session. A commit that
        fails ends as a rollback and raises; one that hangs has an unknown outcome.
        """
        with trio.move_on_after(self._limits.commit_timeout_s, shield=True) as scope:
            try:
                await self._bridge.run(_end_unit, self._pool, conn, txn, commit=commit)
            except Exception:
                if commit:
                    self._rolled_back += 1
                    raise
                _terminate(conn)
        if scope.cancelled_caught:
            _terminate(conn)
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

    async def get_refund(self, refund_id: str) -> Refund | None:
        return await self._read(rq.get_refund, refund_id)

    async def list_refunds(
        self, order_id: str, limit: int, after: str | None = None
    ) -> list[Refund]:
        return await self._read(rq.list_refunds, order_id, limit, after)

    async def list_unfinished_refunds(self, limit: int, after: str | None = None) -> list[Refund]:
        return await self._read(rq.list_unfinished_refunds, limit, after)

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
        self._pool.terminate()

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
    the store; the pool (and the trio-asyncio loop, if this opened one) closes on exit."""
    _refuse_autojump_clock()
    limits = attrs.evolve(limits or PostgresLimits(), pool_size_max=pool_size_max).check()
    async with _open_bridge() as bridge:
        with trio.fail_after(limits.connect_timeout_s):
            pool = await bridge.run(
                asyncpg.create_pool,
                dsn,
                timeout=limits.connect_timeout_s,  # each (re)connect, e.g. after an outage
                min_size=limits.pool_size_min,
                max_size=limits.pool_size_max,
                init=_init_connection,
                reset=_keep_session,
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


async def apply_migrations(dsn: str) -> list[str]:
    """`payengine migrate`: apply pending migrations to `dsn`; returns the names applied."""
    return await _with_connection(dsn, migrations.migrate)


async def list_pending_migrations(dsn: str) -> list[str]:
    """The migrations `apply_migrations` would apply to `dsn` now."""
    return await _with_connection(dsn, migrations.pending_migrations)


async def _with_connection(dsn: str, op: Callable[[Any], Awaitable[list[str]]]) -> list[str]:
    async with _open_bridge() as bridge:
        conn = await bridge.run(asyncpg.connect, dsn)
        try:
            return await bridge.run(op, conn)
        finally:
            with trio.move_on_after(PostgresLimits().shutdown_timeout_s, shield=True):
                await bridge.run(conn.close)


def _implements_the_port(store: PostgresStore, uow: PostgresUnitOfWork) -> tuple[Store, UnitOfWork]:
    """Never called: mypy checks here that the classes satisfy the port's protocols."""
    return store, uow
