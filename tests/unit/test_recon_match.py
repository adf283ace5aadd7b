"""Matching a settlement against the ledger: every injected discrepancy is reported exactly once,
with the right class, and nothing else is (precision and recall 1.0, at the pure level)."""

from __future__ import annotations

import enum

import attrs
from hypothesis import given
from hypothesis import strategies as st

from engine.money import Money
from engine.reconciliation import Format, LineKind, SettlementLine, parse, write_stripe
from engine.reconciliation.line import Settlement, totals_of
from engine.reconciliation.match import (
    Action,
    Capture,
    ItemClass,
    LedgerFacts,
    Reason,
    expected_fee,
    match,
)
from engine.states import OrderStatus

T0 = 1_767_225_600_000
FEE_BPS = 290
FIXED = {"USD": 30, "EUR": 25, "JPY": 0, "BHD": 100}


def _line(n: int, order_id: str, gross: Money, fee: Money) -> SettlementLine:
    return SettlementLine(
        source=Format.STRIPE,
        line_number=n,
        kind=LineKind.CAPTURE,
        reference=order_id,
        psp_reference=f"txn_{order_id}",
        order_reference=order_id,
        gross=gross,
        fee=fee,
        net=gross - fee,
        batch="po_1",
        booked_at_ms=T0,
        value_at_ms=None,
    )


def _settlement(lines: list[SettlementLine]) -> Settlement:
    numbered = tuple(attrs.evolve(line, line_number=i + 2) for i, line in enumerate(lines))
    return Settlement(Format.STRIPE, numbered, totals_of(numbered), batch="po_1")


class Fault(enum.StrEnum):
    DROPPED = "dropped"
    DUPLICATED = "duplicated"
    AMOUNT = "amount"
    CURRENCY = "currency"
    FEE = "fee"
    FOREIGN = "foreign"
    NOT_HEARD = "not_heard"
    CAPTURED_BUT_FAILED = "captured_but_failed"
    ALREADY_SETTLED = "already_settled"


#: Each injected fault and the one item it must produce.
EXPECTED = {
    Fault.DROPPED: (ItemClass.INVESTIGATE, Reason.MISSING_FROM_FILE),
    Fault.DUPLICATED: (ItemClass.INVESTIGATE, Reason.DUPLICATE_REFERENCE),
    Fault.AMOUNT: (ItemClass.MANUAL_REVIEW, Reason.AMOUNT_DIFFERS),
    Fault.CURRENCY: (ItemClass.MANUAL_REVIEW, Reason.CURRENCY_DIFFERS),
    Fault.FEE: (ItemClass.MANUAL_REVIEW, Reason.FEE_DIFFERS),
    Fault.FOREIGN: (ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE),
    Fault.NOT_HEARD: (ItemClass.AUTO_FIXED, Reason.CAPTURE_NOT_HEARD),
    Fault.CAPTURED_BUT_FAILED: (ItemClass.MANUAL_REVIEW, Reason.CAPTURED_BUT_FAILED),
    Fault.ALREADY_SETTLED: (ItemClass.INVESTIGATE, Reason.ALREADY_SETTLED),
}

captures_strategy = st.lists(
    st.tuples(st.sampled_from(sorted(FIXED)), st.integers(1, 10**9)), min_size=1, max_size=30
)


def _world(
    amounts: list[tuple[str, int]],
) -> tuple[dict[str, Capture], list[SettlementLine], LedgerFacts]:
    captures: dict[str, Capture] = {}
    lines = []
    for i, (currency, minor) in enumerate(amounts):
        order_id = f"ord_{i:04d}"
        gross = Money(minor, currency)
        captures[order_id] = Capture(order_id, gross, OrderStatus.SUCCESS)
        facts = LedgerFacts({}, fee_bps=FEE_BPS, fee_fixed_minor=FIXED)
        fee = expected_fee(gross, facts)
        assert fee is not None
        lines.append(_line(1, order_id, gross, fee))
    facts = LedgerFacts(captures, sorted(captures), fee_bps=FEE_BPS, fee_fixed_minor=FIXED)
    return captures, lines, facts


@given(amounts=captures_strategy)
def test_a_file_that_is_the_ledger_matches_line_for_line(amounts: list[tuple[str, int]]) -> None:
    _, lines, facts = _world(amounts)
    result = match(_settlement(lines), facts)
    assert result.count(ItemClass.MATCHED) == len(lines) == len(result.items)
    assert all(item.action is Action.POST_SETTLEMENT for item in result.items)
    assert result.clean


