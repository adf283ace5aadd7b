"""Posting rules: every transaction balances per currency and loses no minor unit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidInput, UnbalancedTransaction
from engine.ledger import (
    PLATFORM_REVENUE,
    PSP_CLEARING,
    Entry,
    Transaction,
    TransactionKind,
    account_type,
    capture_entries,
    chargeback_entries,
    chargeback_recovery_entries,
    imbalance,
    merchant_payable,
    merchant_receivable,
    payout_post_entries,
    payout_reserve_entries,
    payout_return_entries,
    payout_void_entries,
    refund_entries,
    refund_reversed_entries,
    refund_settled_entries,
    reversal_of,
    settlement_entries,
)
from engine.money import Money

CURRENCIES = ["USD", "JPY", "BHD", "EUR", "KWD", "CLP"]
amounts = st.integers(min_value=1, max_value=10**13)
rates = st.integers(min_value=0, max_value=10_000)
currencies = st.sampled_from(CURRENCIES)


def _txn(entries: tuple[Entry, ...]) -> Transaction:
    return Transaction("txn_1", TransactionKind.ADJUSTMENT, "ref", entries, 1)


def test_capture_example_from_the_design() -> None:
    entries, commission, net = capture_entries("s1", Money(10_000, "USD"), 1000)
    assert entries == (
        Entry(PSP_CLEARING, 10_000, "USD"),
        Entry(merchant_payable("s1"), -9_000, "USD"),
        Entry(PLATFORM_REVENUE, -1_000, "USD"),
    )
    assert (commission.minor, net.minor) == (1_000, 9_000)
    settle = settlement_entries(Money(10_000, "USD"), Money(290, "USD"))
    assert settle == (
        Entry("bank_cash", 9_710, "USD"),
        Entry("psp_fees", 290, "USD"),
        Entry(PSP_CLEARING, -10_000, "USD"),
    )


@given(amounts, rates, currencies)
def test_capture_balances_and_credits_exactly_the_amount(
    minor: int, rate: int, currency: str
) -> None:
    entries, commission, net = capture_entries("seller", Money(minor, currency), rate)
    txn = _txn(entries)
    assert imbalance(txn.entries) == {}
    assert commission.minor + net.minor == minor
    assert txn.wallet_deltas().get(("seller", currency), (0, 0))[0] == net.minor


@given(amounts, st.integers(min_value=0, max_value=10**13), currencies)
def test_settlement_balances(gross: int, fee: int, currency: str) -> None:
    if fee > gross:
        with pytest.raises(InvalidInput):
            settlement_entries(Money(gross, currency), Money(fee, currency))
        return
    assert (
        imbalance(_txn(settlement_entries(Money(gross, currency), Money(fee, currency))).entries)
        == {}
    )


@given(amounts, rates, currencies)
def test_refund_and_its_reversal_cancel_out(minor: int, rate: int, currency: str) -> None:
    amount = Money(minor, currency)
    forward = refund_entries("s", amount, rate)
    backward = refund_reversed_entries("s", amount, rate)
    assert imbalance(_txn(forward).entries) == {} and imbalance(_txn(backward).entries) == {}
    net: dict[str, int] = {}
    for e in forward + backward:
        net[e.account] = net.get(e.account, 0) + e.amount_minor
    assert set(net.values()) == {0}
    capture, _, _ = capture_entries("s", amount, rate)
    # A full refund undoes the seller's and the platform's share of the capture exactly.
    totals: dict[str, int] = {}
    for e in capture + forward + refund_settled_entries(amount):
        totals[e.account] = totals.get(e.account, 0) + e.amount_minor
    assert {a: v for a, v in totals.items() if v} == {}


@given(amounts, currencies)
def test_payout_and_chargeback_rules_balance(minor: int, currency: str) -> None:
    amount = Money(minor, currency)
    for entries in (
        payout_reserve_entries("m", amount),
        payout_post_entries("m", amount),
        payout_void_entries("m", amount),
        payout_return_entries("m", amount),
        chargeback_entries(amount),
        chargeback_recovery_entries("m", amount),
    ):
        assert imbalance(_txn(entries).entries) == {}
    reserve = _txn(payout_reserve_entries("m", amount)).wallet_deltas()
    assert reserve == {("m", currency): (-minor, minor)}
    void = _txn(payout_void_entries("m", amount)).wallet_deltas()
    assert void == {("m", currency): (minor, -minor)}


@given(st.lists(st.tuples(amounts, rates, currencies), min_size=1, max_size=30))
def test_any_sequence_of_captures_sums_to_zero_per_currency(
    captures: list[tuple[int, int, str]],
) -> None:
    entries = [e for m, r, c in captures for e in capture_entries("s", Money(m, c), r)[0]]
    assert imbalance(entries) == {}


def test_unbalanced_and_malformed_transactions_are_refused() -> None:
    with pytest.raises(UnbalancedTransaction, match=r"USD off by 1 minor units"):
        _txn((Entry(PSP_CLEARING, 100, "USD"), Entry(PLATFORM_REVENUE, -99, "USD")))
    with pytest.raises(UnbalancedTransaction, match="JPY off by 100"):
        # balanced in total, not per currency
        _txn((Entry(PSP_CLEARING, 100, "JPY"), Entry(PLATFORM_REVENUE, -100, "USD")))
    with pytest.raises(UnbalancedTransaction, match="at least two entries"):
        _txn((Entry(PSP_CLEARING, 0 + 1, "USD"),))
    with pytest.raises(InvalidInput, match="must not be zero"):
        Entry(PSP_CLEARING, 0, "USD")
    with pytest.raises(InvalidInput, match="not in the chart of accounts"):
        Entry("petty_cash", 1, "USD")
    with pytest.raises(InvalidInput, match="must be an integer"):
        Entry(PSP_CLEARING, 1.5, "USD")  # type: ignore[arg-type]


def test_chart_of_accounts() -> None:
    assert account_type("merchant_payable:abc").value == "liability"
    assert account_type("psp_clearing").value == "asset"
    with pytest.raises(InvalidInput):
        account_type("merchant_payable:")


def test_refund_shortfall_example_from_the_design() -> None:
    """docs/architecture.md, "Refunds": a 100.00 refund, the seller holding 30.00 of its 90.00."""
    entries = refund_entries("s1", Money(10_000, "USD"), 1000, available_minor=3_000)
    assert entries == (
        Entry(merchant_payable("s1"), 3_000, "USD"),
        Entry(merchant_receivable("s1"), 6_000, "USD"),
        Entry(PLATFORM_REVENUE, 1_000, "USD"),
        Entry("refunds_clearing", -10_000, "USD"),
    )
    assert account_type(merchant_receivable("s1")).value == "asset"
    assert _txn(entries).wallet_deltas() == {("s1", "USD"): (-3_000, 0)}


@given(amounts, rates, currencies, st.integers(min_value=0, max_value=10**13))
def test_refund_never_takes_a_wallet_below_zero(
    minor: int, rate: int, currency: str, available: int
) -> None:
    """The seller's share comes from its wallet as far as it goes; the rest is a receivable;
    the whole refund is owed to the buyer; the reversal undoes it exactly."""
    amount = Money(minor, currency)
    entries = refund_entries("s", amount, rate, available_minor=available)
    txn = _txn(entries)
    assert imbalance(txn.entries) == {}
    delta = txn.wallet_deltas().get(("s", currency), (0, 0))[0]
    assert available + delta >= 0
    by_account = {e.account: e.amount_minor for e in entries}
    assert by_account["refunds_clearing"] == -minor
    full = {e.account: e.amount_minor for e in refund_entries("s", amount, rate)}
    owed = by_account.get(merchant_payable("s"), 0) + by_account.get(merchant_receivable("s"), 0)
    assert owed == full.get(merchant_payable("s"), 0)
    undone: dict[str, int] = {}
    for e in entries + reversal_of(entries):
        undone[e.account] = undone.get(e.account, 0) + e.amount_minor
    assert set(undone.values()) == {0}
    assert reversal_of(entries) == refund_reversed_entries("s", amount, rate, available)
