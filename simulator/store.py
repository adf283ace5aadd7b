"""The simulator's memory store: the engine's `MemoryStore` plus two simulation-only hooks.

- `on_commit` is called right after every commit with the unit of work that committed, so the
  oracle checks "wallet = ledger" at every commit (the design promises it at every commit, not
  eventually), for the wallets that commit touched, at the cost of a few dict reads.
- `wallet_outside_ledger` plants a known bug for the oracle tests: the ledger transaction
  commits in the unit of work, but its wallet update is applied afterwards as a separate step,
  with a checkpoint in between where a crash loses it. It exists to prove the oracle notices;
  it is never used outside tests/simulation.

`snapshot` reads the committed tables synchronously (no checkpoint), so it is a consistent
instant: a memory commit is atomic under trio.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from engine.ledger import Transaction
from engine.records import Balance, Payment, PaymentOrder, Refund
from engine.states import OrderStatus, PaymentStatus, RefundStatus
from engine.store.memory import Checkpoint, MemoryStore, MemoryUnitOfWork
from simulator.oracle import Snapshot

WalletKey = tuple[str, str]
#: The statuses, before a commit, of the payments, orders and refunds it writes (None: inserted).
Before = tuple[
    dict[str, PaymentStatus | None],
    dict[str, OrderStatus | None],
    dict[str, RefundStatus | None],
]


class _WalletLater:
    """A unit of work that posts ledger entries but leaves the wallet for later (planted bug)."""

    def __init__(self, uow: MemoryUnitOfWork, deferred: list[tuple[WalletKey, int, int]]) -> None:
        self._uow = uow
        self._deferred = deferred

    async def post_transaction(self, txn: Transaction) -> None:
        await self._uow.post_transaction(txn)
        for key, (available, reserved) in txn.wallet_deltas().items():
            slot = self._uow._deltas[key]
            slot[0] -= available
            slot[1] -= reserved
            self._deferred.append((key, available, reserved))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)


class _SimUnitOfWork:
    """The engine's unit of work, then the oracle's hook and the planted bug's deferred wallet
    updates. A plain class, as the engine's (no async generator per unit of work)."""

    __slots__ = ("_deferred", "_inner", "_store", "_uow")

    def __init__(self, store: SimStore) -> None:
        self._store = store
        self._inner = MemoryStore.unit_of_work(store)
        self._deferred: list[tuple[WalletKey, int, int]] = []

    async def __aenter__(self) -> Any:
        self._uow: MemoryUnitOfWork = await self._inner.__aenter__()
        if self._store.wallet_outside_ledger:
            return _WalletLater(self._uow, self._deferred)
        return self._uow

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        store = self._store
        view = None if exc_type is not None or store.on_commit is None else self._before()
        if store.before_commit is not None and exc_type is None:
            await store.before_commit(self._uow)  # the crash sweep's "just before"
        await self._inner.__aexit__(exc_type, exc, traceback)  # commits, or rolls back
        if exc_type is not None:
            return
        if store.on_commit is not None:
            assert view is not None
            store.on_commit(self._uow, view)
        for key, available, reserved in self._deferred:
            await store._cp()  # a crash here loses the wallet update: wallet != ledger
            wallet = store._t.wallets.setdefault(key, [0, 0])
            wallet[0] += available
            wallet[1] += reserved
        if store.after_commit is not None:
            await store.after_commit(self._uow)  # the crash sweep's "just after"

    def _before(self) -> Before:
        """The committed status of every row this unit writes, read before it commits: when the
        commit succeeds, no other unit changed them in between (their versions are checked)."""
        t, uow = self._store._t, self._uow
        payments = {
            pid: (p.status if (p := t.payments.get(pid)) else None) for pid in uow._payments
        }
        orders = {oid: (o.status if (o := t.orders.get(oid)) else None) for oid in uow._orders}
        refunds = {
            rid: (r.status if (r := t.refunds.rows.get(rid)) else None) for rid in uow._refunds.rows
        }
        return payments, orders, refunds


