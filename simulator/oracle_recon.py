"""The reconciliation oracle: the runs reported exactly the discrepancies the simulator
injected, each with its class and reason, and nothing else (precision and recall 1.0); what the
files proved was settled once, at the PSP's amount; psp_clearing holds exactly what is in
transit.

Invariants (violation names):

- `recon_reports_injected`: the multiset of (reference, class, reason) over every stored item
  equals the truth: one item per injected line fault (simulator/recon_faults.py), one per bank
  deposit that cannot agree with its batch as the PSP sent it, plus, and only for lines the
  engine had not booked when their run started, an auto_fixed `capture_not_heard` /
  `refund_not_heard` (a lost webhook that the file repaired; not required, since the engine's
  own status poll may have won the race), except that a capture the PSP withheld every word
  of (`psp_capture_unheard_p`) until its report was reconciled must come back auto_fixed.
- `recon_damaged_files_refused`: every damaged file, and only those, was refused.
- `recon_settled_once`: the settled references are exactly the clean report's lines less those
  a fault withheld (dropped, or altered amount, currency or fee), each settled once at the
  PSP's gross; every repaired capture ends SUCCESS (zero money difference).
- `psp_clearing_in_transit`: per currency, psp_clearing equals the PSP's movements not settled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from engine.ledger import PSP_CLEARING, TransactionKind
from engine.money import Money
from engine.reconciliation.match import ItemClass, Reason
from engine.reconciliation.match_out import settlement_key
from engine.states import OrderStatus
from simulator.oracle import Snapshot, Violation, violation
from simulator.recon_faults import EXPECTED, ReconFault
from simulator.world_recon import DayTruth, Key, ReconDesk

INVARIANTS = (
    "recon_reports_injected",
    "recon_damaged_files_refused",
    "recon_settled_once",
    "psp_clearing_in_transit",
)
#: Faults after which the line's movement is not settled by the file.
WITHHELD = (
    ReconFault.ROW_DROPPED,
    ReconFault.AMOUNT_ALTERED,
    ReconFault.CURRENCY_ALTERED,
    ReconFault.FEE_ALTERED,
)


def _withheld(day: DayTruth) -> set[str]:
    """The settlement keys of the clean lines a fault withheld (found by their PSP id, unique
    in a report: a dispute's withdrawal and its reversal share a reference)."""
    by_id = {f.detail for f in day.injected if f.fault in WITHHELD and f.detail}
    by_ref = {f.reference for f in day.injected if f.fault in WITHHELD and not f.detail}
    return {
        settlement_key(line.kind, line.reference)
        for line in day.clean
        if (line.psp_reference or "") in by_id or line.reference in by_ref
    }


def _deposit_truth(day: DayTruth) -> list[Key]:
    """The bank deposits the PSP's report as sent cannot confirm: the bank pays each batch's
    true net; the run of the report knows the batch only if its sent lines are of one
    currency, and then must say the net it read."""
    found: list[Key] = []
    for batch, true_net in day.deposits.items():
        nets: dict[str, int] = {}
        for line in day.sent:
            if line.batch == batch:
                nets[line.currency] = nets.get(line.currency, 0) + line.net.minor
        if len(nets) != 1:
            found.append((batch, ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE))
        elif Money(*next(iter(nets.items()))[::-1]) != true_net:
            found.append((batch, ItemClass.MANUAL_REVIEW, Reason.DEPOSIT_DIFFERS))
    return found


def expected_items(desk: ReconDesk) -> Counter[Key]:
    truth: Counter[Key] = Counter()
    for day in desk.days:
        altered = set()
        for fault in day.injected:
            if fault.fault in EXPECTED:
                klass, reason = EXPECTED[fault.fault]
                truth[(fault.reference, klass, reason)] += 1
            if fault.fault in WITHHELD:
                altered.add(fault.reference)
        truth.update(_deposit_truth(day))
        # A capture the PSP withheld every word of, reported by this day's file: the run must
        # repair it (a lost webhook), unless its line was dropped or altered.
        for line in day.clean:
            ref = line.reference
            if ref in desk.heard_by_file and ref not in altered:
                truth[(ref, ItemClass.AUTO_FIXED, Reason.CAPTURE_NOT_HEARD)] += 1
    return truth


def check_recon(
    desk: ReconDesk, snap: Snapshot, withdrawn: Mapping[str, int] | None = None
) -> list[Violation]:
    found: list[Violation] = []
    if desk.pending:
        found.append(
            violation(
                "recon_reports_injected",
                f"{len(desk.pending)} file(s) never reconciled",
                [d.file_id for d in desk.pending],
            )
        )
    truth = expected_items(desk)
    reported: Counter[Key] = Counter(key for r in desk.records for key in r.items)
    allowed_fixes = {
        (ref, ItemClass.AUTO_FIXED, reason) for r in desk.records for ref, reason in r.unheard
    }
    extra = reported - truth
    spurious = [k for k in extra.elements() if k not in allowed_fixes or extra[k] > 1]
    missed = list((truth - reported).elements())
    if spurious or missed:
        objects = [f"reported, not injected: {k[0]} {k[1]} {k[2]}" for k in sorted(spurious)]
        objects += [f"injected, not reported: {k[0]} {k[1]} {k[2]}" for k in sorted(missed)]
        found.append(
            violation(
                "recon_reports_injected",
                f"precision/recall below 1.0: {len(spurious)} spurious, {len(missed)} missed",
                objects,
            )
        )
    wrong_refusals = [
        f"{r.file_id}: {'accepted' if r.error is None else 'refused'} but "
        f"{'damaged' if r.damaged else 'intact'} ({r.error})"
        for r in desk.records
        if (r.error is not None) != r.damaged
    ]
    if wrong_refusals:
        found.append(
            violation("recon_damaged_files_refused", "a file judged wrongly", wrong_refusals)
        )
    found += _check_settled(desk, snap, allowed_fixes, withdrawn or {})
    return found


def _check_settled(
    desk: ReconDesk, snap: Snapshot, fixes: set[Key], withdrawn: Mapping[str, int]
) -> list[Violation]:
    settled: dict[str, list[Money]] = {}
    settled_total: Counter[str] = Counter()
    for txn in snap.txns:
        if txn.kind is not TransactionKind.SETTLEMENT:
            continue
        gross = -sum(e.amount_minor for e in txn.entries if e.account == PSP_CLEARING)
        currency = txn.entries[0].currency
        settled.setdefault(txn.reference, []).append(Money(gross, currency))
        settled_total[currency] += gross
    wanted: dict[str, Money] = {}
    for day in desk.days:
        withheld = _withheld(day)
        for line in day.clean:
            key = settlement_key(line.kind, line.reference)
            if key not in withheld:
                wanted[key] = line.gross
    wrong = [
        f"{ref}: settled {settled.get(ref, [])}, the PSP's gross {wanted.get(ref)}"
        for ref in sorted(set(settled) | set(wanted))
        if settled.get(ref, []) != ([wanted[ref]] if ref in wanted else [])
    ]
    for ref, _klass, reason in sorted(fixes):
        order = snap.orders.get(ref)
        if reason is Reason.CAPTURE_NOT_HEARD and (
            order is None or order.status is not OrderStatus.SUCCESS or not order.booked
        ):
            wrong.append(f"{ref}: repaired by reconciliation but ends {order and order.status}")
    found: list[Violation] = []
    if wrong:
        found.append(violation("recon_settled_once", "settlement differs from the files", wrong))
    in_transit: Counter[str] = Counter()
    for day in desk.days:
        for line in day.clean:
            if settlement_key(line.kind, line.reference) not in settled:
                in_transit[line.currency] += line.gross.minor
    # Every dispute's withdrawal (and a won one's reversal) is a line of some report: what
    # psp_clearing holds of it is in transit until its line is settled. `withdrawn` (what the
    # PSP's disputes keep) is no longer subtracted; it is kept for the caller's signature.
    del withdrawn
    clearing = {c: v for (a, c), v in snap.trial.items() if a == PSP_CLEARING and v}
    off = [
        f"{c}: psp_clearing {clearing.get(c, 0)}, in transit {in_transit.get(c, 0)}"
        for c in sorted(set(clearing) | set(in_transit))
        if clearing.get(c, 0) != in_transit.get(c, 0)
    ]
    if off:
        found.append(
            violation("psp_clearing_in_transit", "psp_clearing is not what is in transit", off)
        )
    return found
