"""Named errors: caller misuse and expected store outcomes.

A bug (a broken internal invariant) is an `assert` and crashes loudly. Bad input from outside is
one of the `InvalidInput` subclasses, whose message names the rule that was broken. Outcomes a
caller must handle (a duplicate key, a lost optimistic race) are `StoreError` subclasses, raised
identically by the memory and the PostgreSQL store.
"""

from __future__ import annotations


class PayengineError(Exception):
    """Base of every error payengine raises on purpose."""


class InvalidInput(PayengineError, ValueError):
    """Input from outside broke a rule; the message names the rule."""


class InvalidAmount(InvalidInput):
    """An amount that is not exact money: float, exponent, too many decimals, mixed currency."""


class UnknownCurrency(InvalidInput):
    """A currency code that is not in ISO 4217 (or has no minor unit)."""


class IllegalTransition(PayengineError):
    """A state change that the aggregate's transition table does not allow."""

    def __init__(self, aggregate: str, source: str, target: str) -> None:
        super().__init__(f"illegal {aggregate} transition {source} -> {target}")
        self.aggregate = aggregate
        self.source = source
        self.target = target


class UnbalancedTransaction(PayengineError):
    """A ledger transaction whose entries do not sum to zero in every currency."""


class StoreError(PayengineError):
    """An expected outcome of a unit of work; the unit of work is rolled back."""


class DuplicateKey(StoreError):
    """A unique key already exists; `key` names it (e.g. `payments.checkout_id`)."""

    def __init__(self, key: str, value: object = None) -> None:
        super().__init__(f"duplicate {key}" + ("" if value is None else f": {value!r}"))
        self.key = key
        self.value = value


class VersionConflict(StoreError):
    """Optimistic concurrency lost: the row changed since it was read."""


class NotFound(StoreError):
    """The row to update does not exist."""


class NegativeBalance(StoreError):
    """A posting would take an available (or reserved) wallet balance below zero."""


class AppendOnlyViolation(StoreError):
    """An attempt to change or delete a ledger row; the ledger is append-only."""


class StoreUnavailable(PayengineError):
    """The database did not answer: refused, dropped or timed out the connection.

    Weather, not a bug: nothing of the unit of work was committed (or, for a commit that lost
    its connection, the outcome is unknown, as after a crash), and the same call may succeed
    once the database is back. Callers retry with backoff (actors) or answer 503 (the API).
    """
