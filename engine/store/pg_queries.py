"""The PostgreSQL store's statements: asyncio-native, one coroutine per port operation.

Why a separate module: postgres.py owns the trio side (the bridge, connections, transactions)
and pg_errors.py maps refusals; this module owns the SQL and turns rows into records. Each
coroutine runs on the asyncio side in one bridge crossing, however many statements it sends.

Expected outcomes are detected without a failing SQL statement: inserts use
`ON CONFLICT DO NOTHING` and then name the key that conflicted; updates check the version in
their WHERE clause; a posting locks its wallets first and checks the balances before writing.
A failed statement would abort the whole database transaction, whereas a `StoreError` raised
here leaves the unit of work exactly as it was before the call, as the memory store does, so a
caller may catch it and go on with the unit. The database's own guards (CHECK constraints,
triggers) stay in place as the last line of defence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from engine.errors import (
    DuplicateKey,
    NegativeBalance,
    NotFound,
    UnbalancedTransaction,
    VersionConflict,
)
from engine.ledger import Entry, Transaction, TransactionKind, imbalance
from engine.records import Balance, Payment, PaymentOrder, evolve


class Executor(Protocol):
    """What the statements need: an asyncpg connection or pool (asyncpg has no type hints)."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


def dump_json(value: Any) -> str:
    """The jsonb encoder: a record's payload is a Mapping, not always a dict."""
    return json.dumps(value, separators=(",", ":"), default=_mapping_to_dict)


