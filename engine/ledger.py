"""The double-entry ledger: accounts, transactions, and the posting rules that make them.

Sign convention: an entry's `amount_minor` is positive for a debit and negative for a credit, so
a transaction is balanced exactly when its entries sum to zero in every currency. A transaction
is checked balanced when it is built (here), before it is written and after it is read back
(the stores), and by the database itself (a deferred constraint trigger).

Chart of accounts (names are stable; `<id>` is a merchant id):

  psp_clearing              asset      what the PSP owes us for captured orders
  bank_cash                 asset      money in our bank account
  merchant_payable:<id>     liability  the seller's available wallet balance
  merchant_reserved:<id>    liability  the seller's money reserved for a payout in flight
  merchant_receivable:<id>  asset      what a seller owes us: a refund's share its wallet lacked
  platform_revenue          revenue    our commission
  psp_fees                  expense    what the PSP kept when it settled
  refunds_clearing          liability  refunds we owe the buyer until the PSP has paid them
  chargebacks               expense    money the PSP clawed back for disputes

Wallet policy for refunds: a refund takes the seller's net share from its available balance.
When that balance is short, the platform covers the shortfall and the seller owes it: the
shortfall is debited to `merchant_receivable:<id>` (an asset), so a wallet never goes below
zero and the buyer is refunded in full all the same (docs/architecture.md has an example).
The engine posts the whole share as the debt (`available_minor=0`) and lets the merchant actor
take it from the wallet (engine/receivables.py), so one actor spends each wallet.

Commission rounding: commission is `amount * rate_bps / 10000` rounded half to even to a whole
minor unit; the seller is credited `amount - commission`. The two are computed from one
rounding, so they always add back to the captured amount: no minor unit is created or lost.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from engine.errors import InvalidInput, UnbalancedTransaction
from engine.money import Money, currency_exponent, split_bps

#: The most entries one transaction may have (a settlement batch is posted per line).
ENTRIES_PER_TRANSACTION_MAX = 64

PSP_CLEARING = "psp_clearing"
BANK_CASH = "bank_cash"
PLATFORM_REVENUE = "platform_revenue"
PSP_FEES = "psp_fees"
REFUNDS_CLEARING = "refunds_clearing"
CHARGEBACKS = "chargebacks"
MERCHANT_PAYABLE = "merchant_payable"
MERCHANT_RESERVED = "merchant_reserved"
MERCHANT_RECEIVABLE = "merchant_receivable"


class AccountType(enum.StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    EXPENSE = "expense"


_FIXED_ACCOUNTS: Mapping[str, AccountType] = {
    PSP_CLEARING: AccountType.ASSET,
    BANK_CASH: AccountType.ASSET,
    PLATFORM_REVENUE: AccountType.REVENUE,
    PSP_FEES: AccountType.EXPENSE,
    REFUNDS_CLEARING: AccountType.LIABILITY,
    CHARGEBACKS: AccountType.EXPENSE,
}
_MERCHANT_ACCOUNTS: Mapping[str, AccountType] = {
    MERCHANT_PAYABLE: AccountType.LIABILITY,
    MERCHANT_RESERVED: AccountType.LIABILITY,
    MERCHANT_RECEIVABLE: AccountType.ASSET,
}


def merchant_payable(merchant_id: str) -> str:
    return f"{MERCHANT_PAYABLE}:{merchant_id}"


def merchant_reserved(merchant_id: str) -> str:
    return f"{MERCHANT_RESERVED}:{merchant_id}"


def merchant_receivable(merchant_id: str) -> str:
    return f"{MERCHANT_RECEIVABLE}:{merchant_id}"


def account_type(account: str) -> AccountType:
    """The type of `account`; raises InvalidInput for a name outside the chart."""
    if account in _FIXED_ACCOUNTS:
        return _FIXED_ACCOUNTS[account]
    base, sep, merchant_id = account.partition(":")
    if sep and merchant_id and base in _MERCHANT_ACCOUNTS and len(account) <= 160:
        return _MERCHANT_ACCOUNTS[base]
    raise InvalidInput(f"account {account!r} is not in the chart of accounts")


def wallet_of(account: str) -> tuple[str, str] | None:
    """(merchant_id, 'available' | 'reserved') when `account` is a wallet account, else None."""
    base, sep, merchant_id = account.partition(":")
    if not sep:
        return None
    if base == MERCHANT_PAYABLE:
        return merchant_id, "available"
    if base == MERCHANT_RESERVED:
        return merchant_id, "reserved"
    return None


class TransactionKind(enum.StrEnum):
    CAPTURE = "capture"
    SETTLEMENT = "settlement"
    REFUND = "refund"
    REFUND_SETTLED = "refund_settled"
    REFUND_REVERSED = "refund_reversed"
    PAYOUT_RESERVE = "payout_reserve"
    PAYOUT_POST = "payout_post"
    PAYOUT_VOID = "payout_void"
    PAYOUT_RETURN = "payout_return"
    CHARGEBACK = "chargeback"
    CHARGEBACK_RECOVERY = "chargeback_recovery"
    CHARGEBACK_REINSTATED = "chargeback_reinstated"
    ADJUSTMENT = "adjustment"
    #: The merchant actor nets a seller's debt against its wallet (engine/receivables.py).
    RECEIVABLE_COLLECTED = "receivable_collected"
    RECEIVABLE_RELEASED = "receivable_released"


def _check_account(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    account_type(value)


def _check_entry_amount(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"entry amount_minor must be an integer, got {value!r}")
    if value == 0:
        raise InvalidInput("entry amount_minor must not be zero")


def _check_currency(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    currency_exponent(value)


@attrs.frozen
class Entry:
    """One leg of a transaction: a debit (positive) or credit (negative) of one account."""

    account: str = attrs.field(validator=_check_account)
    amount_minor: int = attrs.field(validator=_check_entry_amount)
    currency: str = attrs.field(validator=_check_currency)

    @classmethod
    def debit(cls, account: str, amount: Money) -> Entry:
        assert amount.minor > 0, f"debit of non-positive {amount}"
        return cls(account, amount.minor, amount.currency)

    @classmethod
    def credit(cls, account: str, amount: Money) -> Entry:
        assert amount.minor > 0, f"credit of non-positive {amount}"
        return cls(account, -amount.minor, amount.currency)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Entry:
        return cls(row["account"], int(row["amount_minor"]), row["currency"])


def imbalance(entries: Iterable[Entry]) -> dict[str, int]:
    """Sum of entries per currency, keeping only the currencies that do not sum to zero."""
    sums: dict[str, int] = defaultdict(int)
    for entry in entries:
        sums[entry.currency] += entry.amount_minor
    return {currency: total for currency, total in sums.items() if total != 0}


def _check_entries(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise UnbalancedTransaction("a transaction needs at least two entries")
    if len(value) < 2:
        raise UnbalancedTransaction("a transaction needs at least two entries")
    if len(value) > ENTRIES_PER_TRANSACTION_MAX:
        raise InvalidInput(
            f"a transaction has {len(value)} entries; the limit is {ENTRIES_PER_TRANSACTION_MAX}"
        )
    off = imbalance(value)
    if off:
        detail = ", ".join(f"{c} off by {n} minor units" for c, n in sorted(off.items()))
        raise UnbalancedTransaction(
            f"transaction does not balance: debits must equal credits per currency ({detail})"
        )


@attrs.frozen
class Transaction:
    """An append-only ledger transaction. `(kind, reference)` is its unique business key."""

    txn_id: str
    kind: TransactionKind
    reference: str
    entries: tuple[Entry, ...] = attrs.field(validator=_check_entries)
    created_at_ms: int
    description: str = ""

    def wallet_deltas(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(merchant_id, currency) -> (available delta, reserved delta) this transaction makes.

        Wallet accounts are liabilities, so a credit (negative entry) raises the balance.
        """
        deltas: dict[tuple[str, str], list[int]] = {}
        for entry in self.entries:
            wallet = wallet_of(entry.account)
            if wallet is None:
                continue
            merchant_id, part = wallet
            slot = deltas.setdefault((merchant_id, entry.currency), [0, 0])
            slot[0 if part == "available" else 1] -= entry.amount_minor
        return {key: (a, r) for key, (a, r) in deltas.items()}