class SimStore(MemoryStore):
    def __init__(self, checkpoint: Checkpoint, *, wallet_outside_ledger: bool = False) -> None:
        super().__init__(checkpoint)
        self.wallet_outside_ledger = wallet_outside_ledger
        #: Called after every commit with the unit and its rows' statuses before it.
        self.on_commit: Callable[[MemoryUnitOfWork, Before], None] | None = None
        #: Awaited just before (after) a unit of work commits (the crash sweep's boundaries).
        self.before_commit: Callable[[MemoryUnitOfWork], Awaitable[None]] | None = None
        self.after_commit: Callable[[MemoryUnitOfWork], Awaitable[None]] | None = None

    def unit_of_work(self) -> AbstractAsyncContextManager[Any]:
        return _SimUnitOfWork(self)

    # --- the oracle's synchronous views ---------------------------------------------------------
    def touched_books(
        self, uow: MemoryUnitOfWork
    ) -> tuple[dict[tuple[str, str], int], list[Balance]]:
        """The trial balance rows and wallets a committed unit of work touched."""
        keys = set(uow._deltas)
        for txn in uow._txns:
            keys.update(txn.wallet_deltas())
        trial: dict[tuple[str, str], int] = {}
        balances = []
        for merchant, currency in sorted(keys):
            for base in ("merchant_payable", "merchant_reserved"):
                account = f"{base}:{merchant}"
                trial[(account, currency)] = self._t.sums.get((account, currency), 0)
            available, reserved = self._t.wallets.get((merchant, currency), [0, 0])
            balances.append(Balance(merchant, currency, available, reserved))
        return trial, balances

    def snapshot(self) -> Snapshot:
        t = self._t
        dead_letters = len(t.dead)
        return Snapshot(
            payments=dict(t.payments),
            orders=dict(t.orders),
            txns=tuple(t.txns.values()),
            trial={k: v for k, v in sorted(t.sums.items())},
            balances=tuple(Balance(m, c, a, r) for (m, c), (a, r) in sorted(t.wallets.items())),
            pending_deliveries=sum(len(p) for p in t.pending.values()),
            dead_letters=dead_letters,
            refunds=dict(t.refunds.rows),
            disputes=dict(t.disputes.rows),
        )

    def books(self) -> tuple[dict[tuple[str, str], int], list[Balance]]:
        """The whole trial balance and every wallet, as in `snapshot` but in no particular order
        (the oracle sorts what it reports): the oracle's look every virtual minute, which needs
        neither the payments nor the ledger's transactions copied."""
        t = self._t
        trial = dict(t.sums)
        balances = [Balance(m, c, a, r) for (m, c), (a, r) in t.wallets.items()]
        return trial, balances

    def committed_payments(self) -> Mapping[str, Payment]:
        """The committed payments themselves (as `committed_orders`)."""
        return self._t.payments

    def has_psp_event(self, event_id: str) -> bool:
        """Whether a PSP event with this id is committed (recorded for deduplication)."""
        return event_id in self._t.psp_events

    def committed_orders_of(self, payment_id: str) -> list[PaymentOrder]:
        t = self._t
        return [t.orders[oid] for oid in t.orders_by_payment.get(payment_id, ())]

    def committed_refunds(self) -> Mapping[str, Refund]:
        """The committed refunds themselves (as `committed_orders`)."""
        return self._t.refunds.rows

    def committed_orders(self) -> Mapping[str, PaymentOrder]:
        """The committed orders themselves, not a copy: for a synchronous look only (read, never
        written, and not kept past the next checkpoint)."""
        return self._t.orders

    def unfinished(self) -> int:
        t = self._t
        return len(t.unfinished_payments) + len(t.unfinished_orders) + len(t.refunds.unfinished)

    def payments_count(self) -> int:
        return len(self._t.payments)