def _mapping_to_dict(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def affected_rows(status: str) -> int:
    """The row count of a command tag such as 'DELETE 3' or 'UPDATE 0'."""
    return int(status.rsplit(" ", 1)[-1])


# --- payments and orders ---------------------------------------------------------------------

PAYMENT_COLUMNS = (
    "payment_id, checkout_id, buyer_id, currency, amount_minor, status, created_at_ms, "
    "updated_at_ms, expires_at_ms, return_url, psp_session_id, hosted_url, failure_reason, version"
)
ORDER_COLUMNS = (
    "order_id, payment_id, seller_id, currency, amount_minor, status, created_at_ms, "
    "updated_at_ms, ledger_booked, wallet_booked, attempts, psp_capture_id, failure_reason, version"
)

_INSERT_PAYMENT = f"""
WITH p AS (
    INSERT INTO payments ({PAYMENT_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    ON CONFLICT DO NOTHING
    RETURNING payment_id
), o AS (
    INSERT INTO payment_orders ({ORDER_COLUMNS})
    SELECT x.order_id, p.payment_id, x.seller_id, x.currency, x.amount_minor, x.status,
           x.created_at_ms, x.updated_at_ms, x.ledger_booked, x.wallet_booked, x.attempts,
           x.psp_capture_id, x.failure_reason, x.version
    FROM p, unnest($15::text[], $16::text[], $17::text[], $18::bigint[], $19::text[],
                   $20::bigint[], $21::bigint[], $22::boolean[], $23::boolean[], $24::integer[],
                   $25::text[], $26::text[], $27::bigint[])
         AS x(order_id, seller_id, currency, amount_minor, status, created_at_ms, updated_at_ms,
              ledger_booked, wallet_booked, attempts, psp_capture_id, failure_reason, version)
    ON CONFLICT DO NOTHING
    RETURNING order_id
)
SELECT (SELECT count(*) FROM p) AS payments, ARRAY(SELECT order_id FROM o) AS order_ids
"""


async def insert_payment(db: Executor, payment: Payment, orders: Sequence[PaymentOrder]) -> None:
    assert all(o.payment_id == payment.payment_id for o in orders), "order of another payment"
    assert sum(o.amount_minor for o in orders) == payment.amount_minor, "orders != payment"
    p = payment
    row = await db.fetchrow(
        _INSERT_PAYMENT,
        *(p.payment_id, p.checkout_id, p.buyer_id, p.currency, p.amount_minor, p.status.value),
        *(p.created_at_ms, p.updated_at_ms, p.expires_at_ms, p.return_url, p.psp_session_id),
        *(p.hosted_url, p.failure_reason, p.version),
        [o.order_id for o in orders],
        [o.seller_id for o in orders],
        [o.currency for o in orders],
        [o.amount_minor for o in orders],
        [o.status.value for o in orders],
        [o.created_at_ms for o in orders],
        [o.updated_at_ms for o in orders],
        [o.ledger_booked for o in orders],
        [o.wallet_booked for o in orders],
        [o.attempts for o in orders],
        [o.psp_capture_id for o in orders],
        [o.failure_reason for o in orders],
        [o.version for o in orders],
    )
    if row["payments"] == 0:
        taken = await db.fetchrow(
            "SELECT EXISTS (SELECT 1 FROM payments WHERE checkout_id = $1) AS checkout,"
            " EXISTS (SELECT 1 FROM payments WHERE payment_id = $2) AS payment",
            p.checkout_id,
            p.payment_id,
        )
        if taken["checkout"]:
            raise DuplicateKey("payments.checkout_id", p.checkout_id)
        assert taken["payment"], f"payment {p.payment_id} conflicted with no visible row"
        raise DuplicateKey("payments.payment_id", p.payment_id)
    inserted = set(row["order_ids"])
    if len(inserted) < len(orders):
        # An order id was taken: undo this call's rows (visible to no one else yet), so the
        # call leaves the unit of work as it found it.
        await db.execute("DELETE FROM payment_orders WHERE payment_id = $1", p.payment_id)
        await db.execute("DELETE FROM payments WHERE payment_id = $1", p.payment_id)
        seen: set[str] = set()
        for order in orders:
            if order.order_id not in inserted or order.order_id in seen:
                raise DuplicateKey("payment_orders.order_id", order.order_id)
            seen.add(order.order_id)
        raise AssertionError("an order was not inserted but none is a duplicate")


_UPDATE_PAYMENT = """
UPDATE payments
SET buyer_id = $3, currency = $4, amount_minor = $5, status = $6, created_at_ms = $7,
    updated_at_ms = $8, expires_at_ms = $9, return_url = $10, psp_session_id = $11,
    hosted_url = $12, failure_reason = $13, version = version + 1
WHERE payment_id = $1 AND version = $2
RETURNING checkout_id, version
"""


async def update_payment(db: Executor, payment: Payment) -> Payment:
    p = payment
    row = await db.fetchrow(
        _UPDATE_PAYMENT,
        *(p.payment_id, p.version, p.buyer_id, p.currency, p.amount_minor, p.status.value),
        *(p.created_at_ms, p.updated_at_ms, p.expires_at_ms, p.return_url, p.psp_session_id),
        *(p.hosted_url, p.failure_reason),
    )
    if row is None:
        current = await db.fetchval(
            "SELECT version FROM payments WHERE payment_id = $1", p.payment_id
        )
        if current is None:
            raise NotFound(f"payment {p.payment_id} does not exist")
        raise VersionConflict(f"payment {p.payment_id} is at version {current}, not {p.version}")
    assert row["checkout_id"] == p.checkout_id, "checkout_id is immutable"
    return evolve(payment, version=int(row["version"]))


_UPDATE_ORDER = """
UPDATE payment_orders
SET payment_id = $3, seller_id = $4, currency = $5, amount_minor = $6, status = $7,
    created_at_ms = $8, updated_at_ms = $9, ledger_booked = $10, wallet_booked = $11,
    attempts = $12, psp_capture_id = $13, failure_reason = $14, version = version + 1
WHERE order_id = $1 AND version = $2
RETURNING version
"""


async def update_order(db: Executor, order: PaymentOrder) -> PaymentOrder:
    o = order
    version = await db.fetchval(
        _UPDATE_ORDER,
        *(o.order_id, o.version, o.payment_id, o.seller_id, o.currency, o.amount_minor),
        *(o.status.value, o.created_at_ms, o.updated_at_ms, o.ledger_booked, o.wallet_booked),
        *(o.attempts, o.psp_capture_id, o.failure_reason),
    )
    if version is None:
        current = await db.fetchval(
            "SELECT version FROM payment_orders WHERE order_id = $1", o.order_id
        )
        if current is None:
            raise NotFound(f"payment order {o.order_id} does not exist")
        raise VersionConflict(
            f"payment order {o.order_id} is at version {current}, not {o.version}"
        )
    return evolve(order, version=int(version))


async def get_payment(db: Executor, payment_id: str) -> Payment | None:
    row = await db.fetchrow(
        f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = $1", payment_id
    )
    return None if row is None else Payment.from_row(row)


async def get_payment_by_checkout(db: Executor, checkout_id: str) -> Payment | None:
    row = await db.fetchrow(
        f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE checkout_id = $1", checkout_id
    )
    return None if row is None else Payment.from_row(row)


async def get_order(db: Executor, order_id: str) -> PaymentOrder | None:
    row = await db.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM payment_orders WHERE order_id = $1", order_id
    )
    return None if row is None else PaymentOrder.from_row(row)