# --- Posting rules: pure functions from a business fact to balanced entries. -----------------


def capture_entries(
    seller_id: str, amount: Money, commission_bps: int
) -> tuple[tuple[Entry, ...], Money, Money]:
    """A captured order: Dr psp_clearing / Cr merchant_payable (net) / Cr platform_revenue.

    Returns the entries, the commission and the seller's net.
    """
    commission, net = split_bps(amount, commission_bps)
    entries = [Entry.debit(PSP_CLEARING, amount)]
    if net.minor:
        entries.append(Entry.credit(merchant_payable(seller_id), net))
    if commission.minor:
        entries.append(Entry.credit(PLATFORM_REVENUE, commission))
    return tuple(entries), commission, net


def settlement_entries(gross: Money, fee: Money) -> tuple[Entry, ...]:
    """The PSP settles net of its fee: Dr bank_cash (net) / Dr psp_fees / Cr psp_clearing."""
    if fee.minor < 0 or fee > gross:
        raise InvalidInput(f"settlement fee {fee} must be within 0..{gross}")
    net = gross - fee
    entries = []
    if net.minor:
        entries.append(Entry.debit(BANK_CASH, net))
    if fee.minor:
        entries.append(Entry.debit(PSP_FEES, fee))
    entries.append(Entry.credit(PSP_CLEARING, gross))
    return tuple(entries)


