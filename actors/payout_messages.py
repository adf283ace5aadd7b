"""Messages to the merchant actor (actors/merchant.py): one per merchant, keyed by its id."""

from __future__ import annotations

from typing import Any

import attrs

from engine.ledger import TransactionKind
from engine.money import Money
from engine.payout_gateway import PayoutNotification
from engine.records import Payout

MERCHANT = "merchant"


@attrs.frozen
class CreatePayout:
    """Pay `amount_minor` (None: all that is payoutable) of the wallet in `currency`, once per
    `creation_key`; replies with the `Payout` or a `Rejection`."""

    creation_key: str
    currency: str
    amount_minor: int | None = None
    trigger: str = "manual"


@attrs.frozen
class RunSchedule:
    """The scheduler looked: make the payouts of the merchant's schedule due in this period."""


@attrs.frozen
class AttemptPayout:
    """Submit the payout to the provider with the payout id as idempotency key."""

    payout_id: str


@attrs.frozen
class QueryPayout:
    """Ask the provider what it knows of the payout (after an unknown outcome, or pending)."""

    payout_id: str


@attrs.frozen
class ApplyPayoutNotice:
    """Apply a payout provider's notice, recording it (by event id) in the same unit of work."""

    notice: PayoutNotification


@attrs.frozen
class TakeFromWallet:
    """Take `amount` from the merchant's wallet for another flow, under the wallet policy
    ("the platform covers, the seller owes": engine/payouts.py `take_from_wallet_entries`),
    posted as the ledger transaction `(kind, reference)` crediting `counter_account`.
    Idempotent on `(kind, reference)`; replies with the posted `Transaction`."""

    kind: TransactionKind
    reference: str
    amount: Money
    counter_account: str
    description: str = ""


@attrs.frozen
class SettleDebts:
    """Net the merchant's debt in `currency` (`merchant_receivable:<id>`) against its available
    balance now (actors/debts.py); replies with what was posted ('settled' when nothing)."""

    currency: str


def payout_payload(payout: Payout) -> dict[str, Any]:
    """A payout as its outbox messages (and merchant notifications) carry it."""
    return {
        "payout_id": payout.payout_id,
        "merchant_id": payout.merchant_id,
        "seller_id": payout.merchant_id,
        "amount_minor": payout.amount_minor,
        "currency": payout.currency,
        "status": payout.status.value,
        "trigger": payout.trigger,
        "provider_ref": payout.provider_ref,
        "failure_reason": payout.failure_reason,
    }
