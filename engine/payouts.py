"""Seller payouts, the pure core: schedules, what a seller may be paid, and the wallet policy.

The merchant actor (actors/merchant.py) decides with these functions and does the I/O.

**Payout delay.** Captured money is *pending* for `delay_days` after its capture, as Stripe's
and Adyen's payout delays make it: a payout may take at most the seller's available balance
less its net share of the captures younger than the delay (`payoutable_minor`). Refunds and
earlier payouts have already left the available balance, so they are counted once. The rule
is conservative: a refund of an old order taken from the available balance may leave less
payoutable than a per-capture ledger of pending money would; it never leaves more.

**Schedules.** A merchant is paid `manual`ly (only when it asks), `daily` or `weekly` (UTC
days; weeks start on Monday). A scheduled payout pays everything payoutable in each currency
of the wallet, when that is at least the schedule's minimum for the currency (one minor unit
when none is set). Its creation key names the merchant, the currency and the period
(`period_key`), so however often the scheduler looks in one period, one payout is made.

**Taking money from a wallet: the platform covers, the seller owes.** Other flows (refunds,
a lost chargeback) take money from a seller's wallet with `take_from_wallet_entries`: the
available balance as far as it goes, the rest debited to `merchant_receivable:<id>` (an
asset: the seller owes it), so a wallet never goes below zero and the other side is paid in
full. The merchant actor's `TakeFromWallet` ask posts it in its own unit of work, so it is
decided one after the other with the seller's payouts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from engine.ledger import Entry, merchant_payable, merchant_receivable
from engine.money import Money, currency_exponent
from engine.payout_gateway import PayoutEventKind, ProviderPayoutStatus
from engine.states import PayoutStatus

#: A UTC day in milliseconds (schedules and payout delays count whole days).
DAY_MS = 86_400_000
#: 1970-01-01 was a Thursday: day number + this, mod 7, is 0 on Mondays.
_MONDAY_OFFSET_DAYS = 3

#: Payouts whose money is reserved and whose fate is not yet known.
PAYOUT_IN_FLIGHT = frozenset({PayoutStatus.FUNDS_RESERVED, PayoutStatus.SUBMITTED})
#: Where a payout rests once the provider has spoken (PAID may still become RETURNED later).
PAYOUT_SETTLED = frozenset({PayoutStatus.PAID, PayoutStatus.FAILED, PayoutStatus.RETURNED})


class ScheduleInterval(enum.StrEnum):
    MANUAL = "manual"
    DAILY = "daily"
    WEEKLY = "weekly"


def _check_minimums(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    assert isinstance(value, tuple), value
    for currency, minor in value:
        currency_exponent(currency)
        if isinstance(minor, bool) or not isinstance(minor, int) or minor <= 0:
            raise ValueError(f"minimum for {currency} must be a positive integer, got {minor!r}")


@attrs.frozen
class PayoutSchedule:
    """How and when one merchant is paid. `minimums`: (currency, minor units), sorted."""

    merchant_id: str
    interval: ScheduleInterval = ScheduleInterval.MANUAL
    delay_days: int = 0
    minimums: tuple[tuple[str, int], ...] = attrs.field(default=(), validator=_check_minimums)
    updated_at_ms: int = 0

    def minimum_minor(self, currency: str) -> int:
        return dict(self.minimums).get(currency, 1)

    @classmethod
    def of(
        cls,
        merchant_id: str,
        interval: ScheduleInterval,
        delay_days: int,
        minimums: Mapping[str, int],
        updated_at_ms: int,
    ) -> PayoutSchedule:
        return cls(
            merchant_id, interval, delay_days, tuple(sorted(minimums.items())), updated_at_ms
        )


def period_key(interval: ScheduleInterval, now_ms: int) -> str | None:
    """The schedule period `now_ms` falls in ("d20454", "w2922"); None for manual."""
    day = now_ms // DAY_MS
    if interval is ScheduleInterval.DAILY:
        return f"d{day}"
    if interval is ScheduleInterval.WEEKLY:
        return f"w{(day + _MONDAY_OFFSET_DAYS) // 7}"
    return None


def scheduled_creation_key(merchant_id: str, currency: str, period: str) -> str:
    return f"schedule:{merchant_id}:{currency}:{period}"


def pending_since_ms(now_ms: int, delay_days: int) -> int:
    """Captures at or after this instant are still pending (not yet payoutable)."""
    assert delay_days >= 0
    return now_ms - delay_days * DAY_MS


def payoutable_minor(available_minor: int, pending_minor: int) -> int:
    """What a payout may take: the available balance less the net of pending captures."""
    assert available_minor >= 0 and pending_minor >= 0
    return max(0, available_minor - pending_minor)


def take_from_wallet_entries(
    merchant_id: str, amount: Money, available_minor: int, counter_account: str
) -> tuple[Entry, ...]:
    """The wallet policy as entries: Dr merchant_payable (as far as the available balance
    goes) / Dr merchant_receivable (the rest: the seller owes it) / Cr `counter_account`."""
    assert amount.minor > 0 and available_minor >= 0
    from_wallet = min(amount.minor, available_minor)
    owed = amount.minor - from_wallet
    entries = []
    if from_wallet:
        entries.append(
            Entry.debit(merchant_payable(merchant_id), Money(from_wallet, amount.currency))
        )
    if owed:
        entries.append(Entry.debit(merchant_receivable(merchant_id), Money(owed, amount.currency)))
    entries.append(Entry.credit(counter_account, amount))
    return tuple(entries)


# --- the provider's word: which steps a payout walks to agree with it --------------------------
#: The path a payout walks when the provider's word is `status` (FAILED branches off).
_CHAIN = (
    PayoutStatus.REQUESTED,
    PayoutStatus.FUNDS_RESERVED,
    PayoutStatus.SUBMITTED,
    PayoutStatus.PAID,
    PayoutStatus.RETURNED,
)
PROVIDER_WORD = {
    ProviderPayoutStatus.PENDING: PayoutStatus.SUBMITTED,
    ProviderPayoutStatus.PAID: PayoutStatus.PAID,
    ProviderPayoutStatus.FAILED: PayoutStatus.FAILED,
    ProviderPayoutStatus.RETURNED: PayoutStatus.RETURNED,
}
NOTICE_WORD = {
    PayoutEventKind.PAID: ProviderPayoutStatus.PAID,
    PayoutEventKind.FAILED: ProviderPayoutStatus.FAILED,
    PayoutEventKind.RETURNED: ProviderPayoutStatus.RETURNED,
}


def steps_to(current: PayoutStatus, said: PayoutStatus) -> tuple[PayoutStatus, ...] | None:
    """The statuses a payout at `current` walks to agree with the provider's `said`; () when
    it already does (or is further on); None when the word contradicts it (paid after we
    voided, failed after it was paid): a person must look."""
    if said is PayoutStatus.FAILED:
        if current in (PayoutStatus.PAID, PayoutStatus.RETURNED):
            return None
        return () if current is PayoutStatus.FAILED else (PayoutStatus.FAILED,)
    if current is PayoutStatus.FAILED:  # "pending" is only stale; "paid" contradicts our void
        return () if said is PayoutStatus.SUBMITTED else None
    here, there = _CHAIN.index(current), _CHAIN.index(said)
    return _CHAIN[here + 1 : there + 1] if there > here else ()
