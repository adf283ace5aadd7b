"""The oracle's wallet-policy invariants (issue 11, money out): who spends a seller's wallet and
what happens to what a seller owes, recomputed outside the engine's code path.

- `wallet_spent_by_merchant_actor`: a refund, its reversal and a lost dispute's recovery record
  the seller's share as a debt (`merchant_receivable:<id>`) and never touch its wallet
  (`merchant_payable:<id>`): only the merchant actor's units (payouts, debt settlements) move
  wallet money out, one at a time. Checked at every commit.
- `debt_collected_before_payout`: a commit that reserves a payout leaves the seller owing
  nothing in that currency. The merchant actor settles the debt in the payout's own unit
  first, and if the wallet could not cover it, nothing is left to pay out. Checked at every
  commit.
- `debts_accounted`: per seller and currency, what it owes (its receivable) plus what its
  wallet paid toward its debts (the wallet entries of refunds, reversals, recoveries and debt
  settlements) equals its share, recomputed from the records with the oracle's own commission
  arithmetic, of every refund not FAILED and every LOST dispute: a debt is never lost, doubled,
  or collected twice. Checked at every commit that touches a receivable, and at the end.

The wallet itself never goes below zero (`no_negative_balance`, simulator/oracle.py), and
money is conserved with receivables counted (`money_conserved`, `money_conserved_with_payouts`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from engine.ledger import (
    MERCHANT_PAYABLE,
    MERCHANT_RECEIVABLE,
    Transaction,
    TransactionKind,
    merchant_payable,
    merchant_receivable,
)
from engine.records import Dispute, PaymentOrder, Refund
from engine.states import DisputeStatus, RefundStatus
from engine.store.memory_tables import Tables
from simulator.oracle_flows import expected_commission

WALLET_INVARIANTS = (
    "wallet_spent_by_merchant_actor",
    "debt_collected_before_payout",
    "debts_accounted",
)

Found = list[tuple[str, str, list[str]]]
Key = tuple[str, str]  # (merchant id, currency)

#: The flows whose units record a seller's debt instead of spending its wallet.
_DEBT_KINDS = frozenset(
    {
        TransactionKind.REFUND,
        TransactionKind.REFUND_REVERSED,
        TransactionKind.CHARGEBACK_RECOVERY,
    }
)
#: The transactions whose wallet entries pay (or give back) a seller's debt.
_TOWARD_DEBT = _DEBT_KINDS | {
    TransactionKind.RECEIVABLE_COLLECTED,
    TransactionKind.RECEIVABLE_RELEASED,
}


def _merchant_of(account: str, base: str) -> str | None:
    head, sep, merchant_id = account.partition(":")
    return merchant_id if sep and head == base else None


def check_wallet_at_commit(
    txns: Iterable[Transaction], receivable_of: Mapping[Key, int]
) -> tuple[Found, set[Key]]:
    """The commit's own checks, and the (merchant, currency) whose debts it touched.

    `receivable_of`: the committed receivable sums after the commit, by (merchant, currency).
    """
    spent: list[str] = []
    unpaid: list[str] = []
    touched: set[Key] = set()
    for txn in txns:
        for entry in txn.entries:
            merchant = _merchant_of(entry.account, MERCHANT_RECEIVABLE)
            if merchant is not None:
                touched.add((merchant, entry.currency))
            if txn.kind in _DEBT_KINDS and _merchant_of(entry.account, MERCHANT_PAYABLE):
                spent.append(f"{txn.kind.value} {txn.reference} posts to {entry.account}")
            if txn.kind is TransactionKind.PAYOUT_RESERVE:
                merchant = _merchant_of(entry.account, MERCHANT_PAYABLE)
                owed = 0 if merchant is None else receivable_of.get((merchant, entry.currency), 0)
                if owed > 0:
                    unpaid.append(
                        f"payout {txn.reference} reserved while {merchant} owes {owed} "
                        f"{entry.currency} minor units"
                    )
    found: Found = []
    if spent:
        found.append(
            (
                "wallet_spent_by_merchant_actor",
                "a flow other than the merchant actor spent a wallet",
                spent,
            )
        )
    if unpaid:
        found.append(
            ("debt_collected_before_payout", "a payout was reserved before the debt", unpaid)
        )
    return found, touched


def seller_debts(
    refunds: Iterable[Refund],
    disputes: Iterable[Dispute],
    orders: Mapping[str, PaymentOrder],
    commission_bps: int,
) -> Counter[Key]:
    """Each seller's share of its refunds not FAILED and its LOST disputes (own arithmetic)."""
    owed: Counter[Key] = Counter()
    gone_back: list[tuple[str, str, int]] = [
        (r.order_id, r.currency, r.amount_minor)
        for r in refunds
        if r.status is not RefundStatus.FAILED
    ]
    gone_back += [
        (d.order_id, d.currency, d.amount_minor) for d in disputes if d.status is DisputeStatus.LOST
    ]
    for order_id, currency, amount_minor in gone_back:
        order = orders.get(order_id)
        if order is None:
            continue  # the refund and dispute invariants name it
        share = amount_minor - expected_commission(amount_minor, commission_bps)
        owed[(order.seller_id, currency)] += share
    return owed


