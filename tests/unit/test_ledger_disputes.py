"""The chargeback posting rules (engine/ledger.py): balanced; a lost dispute's recovery follows
the refund wallet policy (the seller's net from its available balance as far as it goes, the
rest owed, the commission given back); open, won and lost leave `chargebacks` right."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from engine.ledger import (
    CHARGEBACKS,
    PLATFORM_REVENUE,
    PSP_CLEARING,
    Entry,
    chargeback_entries,
    chargeback_recovery_entries,
    chargeback_reinstated_entries,
    imbalance,
    merchant_payable,
    merchant_receivable,
)
from engine.money import Money, split_bps

amounts = st.integers(min_value=1, max_value=10**13)
rates = st.integers(min_value=0, max_value=10_000)
currencies = st.sampled_from(["EUR", "JPY", "BHD", "USD"])


def _sums(*groups: tuple[Entry, ...]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for entries in groups:
        for entry in entries:
            totals[entry.account] += entry.amount_minor
    return totals


@given(amounts, rates, currencies, st.integers(min_value=0, max_value=10**13))
def test_recovery_takes_what_the_wallet_has_and_the_seller_owes_the_rest(
    minor: int, rate: int, currency: str, available: int
) -> None:
    amount = Money(minor, currency)
    entries = chargeback_recovery_entries("s1", amount, rate, available_minor=available)
    assert imbalance(entries) == {}
    commission, net = split_bps(amount, rate)
    sums = _sums(entries)
    from_wallet = sums[merchant_payable("s1")]
    owed = sums[merchant_receivable("s1")]
    assert from_wallet == min(net.minor, available) and owed == net.minor - from_wallet
    assert sums[PLATFORM_REVENUE] == commission.minor
    assert sums[CHARGEBACKS] == -minor
    assert all(e.amount_minor > 0 for e in entries if e.account != CHARGEBACKS)


@given(amounts, rates, currencies)
def test_open_then_lost_or_won_leaves_nothing_in_chargebacks(
    minor: int, rate: int, currency: str
) -> None:
    amount = Money(minor, currency)
    opened = chargeback_entries(amount)
    lost = _sums(opened, chargeback_recovery_entries("s1", amount, rate))
    won = _sums(opened, chargeback_reinstated_entries(amount))
    assert _sums(opened)[CHARGEBACKS] == minor and _sums(opened)[PSP_CLEARING] == -minor
    assert lost[CHARGEBACKS] == 0 and lost[PSP_CLEARING] == -minor
    assert won[CHARGEBACKS] == 0 and won[PSP_CLEARING] == 0
    assert {a: v for a, v in won.items() if v} == {}
