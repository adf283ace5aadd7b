"""The oracle's dispute (chargeback) invariants, recomputed from the PSP's books and the rows.

- `dispute_announced` (at every commit): a unit of work that records a dispute writes
  `dispute.created`, and one that closes it `dispute.won` / `dispute.lost`, once each, in the
  same unit; nothing else writes them.
- `one_chargeback_per_dispute`: per dispute exactly one chargeback transaction; a WON one
  exactly one reinstatement and no recovery, a LOST one exactly one recovery and no
  reinstatement, an OPEN one neither; and no chargeback transaction names anything but a
  dispute's id (a second recovery under another reference is a double recovery).
- `every_dispute_as_psp_says`: once the faults stopped, every dispute the PSP opened is in the
  engine with its amount, capture and order, and WON or LOST exactly as the PSP closed it; the
  engine has no dispute the PSP does not.
- `chargebacks_net_open_disputes`: per currency, the `chargebacks` account holds exactly the
  amounts of the OPEN disputes (a closed one is reinstated or recovered in full).
- `dispute_recovery_follows_policy`: a lost dispute's recovery takes the commission back from
  `platform_revenue` (the capture's rounding) and the seller's net share from its wallet and,
  for what that lacked, from `merchant_receivable:<id>`; never more, never a credit.
- Money conservation with chargebacks is `money_conserved` (simulator/oracle_refunds.py), one
  sum for every flow: what the PSP captured = what the ledger holds for sellers and the
  platform (wallets less receivables, revenue, refunds in flight, less what open chargebacks
  cost us) + what the PSP refunded + what its disputes keep withdrawn + what the payout
  provider paid out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from engine.gateway import PspDisputeStatus
from engine.ledger import (
    CHARGEBACKS,
    MERCHANT_PAYABLE,
    MERCHANT_RECEIVABLE,
    PLATFORM_REVENUE,
    Transaction,
    TransactionKind,
)
from engine.records import Dispute, OutboxMessage, PaymentOrder
from engine.states import DisputeStatus
from simulator.fake_psp import FakePsp
from simulator.oracle_flows import expected_commission

DISPUTE_INVARIANTS = (
    "dispute_announced",
    "one_chargeback_per_dispute",
    "every_dispute_as_psp_says",
    "chargebacks_net_open_disputes",
    "dispute_recovery_follows_policy",
)

Found = list[tuple[str, str, list[str]]]

_KINDS = (
    TransactionKind.CHARGEBACK,
    TransactionKind.CHARGEBACK_RECOVERY,
    TransactionKind.CHARGEBACK_REINSTATED,
)
_ANNOUNCED = {DisputeStatus.WON: "dispute.won", DisputeStatus.LOST: "dispute.lost"}


def check_dispute_announcements(
    written: Mapping[str, Dispute], inserted: Iterable[str], outbox: Sequence[OutboxMessage]
) -> list[str]:
    """`written`: the disputes a unit wrote (after); `inserted`: which of them it inserted. A
    written dispute that was not inserted was OPEN before (the only status that changes)."""
    inserted = set(inserted)
    expected: list[tuple[str, str]] = []
    for dispute_id, dispute in written.items():
        if dispute_id in inserted:
            expected.append(("dispute.created", dispute_id))
        topic = _ANNOUNCED.get(dispute.status)
        if topic is not None:
            expected.append((topic, dispute_id))
    got = [(m.topic, m.key) for m in outbox if m.topic in ("dispute.created", *_ANNOUNCED.values())]
    bad = []
    for topic, key in sorted(set(expected) | set(got)):
        want, have = expected.count((topic, key)), got.count((topic, key))
        if want != have:
            bad.append(f"{topic} {key}: {have} message(s) for {want} state change(s)")
    return bad


def check_disputes_final(
    psp: FakePsp,
    disputes: Mapping[str, Dispute],
    orders: Mapping[str, PaymentOrder],
    txns: Iterable[Transaction],
    trial: Mapping[tuple[str, str], int],
    commission_bps: int,
) -> Found:
    txns = list(txns)
    found = _one_chargeback_each(disputes, txns)
    found += _as_psp_says(psp, disputes, orders)
    found += _chargebacks_net_open(disputes, trial)
    found += _recovery_policy(disputes, orders, txns, commission_bps)
    return found


def _one_chargeback_each(disputes: Mapping[str, Dispute], txns: list[Transaction]) -> Found:
    posted: Counter[tuple[str, TransactionKind]] = Counter()
    bad: list[str] = []
    for txn in txns:
        if txn.kind in _KINDS:
            if txn.reference not in disputes:
                bad.append(f"{txn.kind} {txn.txn_id} names {txn.reference}, no dispute")
            posted[(txn.reference, txn.kind)] += 1
    want = {
        DisputeStatus.OPEN: (1, 0, 0),
        DisputeStatus.WON: (1, 0, 1),
        DisputeStatus.LOST: (1, 1, 0),
    }
    for dispute_id in sorted(disputes):
        dispute = disputes[dispute_id]
        have = tuple(posted[(dispute_id, kind)] for kind in _KINDS)
        if have != want[dispute.status]:
            bad.append(
                f"dispute {dispute_id} {dispute.status}: chargeback/recovery/reinstatement "
                f"posted {have}, expected {want[dispute.status]}"
            )
    if not bad:
        return []
    return [("one_chargeback_per_dispute", "a dispute's postings are wrong", sorted(bad))]


def _as_psp_says(
    psp: FakePsp, disputes: Mapping[str, Dispute], orders: Mapping[str, PaymentOrder]
) -> Found:
    final = {PspDisputeStatus.WON: DisputeStatus.WON, PspDisputeStatus.LOST: DisputeStatus.LOST}
    bad: list[str] = []
    for dispute_id, held in psp.disputes.items():
        ours = disputes.get(dispute_id)
        said = final.get(held.status, DisputeStatus.OPEN)
        if ours is None:
            bad.append(f"PSP dispute {dispute_id} ({held.status}) is not in the engine")
            continue
        order = orders.get(ours.order_id)
        if (
            ours.amount != held.amount
            or ours.psp_capture_id != held.capture_id
            or ours.order_id != held.order_key
            or order is None
            or order.psp_capture_id != held.capture_id
        ):
            bad.append(f"dispute {dispute_id}: engine {ours} disagrees with the PSP's {held}")
        elif ours.status is not said:
            bad.append(f"dispute {dispute_id} is {ours.status}, the PSP says {held.status}")
    for dispute_id in sorted(set(disputes) - set(psp.disputes)):
        bad.append(f"dispute {dispute_id} is in the engine, the PSP knows none")
    if not bad:
        return []
    return [
        (
            "every_dispute_as_psp_says",
            f"{len(bad)} dispute(s) not as the PSP says after the faults stopped",
            sorted(bad),
        )
    ]


def _chargebacks_net_open(
    disputes: Mapping[str, Dispute], trial: Mapping[tuple[str, str], int]
) -> Found:
    open_total: Counter[str] = Counter()
    for dispute in disputes.values():
        if dispute.status is DisputeStatus.OPEN:
            open_total[dispute.currency] += dispute.amount_minor
    held = {c: v for (a, c), v in trial.items() if a == CHARGEBACKS and v}
    bad = [
        f"{currency}: chargebacks holds {held.get(currency, 0)}, open disputes "
        f"{open_total.get(currency, 0)} minor units"
        for currency in sorted(set(open_total) | set(held))
        if held.get(currency, 0) != open_total.get(currency, 0)
    ]
    if not bad:
        return []
    return [("chargebacks_net_open_disputes", "chargebacks do not net to open disputes", bad)]


def _recovery_policy(
    disputes: Mapping[str, Dispute],
    orders: Mapping[str, PaymentOrder],
    txns: list[Transaction],
    commission_bps: int,
) -> Found:
    bad: list[str] = []
    for txn in txns:
        if txn.kind is not TransactionKind.CHARGEBACK_RECOVERY:
            continue
        dispute = disputes.get(txn.reference)
        order = None if dispute is None else orders.get(dispute.order_id)
        if dispute is None or order is None:
            continue  # one_chargeback_per_dispute names it
        commission = expected_commission(dispute.amount_minor, commission_bps)
        by_account: Counter[str] = Counter()
        for entry in txn.entries:
            by_account[entry.account] += entry.amount_minor
        seller = order.seller_id
        payable = by_account.pop(f"{MERCHANT_PAYABLE}:{seller}", 0)
        receivable = by_account.pop(f"{MERCHANT_RECEIVABLE}:{seller}", 0)
        revenue = by_account.pop(PLATFORM_REVENUE, 0)
        credited = -by_account.pop(CHARGEBACKS, 0)
        if (
            by_account
            or revenue != commission
            or payable < 0
            or receivable < 0
            or payable + receivable != dispute.amount_minor - commission
            or credited != dispute.amount_minor
        ):
            bad.append(
                f"recovery of dispute {dispute.dispute_id} ({dispute.amount_minor}, seller "
                f"{seller}): wallet {payable} / receivable {receivable} / commission {revenue} / "
                f"chargebacks {credited}, other {dict(by_account)}; commission should be "
                f"{commission}"
            )
    if not bad:
        return []
    return [("dispute_recovery_follows_policy", "a recovery broke the wallet policy", bad)]
