"""The debt rule (engine/receivables.py) and the oracle's wallet-policy checks
(simulator/oracle_wallet.py): properties over any balances, and each check shown to fire."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.ledger import (
    PLATFORM_REVENUE,
    Entry,
    Transaction,
    TransactionKind,
    merchant_payable,
    merchant_receivable,
    payout_reserve_entries,
    refund_entries,
)
from engine.money import Money
from engine.receivables import settle_debt_entries
from engine.records import PaymentOrder, Refund
from engine.states import OrderStatus, RefundStatus
from simulator.oracle_wallet import (
    check_debts_accounted,
    check_wallet_at_commit,
    paid_toward_debts,
    seller_debts,
)

MINOR = st.integers(min_value=-(10**9), max_value=10**9)


def _apply(receivable: int, available: int) -> tuple[int, int]:
    decided = settle_debt_entries("m1", "USD", receivable, available)
    if decided is None:
        return receivable, available
    _, entries = decided
    for entry in entries:
        if entry.account == merchant_receivable("m1"):
            receivable += entry.amount_minor
        else:
            assert entry.account == merchant_payable("m1")
            available -= entry.amount_minor  # a liability: a debit lowers it
    return receivable, available


@given(MINOR, st.integers(min_value=0, max_value=10**9))
def test_settling_never_overdraws_and_settling_again_changes_nothing(
    receivable: int, available: int
) -> None:
    decided = settle_debt_entries("m1", "USD", receivable, available)
    if decided is not None:
        kind, entries = decided
        Transaction("txn_1", kind, "txn_1", entries, 0)  # balanced, or this raises
    after = _apply(receivable, available)
    assert after[1] >= 0  # the wallet never goes below zero
    assert after[0] + (available - after[1]) == receivable  # what it paid is what it owed less
    assert 0 <= after[0] <= max(receivable, 0)  # the debt only shrinks, never below zero
    assert after[0] == 0 or after[1] == 0  # either the debt or the wallet is used up
    assert _apply(*after) == after  # idempotent: a retry posts nothing


def _txn(kind: TransactionKind, reference: str, entries: tuple[Entry, ...]) -> Transaction:
    return Transaction(f"txn_{reference}", kind, reference, entries, 0)


def test_a_refund_that_spends_the_wallet_itself_is_named() -> None:
    spent = refund_entries("m1", Money(1_000, "USD"), 1_000, available_minor=None)
    found, touched = check_wallet_at_commit([_txn(TransactionKind.REFUND, "re_1", spent)], {})
    assert [f[0] for f in found] == ["wallet_spent_by_merchant_actor"]
    owed = refund_entries("m1", Money(1_000, "USD"), 1_000, available_minor=0)
    found, touched = check_wallet_at_commit([_txn(TransactionKind.REFUND, "re_1", owed)], {})
    assert found == [] and touched == {("m1", "USD")}


def test_a_payout_reserved_while_owing_is_named() -> None:
    reserve = _txn(
        TransactionKind.PAYOUT_RESERVE, "po_1", payout_reserve_entries("m1", Money(5, "USD"))
    )
    assert check_wallet_at_commit([reserve], {("m1", "USD"): 0})[0] == []
    found, _ = check_wallet_at_commit([reserve], {("m1", "USD"): 1})
    assert [f[0] for f in found] == ["debt_collected_before_payout"]


def test_debts_accounted_sees_a_collection_that_did_not_pay_the_debt() -> None:
    order = PaymentOrder(
        order_id="ord_1",
        payment_id="pay_1",
        seller_id="m1",
        currency="USD",
        amount_minor=1_000,
        status=OrderStatus.SUCCESS,
        created_at_ms=0,
        updated_at_ms=0,
    )
    refund = Refund(
        refund_id="re_1",
        order_id=order.order_id,
        currency="USD",
        amount_minor=1_000,
        status=RefundStatus.SUCCEEDED,
        created_at_ms=0,
        updated_at_ms=0,
        creation_key="k",
    )
    owed = seller_debts([refund], [], {order.order_id: order}, 1_000)
    assert owed == {("m1", "USD"): 900}
    good = settle_debt_entries("m1", "USD", 900, 900)
    assert good is not None
    paid = paid_toward_debts([_txn(good[0], "d1", good[1])])
    assert check_debts_accounted(owed, owed, {("m1", "USD"): 0}, paid) == []
    taken = Money(900, "USD")  # the wallet paid, the debt stayed: the seller would pay twice
    bad = (Entry.debit(merchant_payable("m1"), taken), Entry.credit(PLATFORM_REVENUE, taken))
    paid = paid_toward_debts([_txn(TransactionKind.RECEIVABLE_COLLECTED, "d1", bad)])
    found = check_debts_accounted(owed, owed, {("m1", "USD"): 900}, paid)
    assert [f[0] for f in found] == ["debts_accounted"]
