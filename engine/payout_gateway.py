"""The `PayoutGateway` port: how payengine sends a seller's money out through a payout provider.

Like the PSP's `Gateway`: outcomes the provider returns are values; a call whose outcome is
unknown (timeout, connection lost, 5xx) raises `GatewayUnavailable`, and the caller retries
with the same idempotency key or asks `query_payout`. A submitted payout is not yet paid: the
provider tells the final outcome later (`PayoutNotification`), and a paid payout may still come
back days later as returned (the seller's bank refused it).
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs

from engine.money import Money


class ProviderPayoutStatus(enum.StrEnum):
    """What the payout provider's books say of one payout."""

    PENDING = "pending"  # accepted, on its way to the seller's bank
    PAID = "paid"
    FAILED = "failed"  # never left (refused, bad destination); the money stays with us
    RETURNED = "returned"  # paid, then sent back by the seller's bank
    NOT_FOUND = "not_found"  # the provider never received a payout with this key


TERMINAL_PROVIDER_STATUSES = frozenset({ProviderPayoutStatus.FAILED, ProviderPayoutStatus.RETURNED})


@attrs.frozen
class PayoutResult:
    status: ProviderPayoutStatus
    payout_id: str | None = None
    reason: str | None = None


class PayoutEventKind(enum.StrEnum):
    PAID = "payout.paid"
    FAILED = "payout.failed"
    RETURNED = "payout.returned"


@attrs.frozen
class PayoutNotification:
    """A payout provider's event. `reference` is our idempotency key (the payout id)."""

    event_id: str
    kind: PayoutEventKind
    reference: str
    payout_id: str
    occurred_at_ms: int
    reason: str | None = None


class PayoutGateway(Protocol):
    """A payout provider. Every call may raise GatewayUnavailable; none may be assumed to fail."""

    async def submit_payout(
        self, idempotency_key: str, destination: str, amount: Money
    ) -> PayoutResult:
        """Send `amount` to `destination`. Idempotent on `idempotency_key`."""
        ...

    async def query_payout(self, idempotency_key: str) -> PayoutResult:
        """What the provider knows of the payout with this key (NOT_FOUND if it never arrived)."""
        ...