async def get_orders(db: Executor, payment_id: str) -> list[PaymentOrder]:
    rows = await db.fetch(
        f"SELECT {ORDER_COLUMNS} FROM payment_orders WHERE payment_id = $1 ORDER BY order_id",
        payment_id,
    )
    return [PaymentOrder.from_row(row) for row in rows]


# --- ledger and wallets ----------------------------------------------------------------------

_LOCK_WALLETS = """
SELECT w.merchant_id, w.currency, w.available_minor, w.reserved_minor
FROM wallets w JOIN unnest($1::text[], $2::text[]) AS k(merchant_id, currency)
     ON w.merchant_id = k.merchant_id AND w.currency = k.currency
ORDER BY w.merchant_id, w.currency
FOR UPDATE OF w
"""

# One statement: the transaction row, its entries, and the wallet increments. Entries and
# wallets are written only when the transaction row was (t is empty on a duplicate), and the
# wallet writes are increments, never read-modify-write: `existing` wallets were locked and
# checked by the caller; `missing` ones get non-negative deltas only, and ON CONFLICT turns a
# wallet created concurrently into an increment.
_POST_TRANSACTION = """
WITH t AS (
    INSERT INTO ledger_transactions (txn_id, kind, reference, created_at_ms, description)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT DO NOTHING
    RETURNING txn_id
), e AS (
    INSERT INTO ledger_entries (txn_id, entry_no, account, currency, amount_minor)
    SELECT t.txn_id, x.entry_no, x.account, x.currency, x.amount_minor
    FROM t, unnest($6::smallint[], $7::text[], $8::text[], $9::bigint[])
         AS x(entry_no, account, currency, amount_minor)
    RETURNING 1
), existing AS (
    UPDATE wallets w
    SET available_minor = w.available_minor + d.available,
        reserved_minor = w.reserved_minor + d.reserved
    FROM t, unnest($10::text[], $11::text[], $12::bigint[], $13::bigint[])
         AS d(merchant_id, currency, available, reserved)
    WHERE w.merchant_id = d.merchant_id AND w.currency = d.currency
    RETURNING 1
), missing AS (
    INSERT INTO wallets AS w (merchant_id, currency, available_minor, reserved_minor)
    SELECT d.merchant_id, d.currency, d.available, d.reserved
    FROM t, unnest($14::text[], $15::text[], $16::bigint[], $17::bigint[])
         AS d(merchant_id, currency, available, reserved)
    ON CONFLICT (merchant_id, currency) DO UPDATE
    SET available_minor = w.available_minor + EXCLUDED.available_minor,
        reserved_minor = w.reserved_minor + EXCLUDED.reserved_minor
    RETURNING 1
)
SELECT (SELECT count(*) FROM t) AS txns, (SELECT count(*) FROM e) AS entries,
       (SELECT count(*) FROM existing) + (SELECT count(*) FROM missing) AS wallets
"""


async def _raise_duplicate_transaction(db: Executor, txn: Transaction) -> None:
    taken = await db.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM ledger_transactions WHERE txn_id = $1) AS txn_id,"
        " EXISTS (SELECT 1 FROM ledger_transactions WHERE kind = $2 AND reference = $3)"
        " AS kind_reference",
        txn.txn_id,
        txn.kind.value,
        txn.reference,
    )
    if taken["txn_id"]:
        raise DuplicateKey("ledger_transactions.txn_id", txn.txn_id)
    if taken["kind_reference"]:
        raise DuplicateKey("ledger_transactions.kind_reference", (txn.kind, txn.reference))


