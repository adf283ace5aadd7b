"""The reconciliation oracle catches what it must: an injected discrepancy not reported
(recall), an item nobody injected (precision), a damaged file accepted, a withheld line
settled, and psp_clearing that is not what is in transit."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import attrs

from engine.ledger import BANK_CASH, PSP_CLEARING, PSP_FEES, Transaction, TransactionKind
from engine.money import Money
from engine.reconciliation import Format, LineKind, SettlementLine
from engine.reconciliation.match import ItemClass, Reason
from engine.reconciliation.posting import signed_settlement_entries
from simulator.oracle import Snapshot
from simulator.oracle_recon import check_recon
from simulator.recon_faults import (
    EXPECTED,
    Injected,
    ReconFault,
    ReconPlan,
    corrupt_lines,
    damaged,
)
from simulator.world_recon import DayTruth, RunRecord


def _line(ref: str, minor: int, batch: str = "po_1_usd") -> SettlementLine:
    gross, fee = Money(minor, "USD"), Money(30, "USD")
    return SettlementLine(
        source=Format.STRIPE,
        line_number=1,
        kind=LineKind.CAPTURE,
        reference=ref,
        psp_reference=f"txn_{ref}",
        order_reference=ref,
        gross=gross,
        fee=fee,
        net=gross - fee,
        batch=batch,
        booked_at_ms=0,
        value_at_ms=None,
    )


def _settled(line: SettlementLine) -> Transaction:
    return Transaction(
        f"txn_s_{line.reference}",
        TransactionKind.SETTLEMENT,
        line.reference,
        signed_settlement_entries(line.gross, line.fee),
        1,
    )


A, B = _line("ord_a", 1000), _line("ord_b", 2000)
ALTERED = attrs.evolve(B, gross=Money(2100, "USD"), net=Money(2070, "USD"))
REVIEW = ("ord_b", ItemClass.MANUAL_REVIEW, Reason.AMOUNT_DIFFERS)
DEPOSIT = ("po_1_usd", ItemClass.MANUAL_REVIEW, Reason.DEPOSIT_DIFFERS)


def _world(items: tuple[Any, ...], txns: tuple[Transaction, ...], clearing: int) -> list[str]:
    day = DayTruth(
        "1",
        (A, B),
        (A, ALTERED),
        (Injected(ReconFault.AMOUNT_ALTERED, "ord_b"),),
        {"po_1_usd": Money(970 + 1970, "USD")},
    )
    record = RunRecord("psp-1", False, "recon_1", items, None, frozenset())
    desk = SimpleNamespace(days=[day], records=[record], pending=[], heard_by_file=set())
    snap = Snapshot(
        payments={},
        orders={},
        txns=txns,
        trial={(PSP_CLEARING, "USD"): clearing, (BANK_CASH, "USD"): 0, (PSP_FEES, "USD"): 0},
        balances=(),
        pending_deliveries=0,
        dead_letters=0,
    )
    return [v.invariant for v in check_recon(desk, snap)]  # type: ignore[arg-type]


def test_the_truth_reported_and_settled_is_clean() -> None:
    assert _world((REVIEW, DEPOSIT), (_settled(A),), 2000) == []


def test_an_injected_discrepancy_not_reported_breaks_recall() -> None:
    assert _world((DEPOSIT,), (_settled(A),), 2000) == ["recon_reports_injected"]


def test_an_item_nobody_injected_breaks_precision() -> None:
    spurious = ("ord_a", ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE)
    assert _world((REVIEW, DEPOSIT, spurious), (_settled(A),), 2000) == ["recon_reports_injected"]


def test_settling_a_line_the_fault_withheld_is_caught() -> None:
    found = _world((REVIEW, DEPOSIT), (_settled(A), _settled(B)), 0)
    assert found == ["recon_settled_once"]


def test_psp_clearing_that_is_not_in_transit_is_caught() -> None:
    assert _world((REVIEW, DEPOSIT), (_settled(A),), 1999) == ["psp_clearing_in_transit"]


def test_every_content_fault_has_its_item_and_the_file_damage_is_unreadable() -> None:
    rng = random.Random(7)
    lines = [_line(f"ord_{i}", 1000 + i) for i in range(400)]
    plan = ReconPlan(0.1, 0.1, 0.1, 0.1, 0.1, 1.0, 0.0)
    sent, injected = corrupt_lines(lines, rng, plan, tag="x", source=Format.STRIPE, booked_at_ms=0)
    fired = {i.fault for i in injected}
    assert fired == set(EXPECTED)
    by_ref = {line.reference: line for line in sent}
    for fault in injected:
        original = next((x for x in lines if x.reference == fault.reference), None)
        got = by_ref.get(fault.reference)
        if fault.fault is ReconFault.ROW_DROPPED:
            assert got is None
        elif fault.fault is ReconFault.AMOUNT_ALTERED:
            assert got is not None and original is not None and got.gross != original.gross
        elif fault.fault is ReconFault.CURRENCY_ALTERED:
            assert got is not None and got.currency != "USD"
        elif fault.fault is ReconFault.FEE_ALTERED:
            assert got is not None and original is not None and got.fee != original.fee
        elif fault.fault is ReconFault.ROW_DUPLICATED:
            assert sum(1 for x in sent if x.reference == fault.reference) == 2
    data = b"balance_transaction_id,reporting_category\n"
    broken = damaged(data, rng)
    try:
        broken.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("damage must not be readable as UTF-8")