def refund_entries(
    seller_id: str, amount: Money, commission_bps: int, available_minor: int | None = None
) -> tuple[Entry, ...]:
    """A refund is accepted: the seller gives back its net share, we give back our commission,
    and we owe the buyer until the PSP pays it: Dr merchant_payable / Dr platform_revenue /
    Cr refunds_clearing. Commission is split with the same rounding as the capture.

    `available_minor`: the seller's available balance, when known. The part of its share the
    balance lacks is debited to `merchant_receivable:<id>` instead (the platform covers it and
    the seller owes it), so the wallet never goes below zero.
    """
    commission, net = split_bps(amount, commission_bps)
    from_wallet = net.minor if available_minor is None else min(net.minor, available_minor)
    from_wallet = max(from_wallet, 0)
    shortfall = net.minor - from_wallet
    entries = []
    if from_wallet:
        entries.append(Entry.debit(merchant_payable(seller_id), Money(from_wallet, net.currency)))
    if shortfall:
        entries.append(Entry.debit(merchant_receivable(seller_id), Money(shortfall, net.currency)))
    if commission.minor:
        entries.append(Entry.debit(PLATFORM_REVENUE, commission))
    entries.append(Entry.credit(REFUNDS_CLEARING, amount))
    return tuple(entries)


def refund_settled_entries(amount: Money) -> tuple[Entry, ...]:
    """The PSP paid the refund out of what it owed us: Dr refunds_clearing / Cr psp_clearing."""
    return (Entry.debit(REFUNDS_CLEARING, amount), Entry.credit(PSP_CLEARING, amount))


def reversal_of(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    """Each entry with its sign flipped: undoes a posted transaction exactly."""
    return tuple(Entry(e.account, -e.amount_minor, e.currency) for e in entries)


def refund_reversed_entries(
    seller_id: str, amount: Money, commission_bps: int, available_minor: int | None = None
) -> tuple[Entry, ...]:
    """The PSP failed the refund: undo `refund_entries` exactly (the engine reverses the
    transaction it posted, `reversal_of`, so the split the seller's balance made is undone)."""
    return reversal_of(refund_entries(seller_id, amount, commission_bps, available_minor))


def payout_reserve_entries(merchant_id: str, amount: Money) -> tuple[Entry, ...]:
    """Funds leave the available balance for a payout in flight."""
    return (
        Entry.debit(merchant_payable(merchant_id), amount),
        Entry.credit(merchant_reserved(merchant_id), amount),
    )


def payout_post_entries(merchant_id: str, amount: Money) -> tuple[Entry, ...]:
    """The payout provider paid the seller from our bank account."""
    return (Entry.debit(merchant_reserved(merchant_id), amount), Entry.credit(BANK_CASH, amount))


def payout_void_entries(merchant_id: str, amount: Money) -> tuple[Entry, ...]:
    """The payout failed before money left: reserved funds return to available."""
    return (
        Entry.debit(merchant_reserved(merchant_id), amount),
        Entry.credit(merchant_payable(merchant_id), amount),
    )


def payout_return_entries(merchant_id: str, amount: Money) -> tuple[Entry, ...]:
    """The bank returned a paid payout: the money is back in our account and the seller's wallet."""
    return (Entry.debit(BANK_CASH, amount), Entry.credit(merchant_payable(merchant_id), amount))


def chargeback_entries(amount: Money) -> tuple[Entry, ...]:
    """The PSP withdrew a disputed payment's amount: Dr chargebacks / Cr psp_clearing.

    `chargebacks` then holds what open disputes cost us until the PSP closes them."""
    return (Entry.debit(CHARGEBACKS, amount), Entry.credit(PSP_CLEARING, amount))


def chargeback_recovery_entries(
    merchant_id: str, amount: Money, commission_bps: int = 0, available_minor: int | None = None
) -> tuple[Entry, ...]:
    """A lost dispute is recovered by the refund wallet policy ("the platform covers, the
    seller owes"): the seller gives back its net share (the amount minus the commission, split
    with the capture's rounding) from its available balance as far as that goes, the rest is
    debited to `merchant_receivable:<id>`; the platform gives back its commission (the sale did
    not stand, as with a refund). Cr chargebacks the whole amount, so a lost dispute leaves
    nothing in `chargebacks`.

    With `commission_bps=0` and no balance given, the seller gives back all of it from its
    wallet: Dr merchant_payable / Cr chargebacks.
    """
    commission, net = split_bps(amount, commission_bps)
    from_wallet = net.minor if available_minor is None else min(net.minor, available_minor)
    from_wallet = max(from_wallet, 0)
    shortfall = net.minor - from_wallet
    entries = []
    if from_wallet:
        entries.append(Entry.debit(merchant_payable(merchant_id), Money(from_wallet, net.currency)))
    if shortfall:
        entries.append(
            Entry.debit(merchant_receivable(merchant_id), Money(shortfall, net.currency))
        )
    if commission.minor:
        entries.append(Entry.debit(PLATFORM_REVENUE, commission))
    entries.append(Entry.credit(CHARGEBACKS, amount))
    return tuple(entries)


def chargeback_reinstated_entries(amount: Money) -> tuple[Entry, ...]:
    """A won dispute: the PSP gives the withdrawn amount back: Dr psp_clearing / Cr chargebacks."""
    return (Entry.debit(PSP_CLEARING, amount), Entry.credit(CHARGEBACKS, amount))


def trial_balance_ok(sums: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """Given (account, currency) -> sum, the per-currency totals that are not zero (must be {})."""
    totals: dict[str, int] = defaultdict(int)
    for (_, currency), total in sums.items():
        totals[currency] += total
    return {c: t for c, t in totals.items() if t != 0}