async def post_transaction(db: Executor, txn: Transaction) -> None:
    # `Transaction` validated itself, but a record can be forged; the deferred trigger would
    # refuse it too, only later and by aborting the whole unit.
    if len(txn.entries) < 2 or imbalance(txn.entries):
        raise UnbalancedTransaction(f"transaction {txn.txn_id} does not balance")
    deltas = sorted(txn.wallet_deltas().items())
    balances: dict[tuple[str, str], tuple[int, int]] = {}
    if deltas:
        rows = await db.fetch(
            _LOCK_WALLETS, [m for (m, _), _ in deltas], [c for (_, c), _ in deltas]
        )
        balances = {
            (r["merchant_id"], r["currency"]): (int(r["available_minor"]), int(r["reserved_minor"]))
            for r in rows
        }
    for key, (available, reserved) in deltas:
        base_available, base_reserved = balances.get(key, (0, 0))
        if base_available + available < 0 or base_reserved + reserved < 0:
            await _raise_duplicate_transaction(db, txn)  # a duplicate is reported first
            raise NegativeBalance(f"wallet {key[0]} {key[1]} would go below zero")
    existing = [(k, d) for k, d in deltas if k in balances]
    missing = [(k, d) for k, d in deltas if k not in balances]
    row = await db.fetchrow(
        _POST_TRANSACTION,
        *(txn.txn_id, txn.kind.value, txn.reference, txn.created_at_ms, txn.description),
        list(range(len(txn.entries))),
        [e.account for e in txn.entries],
        [e.currency for e in txn.entries],
        [e.amount_minor for e in txn.entries],
        *_wallet_arrays(existing),
        *_wallet_arrays(missing),
    )
    if row["txns"] == 0:
        await _raise_duplicate_transaction(db, txn)
        raise AssertionError(f"transaction {txn.txn_id} conflicted with no visible row")
    assert row["entries"] == len(txn.entries), "not every entry was written"
    assert row["wallets"] == len(deltas), "not every wallet delta was applied"


def _wallet_arrays(
    deltas: Sequence[tuple[tuple[str, str], tuple[int, int]]],
) -> tuple[list[str], list[str], list[int], list[int]]:
    return (
        [merchant_id for (merchant_id, _), _ in deltas],
        [currency for (_, currency), _ in deltas],
        [available for _, (available, _) in deltas],
        [reserved for _, (_, reserved) in deltas],
    )


TRANSACTION_ROWS = """
SELECT t.txn_id, t.kind, t.reference, t.created_at_ms, t.description,
       e.account, e.amount_minor, e.currency
FROM ledger_transactions t JOIN ledger_entries e ON e.txn_id = t.txn_id
"""


def transaction_from_rows(rows: Sequence[Any]) -> Transaction | None:
    """Rebuild a transaction; `Transaction` checks it balanced again on the way in."""
    if not rows:
        return None
    head = rows[0]
    assert all(r["txn_id"] == head["txn_id"] for r in rows)
    return Transaction(
        txn_id=head["txn_id"],
        kind=TransactionKind(head["kind"]),
        reference=head["reference"],
        entries=tuple(Entry.from_row(r) for r in rows),
        created_at_ms=int(head["created_at_ms"]),
        description=head["description"],
    )


async def get_transaction(db: Executor, txn_id: str) -> Transaction | None:
    rows = await db.fetch(f"{TRANSACTION_ROWS} WHERE t.txn_id = $1 ORDER BY e.entry_no", txn_id)
    return transaction_from_rows(rows)


async def get_transaction_by_reference(
    db: Executor, kind: str, reference: str
) -> Transaction | None:
    rows = await db.fetch(
        f"{TRANSACTION_ROWS} WHERE t.kind = $1 AND t.reference = $2 ORDER BY e.entry_no",
        str(kind),
        reference,
    )
    return transaction_from_rows(rows)


async def get_balance(db: Executor, merchant_id: str, currency: str) -> Balance:
    row = await db.fetchrow(
        "SELECT merchant_id, currency, available_minor, reserved_minor FROM wallets"
        " WHERE merchant_id = $1 AND currency = $2",
        merchant_id,
        currency,
    )
    return Balance(merchant_id, currency) if row is None else Balance.from_row(row)