@given(amounts=captures_strategy, fault=st.sampled_from(list(Fault)), data=st.data())
def test_one_injected_discrepancy_gives_exactly_one_item_of_its_class(
    amounts: list[tuple[str, int]], fault: Fault, data: st.DataObject
) -> None:
    captures, lines, facts = _world(amounts)
    victim = data.draw(st.integers(0, len(lines) - 1))
    target = lines[victim]
    ref = target.reference
    if fault is Fault.DROPPED:
        del lines[victim]
    elif fault is Fault.DUPLICATED:
        lines.insert(victim + 1, target)
    elif fault is Fault.AMOUNT:
        delta = data.draw(st.integers(1, 10**6))
        gross = Money(target.gross.minor + delta, target.currency)
        lines[victim] = _line(1, ref, gross, target.fee)
    elif fault is Fault.CURRENCY:
        other = data.draw(st.sampled_from([c for c in FIXED if c != target.currency]))
        g, f = Money(target.gross.minor, other), Money(target.fee.minor, other)
        lines[victim] = _line(1, ref, g, f)
    elif fault is Fault.FEE:
        fee = Money(target.fee.minor + data.draw(st.integers(1, 1000)), target.currency)
        lines[victim] = _line(1, ref, target.gross, fee)
    elif fault is Fault.FOREIGN:
        lines.insert(victim, _line(1, "ord_foreign", target.gross, target.fee))
    elif fault is Fault.NOT_HEARD:
        captures[ref] = attrs.evolve(captures[ref], status=OrderStatus.EXECUTING)
        facts = attrs.evolve(facts, expected=sorted(set(facts.expected) - {ref}))
    elif fault is Fault.CAPTURED_BUT_FAILED:
        captures[ref] = attrs.evolve(captures[ref], status=OrderStatus.FAILED)
        facts = attrs.evolve(facts, expected=sorted(set(facts.expected) - {ref}))
    elif fault is Fault.ALREADY_SETTLED:
        captures[ref] = attrs.evolve(captures[ref], settled_by="po_0")
        facts = attrs.evolve(facts, expected=sorted(set(facts.expected) - {ref}))
    result = match(_settlement(lines), attrs.evolve(facts, captures=captures))
    flagged = [item for item in result.items if item.klass is not ItemClass.MATCHED]
    assert [(i.klass, i.reason) for i in flagged] == [EXPECTED[fault]]
    expected_ref = "ord_foreign" if fault is Fault.FOREIGN else ref
    assert flagged[0].reference == expected_ref
    assert result.clean is (flagged[0].klass is ItemClass.AUTO_FIXED)


def test_a_written_stripe_report_matches_after_parsing() -> None:
    _, lines, facts = _world([("USD", 2500), ("JPY", 1500), ("BHD", 12345)])
    settlement = parse(write_stripe(_settlement(lines).lines, newline="\r\n", bom=True))
    result = match(settlement, facts)
    assert result.count(ItemClass.MATCHED) == 3 and result.clean
    assert result.money(ItemClass.MATCHED) == {"BHD": 12345, "JPY": 1500, "USD": 2500}


def test_fee_lines_are_posted_and_other_kinds_are_flagged() -> None:
    fee = attrs.evolve(
        _line(1, "fee_1", Money(-150, "USD"), Money(0, "USD")),
        kind=LineKind.FEE,
        order_reference=None,
    )
    payout = attrs.evolve(fee, kind=LineKind.PAYOUT, reference="po_9")
    adjustment = attrs.evolve(fee, kind=LineKind.ADJUSTMENT, reference="adj_1")
    result = match(_settlement([fee, payout, adjustment]), LedgerFacts({}))
    # A payout line is matched by payout id (engine/reconciliation/match_out.py): po_9 is none
    # of ours; an adjustment is not reconciled.
    assert [(i.klass, i.reason, i.action) for i in result.items] == [
        (ItemClass.AUTO_FIXED, Reason.FEE_NOT_POSTED, Action.POST_FEE),
        (ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE, Action.NONE),
        (ItemClass.INVESTIGATE, Reason.KIND_NOT_RECONCILED, Action.NONE),
    ]


def test_without_a_fee_contract_no_fee_is_judged() -> None:
    _, lines, facts = _world([("USD", 2500)])
    lines[0] = _line(1, "ord_0000", Money(2500, "USD"), Money(999, "USD"))
    result = match(_settlement(lines), attrs.evolve(facts, fee_bps=None))
    assert result.count(ItemClass.MATCHED) == 1
