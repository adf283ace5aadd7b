"""The oracle's payout invariants, recomputed from the provider's books and the committed rows.

- `at_most_one_provider_payout_per_payout`: every payout the provider holds is keyed by one of
  our payout ids, for that payout's merchant and amount. The provider deduplicates by key, so
  a payout id can make one provider payout at most; one under any other key is a second one
  (a retry that changed its key). Checked every virtual minute and at the end.
- `payout_announced_once`: each payout status change commits exactly one `payout.<status>`
  message in its unit of work, and no payout message is written without one (at each commit).
- `reserved_equals_payouts_in_flight`: per merchant and currency, at every commit that touches
  a wallet or a payout, the reserved balance is the sum of the payouts whose money is reserved
  (FUNDS_RESERVED, SUBMITTED). With the wallet's non-negative check (`no_negative_balance`,
  simulator/oracle.py) this is the wallet policy: nothing below zero, nothing reserved twice.
- `every_payout_settled`: once the faults stopped every payout rests (PAID, FAILED, RETURNED)
  and agrees with the provider: PAID, FAILED and RETURNED exactly when the provider says so.
- `money_conserved_with_payouts`: per currency, to the minor unit, from facts outside the
  engine where there are any: what the PSP captured less what it refunded equals what the
  sellers hold (available + reserved, less what they owe: `merchant_receivable`) + the
  platform's revenue + refunds in flight (`refunds_clearing`) + what the payout provider paid
  out and kept paid (its PAID payouts; RETURNED ones came back).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from engine.ledger import CHARGEBACKS, MERCHANT_RECEIVABLE, PLATFORM_REVENUE, REFUNDS_CLEARING
from engine.payout_gateway import ProviderPayoutStatus
from engine.payouts import PAYOUT_IN_FLIGHT
from engine.records import Balance, OutboxMessage, Payout
from engine.states import PayoutStatus
from simulator.fake_psp import FakePsp
from simulator.payout_provider import FakePayoutProvider

PAYOUT_INVARIANTS = (
    "at_most_one_provider_payout_per_payout",
    "payout_announced_once",
    "reserved_equals_payouts_in_flight",
    "every_payout_settled",
    "money_conserved_with_payouts",
)

Found = list[tuple[str, str, list[str]]]


def check_provider_keys(provider: FakePayoutProvider, payouts: Mapping[str, Payout]) -> Found:
    bad: list[str] = []
    for key, held in provider.payouts.items():
        payout = payouts.get(key)
        if (
            payout is None
            or held.destination != f"merchant:{payout.merchant_id}"
            or held.amount != payout.amount
        ):
            bad.append(
                f"provider payout {held.payout_id} of {held.amount} to {held.destination} "
                f"({held.status}) has key {key}, not the id of our payout of that amount"
            )
    if not bad:
        return []
    return [
        (
            "at_most_one_provider_payout_per_payout",
            f"{len(bad)} provider payout(s) not keyed by their payout id: a retry pays again",
            sorted(bad),
        )
    ]


def check_payouts_at_commit(
    changed: Iterable[tuple[PayoutStatus | None, Payout]],
    outbox: Iterable[OutboxMessage],
    wallets: Mapping[tuple[str, str], list[int]],
    payouts_of: Mapping[str, list[str]],
    payouts: Mapping[str, Payout],
    touched: Iterable[tuple[str, str]],
) -> Found:
    """The announcements of one commit, and the reserved balance of every wallet it touched."""
    found: Found = []
    expected: Counter[tuple[str, str]] = Counter()
    for before, payout in changed:
        if before is payout.status:
            continue
        # A unit may walk several steps (SUBMITTED -> PAID -> RETURNED): one message each.
        walked = _walk(before, payout.status)
        for status in walked:
            expected[(f"payout.{status.value.lower()}", payout.payout_id)] += 1
    written = Counter((m.topic, m.key) for m in outbox if m.topic.startswith("payout."))
    if expected != written:
        bad = [
            f"{topic} {key}: {written[(topic, key)]} message(s) for {expected[(topic, key)]} "
            "change(s)"
            for topic, key in sorted(set(expected) | set(written))
            if expected[(topic, key)] != written[(topic, key)]
        ]
        found.append(("payout_announced_once", "a payout change and its message differ", bad))
    wrong: list[str] = []
    for merchant, currency in sorted(set(touched)):
        reserved = wallets.get((merchant, currency), [0, 0])[1]
        in_flight = sum(
            p.amount_minor
            for i in payouts_of.get(merchant, ())
            if (p := payouts[i]).currency == currency and p.status in PAYOUT_IN_FLIGHT
        )
        if reserved != in_flight:
            wrong.append(
                f"{merchant} {currency}: reserved {reserved}, payouts in flight {in_flight}"
            )
    if wrong:
        found.append(
            (
                "reserved_equals_payouts_in_flight",
                "a wallet's reserved balance is not its payouts in flight",
                wrong,
            )
        )
    return found


_CHAIN = (
    PayoutStatus.REQUESTED,
    PayoutStatus.FUNDS_RESERVED,
    PayoutStatus.SUBMITTED,
    PayoutStatus.PAID,
    PayoutStatus.RETURNED,
)


def _walk(before: PayoutStatus | None, after: PayoutStatus) -> list[PayoutStatus]:
    """The statuses a commit passed through from `before` (None: inserted) to `after`."""
    if after is PayoutStatus.FAILED:
        return [after]
    start = _CHAIN.index(before) + 1 if before is not None else _CHAIN.index(after)
    return list(_CHAIN[start : _CHAIN.index(after) + 1])


_AGREES = {
    PayoutStatus.PAID: ProviderPayoutStatus.PAID,
    PayoutStatus.FAILED: ProviderPayoutStatus.FAILED,
    PayoutStatus.RETURNED: ProviderPayoutStatus.RETURNED,
}


def check_payouts_final(
    provider: FakePayoutProvider,
    psp: FakePsp,
    payouts: Mapping[str, Payout],
    trial: Mapping[tuple[str, str], int],
    balances: Iterable[Balance],
) -> Found:
    found = check_provider_keys(provider, payouts)
    unsettled: list[str] = []
    for payout in sorted(payouts.values(), key=lambda p: p.payout_id):
        held = provider.payouts.get(payout.payout_id)
        said = None if held is None else held.status
        if payout.status not in _AGREES:
            unsettled.append(f"payout {payout.payout_id} {payout.status} (provider: {said})")
        elif said is not _AGREES[payout.status]:
            unsettled.append(f"payout {payout.payout_id} {payout.status} but the provider: {said}")
    if unsettled:
        found.append(
            (
                "every_payout_settled",
                f"{len(unsettled)} payout(s) not settled or not the provider's word",
                unsettled,
            )
        )
    found += money_conserved(psp, provider.paid_total(), trial, balances)
    return found


def money_conserved(
    psp: FakePsp,
    paid_out: Mapping[str, int],
    trial: Mapping[tuple[str, str], int],
    balances: Iterable[Balance],
) -> Found:
    """PSP captured - PSP refunded - what PSP disputes keep withdrawn = sellers' balances -
    receivables + revenue + refunds in flight - open chargebacks + paid out (net of returns),
    per currency, to the minor unit. The balances are the wallets' projection, so this sum
    also checks the wallets against outside facts (`money_conserved` in oracle_refunds.py sums
    the ledger's accounts instead)."""
    left = psp.captured_total() - psp.refund_book.total() - psp.dispute_book.withdrawn_total()
    right: Counter[str] = Counter()
    for balance in balances:
        right[balance.currency] += balance.available_minor + balance.reserved_minor
    for (account, currency), total in trial.items():
        if account.partition(":")[0] == MERCHANT_RECEIVABLE:
            right[currency] -= total  # an asset (debit): what sellers owe us
        elif account in (PLATFORM_REVENUE, REFUNDS_CLEARING, CHARGEBACKS):
            right[currency] -= total  # revenue and liability are credits; chargebacks a debit
    for currency, minor in paid_out.items():
        right[currency] += minor
    off = [
        f"{c}: PSP captured - refunded {left[c]}, sellers + platform + in flight + paid out "
        f"{right[c]} minor units"
        for c in sorted(set(left) | set(right))
        if left[c] != right[c]
    ]
    if not off:
        return []
    return [("money_conserved_with_payouts", "money was created or destroyed", off)]
