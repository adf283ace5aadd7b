"""How a statement the database refused becomes the port's error.

The database's guards (migrations/0001_initial.sql) name what they protect: unique and CHECK
constraints by constraint name, the ledger triggers by their own SQLSTATEs (PE001, PE002). This
table turns those names into the port's errors, with the same key names the memory store uses.
An error that is not a guard (a lost connection, a syntax error) maps to None and propagates
as it is: that is an outage or a bug, not an outcome a caller handles.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import (
    AppendOnlyViolation,
    DuplicateKey,
    NegativeBalance,
    PayengineError,
    UnbalancedTransaction,
    VersionConflict,
)

#: Unique constraints (migrations/0001_initial.sql) -> the port's key names.
UNIQUE_KEYS: Mapping[str, str] = {
    "payments_pk": "payments.payment_id",
    "payments_checkout_id_uq": "payments.checkout_id",
    "payment_orders_pk": "payment_orders.order_id",
    "ledger_transactions_pk": "ledger_transactions.txn_id",
    "ledger_transactions_kind_reference_uq": "ledger_transactions.kind_reference",
    "outbox_pk": "outbox.message_id",
    "psp_events_pk": "psp_events.event_id",
    "idempotency_pk": "idempotency.scope_key",
    "api_keys_pk": "api_keys.key_id",
    "api_keys_key_hash_uq": "api_keys.key_hash",
    "refunds_pk": "refunds.refund_id",
    "refunds_creation_key_uq": "refunds.creation_key",
    "payouts_pk": "payouts.payout_id",
    "payouts_creation_key_uq": "payouts.creation_key",
    "payout_events_pk": "payout_events.event_id",
}
_WALLET_CHECKS = frozenset({"wallets_available_non_negative", "wallets_reserved_non_negative"})


def map_error(exc: BaseException) -> PayengineError | None:
    """The port's error for a statement the database refused, or None when it is not one."""
    state = getattr(exc, "sqlstate", None)  # set on every asyncpg.PostgresError
    if state is None:
        return None
    constraint = str(getattr(exc, "constraint_name", None))
    message = str(getattr(exc, "message", None) or exc)
    if state == "23505" and constraint in UNIQUE_KEYS:
        return DuplicateKey(UNIQUE_KEYS[constraint])
    if state == "23514" and constraint in _WALLET_CHECKS:
        return NegativeBalance(message)
    if state == "PE002":
        return AppendOnlyViolation(message)
    if state == "PE001":
        return UnbalancedTransaction(message)
    if state in ("40001", "40P01"):  # serialization failure, deadlock: retry the unit
        return VersionConflict(f"the database aborted the unit to resolve a conflict: {message}")
    return None