def paid_toward_debts(txns: Iterable[Transaction]) -> Counter[Key]:
    """What each seller's wallet paid toward its debts (less what was given back to it)."""
    paid: Counter[Key] = Counter()
    for txn in txns:
        if txn.kind not in _TOWARD_DEBT:
            continue
        for entry in txn.entries:
            merchant = _merchant_of(entry.account, MERCHANT_PAYABLE)
            if merchant is not None:
                paid[(merchant, entry.currency)] += entry.amount_minor  # a debit pays
    return paid


def check_debts_accounted(
    keys: Iterable[Key],
    owed: Mapping[Key, int],
    receivable_of: Mapping[Key, int],
    paid: Mapping[Key, int],
) -> Found:
    bad = [
        f"{merchant} {currency}: owes {receivable_of.get((merchant, currency), 0)} + paid "
        f"{paid.get((merchant, currency), 0)}, its refunds and lost disputes "
        f"{owed.get((merchant, currency), 0)} minor units"
        for merchant, currency in sorted(keys)
        if receivable_of.get((merchant, currency), 0) + paid.get((merchant, currency), 0)
        != owed.get((merchant, currency), 0)
    ]
    if not bad:
        return []
    return [("debts_accounted", "a seller's debt was lost, doubled or collected twice", bad)]


def receivables(trial: Mapping[tuple[str, str], int]) -> dict[Key, int]:
    """(merchant, currency) -> its receivable sum, from a trial balance."""
    found: dict[Key, int] = {}
    for (account, currency), total in trial.items():
        merchant = _merchant_of(account, MERCHANT_RECEIVABLE)
        if merchant is not None:
            found[(merchant, currency)] = total
    return found


def check_wallet_final(
    refunds: Mapping[str, Refund],
    disputes: Mapping[str, Dispute],
    orders: Mapping[str, PaymentOrder],
    txns: Iterable[Transaction],
    trial: Mapping[tuple[str, str], int],
    commission_bps: int,
) -> Found:
    """`debts_accounted` for every seller, after the run."""
    owed = seller_debts(refunds.values(), disputes.values(), orders, commission_bps)
    paid = paid_toward_debts(txns)
    receivable_of = receivables(trial)
    keys = set(owed) | set(paid) | set(receivable_of)
    return check_debts_accounted(keys, owed, receivable_of, paid)


def check_commit(tables: Tables, txns: Iterable[Transaction], commission_bps: int) -> Found:
    """Every wallet-policy check of one memory-store commit (simulator/world_commit.py), read
    from the committed tables just after it."""
    txns = list(txns)
    if not txns:
        return []
    keys = {
        (merchant, entry.currency)
        for txn in txns
        for entry in txn.entries
        if (merchant := _merchant_of(entry.account, MERCHANT_PAYABLE)) is not None
        or (merchant := _merchant_of(entry.account, MERCHANT_RECEIVABLE)) is not None
    }
    receivable_of = {(m, c): tables.sums.get((merchant_receivable(m), c), 0) for m, c in keys}
    found, touched = check_wallet_at_commit(txns, receivable_of)
    if not touched:
        return found
    sellers = {m for m, _ in touched}
    refunds = [
        r
        for r in tables.refunds.rows.values()
        if (o := tables.orders.get(r.order_id)) is not None and o.seller_id in sellers
    ]
    disputes = [
        d
        for d in tables.disputes.rows.values()
        if (o := tables.orders.get(d.order_id)) is not None and o.seller_id in sellers
    ]
    owed = seller_debts(refunds, disputes, tables.orders, commission_bps)
    paid = paid_toward_debts(
        tables.txns[txn_id]
        for merchant in sorted(sellers)
        for txn_id in {
            t for t, _, _ in tables.entries_by_account.get(merchant_payable(merchant), [])
        }
    )
    return found + check_debts_accounted(touched, owed, receivable_of, paid)
