"""The postgres store as the simulated world sees it: crash points, and the oracle's reads.

Why a wrapper and not the memory SimStore's hooks: against PostgreSQL the world cannot look into
an uncommitted unit of work, nor read the tables synchronously. So:

- Crashes: `PgSimStore` awaits the world's checkpoint when a unit of work begins, before each of
  its statements, before it commits, and before each read, exactly where the memory store does.
  A crash armed there cancels the engine incarnation; the cancelled unit rolls back in
  PostgreSQL (an in-process engine restart; a real process restart is a later issue).
  Write-behind units (`batched_unit_of_work`) are the real store's, with the same crash points
  plus one after their group commit (simulator/pg_batched.py).
- The oracle reads the store only through the `Store` port (`read_snapshot`, `read_books`),
  asynchronously; the world caches what the runner and the progress bar read synchronously
  (`snapshot()` is the final state, read before the store closes).
- The books are read in several statements, so a commit may land between them; `read_books`
  reads the trial balance again after the wallets and retries until the two agree, so a
  wallet is never compared with a ledger of another instant.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from engine.ledger import Transaction
from engine.records import Balance, Dispute, Payment, PaymentOrder, Refund
from engine.store.port import PAGE_SIZE_MAX
from engine.store.postgres import PostgresStore
from simulator.oracle import Snapshot
from simulator.pg_batched import BatchedCounts, crashing_batched_unit

Checkpoint = Callable[[], Awaitable[None]]

#: How many times `read_books` rereads before it gives up on a busy instant (the next oracle
#: tick tries again).
BOOKS_READS_MAX = 5


def _with_checkpoint(fn: Callable[..., Awaitable[Any]], checkpoint: Checkpoint) -> Any:
    async def call(*args: Any, **kwargs: Any) -> Any:
        await checkpoint()
        return await fn(*args, **kwargs)

    return call


class _CrashingUnit:
    """A postgres unit of work that passes a crash point before each statement."""

    def __init__(self, uow: Any, checkpoint: Checkpoint) -> None:
        self._uow = uow
        self._cp = checkpoint

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._uow, name)
        if inspect.iscoroutinefunction(attr):
            return _with_checkpoint(attr, self._cp)
        return attr


class PgSimStore:
    """Delegates the `Store` port to a `PostgresStore` (attached once it is open)."""

    name = "postgres"

    def __init__(self, checkpoint: Checkpoint, *, crash_point: Checkpoint | None = None) -> None:
        self._cp = checkpoint
        #: A crash point that is no database call (after a group commit): crashes only.
        self._crash_point = crash_point or checkpoint
        #: How the run's write-behind units ended (the tier report's `write_behind`).
        self.batched = BatchedCounts()
        self._pg: PostgresStore | None = None
        #: Set by the world: the final committed state, and counts for reports and progress.
        self.final: Snapshot | None = None
        self.unfinished_count = 0
        #: The payments the clients were told about (the progress bar's count).
        self.count_payments: Callable[[], int] = lambda: 0

    def attach(self, pg: PostgresStore) -> None:
        assert self._pg is None, "a PgSimStore is attached once"
        self._pg = pg

    @property
    def pg(self) -> PostgresStore:
        assert self._pg is not None, "the postgres store is not open yet"
        return self._pg

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Any]:
        await self._cp()
        async with self.pg.unit_of_work() as uow:
            yield _CrashingUnit(uow, self._cp)
            await self._cp()  # a crash here: the unit rolls back, nothing of it is committed

    def batched_unit_of_work(self) -> AbstractAsyncContextManager[Any]:
        """The real store's write-behind unit with the tier's crash points (pg_batched.py):
        found by `engine.store.batching.batched_unit_of_work`, which looks at the class."""
        return crashing_batched_unit(
            self.pg,
            wrap=lambda uow: _CrashingUnit(uow, self._cp),
            checkpoint=self._cp,
            crash_point=self._crash_point,
            counts=self.batched,
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self.pg, name)
        if inspect.iscoroutinefunction(attr):
            return _with_checkpoint(attr, self._cp)
        return attr

    # --- the synchronous views the runner and the progress bar use ------------------------
    def snapshot(self) -> Snapshot:
        assert self.final is not None, "the final snapshot is read before the store closes"
        return self.final

    def unfinished(self) -> int:
        return self.unfinished_count

    def payments_count(self) -> int:
        return self.count_payments()


async def read_books(
    pg: PostgresStore,
) -> tuple[dict[tuple[str, str], int], list[Balance]] | None:
    """The trial balance and every wallet at one instant, or None if commits kept coming."""
    trial = await pg.trial_balance()
    for _ in range(BOOKS_READS_MAX):
        balances = await pg.all_balances()
        again = await pg.trial_balance()
        if again == trial:
            return trial, balances
        trial = again
    return None


async def read_orders(
    pg: PostgresStore, payments: Mapping[str, Payment]
) -> dict[str, PaymentOrder]:
    orders: dict[str, PaymentOrder] = {}
    for payment_id in sorted(payments):
        for order in await pg.get_orders(payment_id):
            orders[order.order_id] = order
    return orders


async def read_ledger(pg: PostgresStore, accounts: Iterable[str]) -> tuple[Transaction, ...]:
    """Every ledger transaction: each account's entries name their transactions (every
    transaction has an entry in some account of the trial balance), then each is read whole."""
    txn_ids: set[str] = set()
    for account in sorted(set(accounts)):
        after: tuple[str, int] | None = None
        while True:
            page = await pg.list_entries(account, PAGE_SIZE_MAX, after)
            txn_ids.update(txn_id for txn_id, _, _ in page)
            if len(page) < PAGE_SIZE_MAX:
                break
            after = (page[-1][0], page[-1][1])
    txns = []
    for txn_id in sorted(txn_ids):
        txn = await pg.get_transaction(txn_id)
        assert txn is not None, f"ledger entries name {txn_id}, which cannot be read"
        txns.append(txn)
    return tuple(txns)


async def read_snapshot(pg: PostgresStore) -> Snapshot:
    """The committed state, read page by page through the Store port, once the world is quiet
    (the engine has stopped: nothing commits while it is read)."""
    payments: dict[str, Payment] = {}
    after: str | None = None
    while True:
        page = await pg.list_payments(PAGE_SIZE_MAX, after)
        for payment in page:
            payments[payment.payment_id] = payment
        if len(page) < PAGE_SIZE_MAX:
            break
        after = page[-1].payment_id
    orders = await read_orders(pg, payments)
    books = await read_books(pg)
    assert books is not None, "the books kept changing after the world went quiet"
    trial, balances = books
    return Snapshot(
        payments=payments,
        orders=orders,
        txns=await read_ledger(pg, (account for account, _ in trial)),
        trial=dict(sorted(trial.items())),
        balances=tuple(sorted(balances, key=lambda b: (b.merchant_id, b.currency))),
        pending_deliveries=await pg.count_pending_deliveries(),
        dead_letters=len(await pg.list_dead_letters(PAGE_SIZE_MAX)),
        refunds=await read_refunds(pg, orders),
        disputes=await read_disputes(pg),
    )


async def read_disputes(pg: PostgresStore) -> dict[str, Dispute]:
    """Every dispute, page by page."""
    disputes: dict[str, Dispute] = {}
    after: str | None = None
    while page := await pg.list_disputes(PAGE_SIZE_MAX, after):
        disputes.update((d.dispute_id, d) for d in page)
        after = page[-1].dispute_id
    return disputes


async def read_refunds(pg: PostgresStore, orders: Mapping[str, PaymentOrder]) -> dict[str, Refund]:
    """Every refund, order by order, page by page."""
    refunds: dict[str, Refund] = {}
    for order_id in sorted(orders):
        after: str | None = None
        while page := await pg.list_refunds(order_id, PAGE_SIZE_MAX, after):
            refunds.update((r.refund_id, r) for r in page)
            after = page[-1].refund_id
    return refunds
