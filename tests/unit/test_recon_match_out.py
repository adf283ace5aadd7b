"""Matching dispute and payout lines (engine/reconciliation/match_out.py): a file that agrees
with the ledger's disputes and payouts is clean, and each injected difference gives exactly
one item of its class on its reference, and nothing else."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from engine.money import Money
from engine.reconciliation import Format, LineKind, SettlementLine
from engine.reconciliation.line import Settlement, StatementFacts, totals_of
from engine.reconciliation.match import (
    Action,
    Capture,
    DisputeFact,
    ItemClass,
    LedgerFacts,
    PayoutFact,
    Reason,
    match,
)
from engine.reconciliation.match_out import settlement_key
from engine.reconciliation.posting import posting_of
from engine.states import DisputeStatus, OrderStatus, PayoutStatus

T0 = 1_767_225_600_000


def _line(
    kind: LineKind, ref: str, gross: Money, order: str | None = None, source=Format.STRIPE
) -> SettlementLine:
    return SettlementLine(
        source=source,
        line_number=1,
        kind=kind,
        reference=ref,
        psp_reference=f"txn_{ref}_{kind}",
        order_reference=order,
        gross=gross,
        fee=Money.zero(gross.currency),
        net=gross,
        batch=None if source is Format.CAMT053 else "po_1",
        booked_at_ms=T0,
        value_at_ms=None,
    )


def _settlement(lines: list[SettlementLine], source=Format.STRIPE) -> Settlement:
    numbered = tuple(attrs.evolve(line, line_number=i + 2) for i, line in enumerate(lines))
    statements: tuple[StatementFacts, ...] = ()
    return Settlement(source, numbered, totals_of(numbered), None, statements)


def _dispute(n: int, minor: int, status: DisputeStatus) -> DisputeFact:
    return DisputeFact(f"dp_{n}", f"ord_{n}", Money(minor, "EUR"), status)


def _withdrawal(d: DisputeFact) -> SettlementLine:
    return _line(LineKind.CHARGEBACK, d.dispute_id, -d.amount, d.order_id)


def _reversal(d: DisputeFact) -> SettlementLine:
    return _line(LineKind.CHARGEBACK_REVERSAL, d.dispute_id, d.amount, d.order_id)


disputes_st = st.lists(
    st.tuples(st.integers(1, 10**7), st.sampled_from(list(DisputeStatus))), min_size=1, max_size=8
)


def _facts(ds: list[DisputeFact], **kw) -> LedgerFacts:
    return LedgerFacts({}, disputes={d.dispute_id: d for d in ds}, fee_bps=290, **kw)


def _file_of(ds: list[DisputeFact]) -> list[SettlementLine]:
    lines = [_withdrawal(d) for d in ds]
    lines += [_reversal(d) for d in ds if d.status is DisputeStatus.WON]
    return lines


@given(disputes_st)
def test_a_file_equal_to_the_disputes_matches_line_for_line(spec) -> None:
    ds = [_dispute(i, m, s) for i, (m, s) in enumerate(spec)]
    lines = _file_of(ds)
    matching = match(_settlement(lines), _facts(ds))
    assert [i.klass for i in matching.items] == [ItemClass.MATCHED] * len(lines)
    assert all(i.action is Action.POST_SETTLEMENT for i in matching.items)
    assert matching.clean


@given(disputes_st, st.data())
def test_one_difference_gives_exactly_its_item(spec, data) -> None:
    ds = [_dispute(i, m, s) for i, (m, s) in enumerate(spec)]
    lines = _file_of(ds)
    at = data.draw(st.integers(0, len(lines) - 1))
    line = lines[at]
    fault = data.draw(st.sampled_from(["amount", "currency", "fee", "duplicated", "unknown"]))
    if fault == "amount":
        gross = Money(line.gross.minor + (1 if line.gross.minor > 0 else -1), "EUR")
        lines[at] = attrs.evolve(line, gross=gross, net=gross)
        want = (ItemClass.MANUAL_REVIEW, Reason.AMOUNT_DIFFERS)
    elif fault == "currency":
        gross = Money(line.gross.minor, "USD")
        lines[at] = attrs.evolve(line, gross=gross, fee=Money.zero("USD"), net=gross)
        want = (ItemClass.MANUAL_REVIEW, Reason.CURRENCY_DIFFERS)
    elif fault == "fee":
        fee = Money(1, "EUR")
        lines[at] = attrs.evolve(line, fee=fee, net=line.gross - fee)
        want = (ItemClass.MANUAL_REVIEW, Reason.FEE_DIFFERS)
    elif fault == "duplicated":
        lines.insert(at + 1, attrs.evolve(line, psp_reference="txn_copy"))
        want = (ItemClass.INVESTIGATE, Reason.DUPLICATE_REFERENCE)
    else:
        lines[at] = attrs.evolve(line, reference="dp_foreign", order_reference="ord_foreign")
        want = (ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE)
    matching = match(_settlement(lines), _facts(ds))
    odd = [i for i in matching.items if i.klass is not ItemClass.MATCHED]
    assert [(i.klass, i.reason) for i in odd] == [want]
    assert odd[0].reference == lines[at].reference or fault == "duplicated"


def test_a_reversal_of_an_open_dispute_is_repaired_and_of_a_lost_one_reviewed() -> None:
    open_, lost = _dispute(1, 500, DisputeStatus.OPEN), _dispute(2, 700, DisputeStatus.LOST)
    matching = match(_settlement([_reversal(open_), _reversal(lost)]), _facts([open_, lost]))
    got = [(i.klass, i.reason, i.action) for i in matching.items]
    assert got == [
        (ItemClass.AUTO_FIXED, Reason.DISPUTE_NOT_HEARD, Action.QUERY_DISPUTE),
        (ItemClass.MANUAL_REVIEW, Reason.REVERSED_BUT_LOST, Action.NONE),
    ]


def test_a_dispute_never_heard_of_is_repaired_only_on_a_captured_order_within_its_amount() -> None:
    order = Capture("ord_7", Money(1000, "EUR"), OrderStatus.SUCCESS)
    facts = LedgerFacts({"ord_7": order}, fee_bps=290)
    ok = _line(LineKind.CHARGEBACK, "dp_7", Money(-1000, "EUR"), "ord_7")
    too_big = _line(LineKind.CHARGEBACK, "dp_8", Money(-1001, "EUR"), "ord_7")
    stranger = _line(LineKind.CHARGEBACK, "dp_9", Money(-10, "EUR"), "ord_9")
    items = match(_settlement([ok, too_big, stranger]), facts).items
    assert [(i.klass, i.reason) for i in items] == [
        (ItemClass.AUTO_FIXED, Reason.DISPUTE_NOT_HEARD),
        (ItemClass.MANUAL_REVIEW, Reason.AMOUNT_DIFFERS),
        (ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE),
    ]


def test_settled_lines_and_missing_movements_are_flagged() -> None:
    d = attrs.evolve(_dispute(1, 500, DisputeStatus.WON), settled_by="recon_old")
    facts = _facts([d], expected=("dp_1:reversal",))
    items = match(_settlement([_withdrawal(d)]), facts).items
    assert [(i.klass, i.reason, i.reference) for i in items] == [
        (ItemClass.INVESTIGATE, Reason.ALREADY_SETTLED, "dp_1"),
        (ItemClass.INVESTIGATE, Reason.MISSING_FROM_FILE, "dp_1"),
    ]
    assert items[1].expected == Money(500, "EUR")


def test_dispute_postings_are_keyed_apart_and_move_psp_clearing_against_the_bank() -> None:
    d = _dispute(1, 500, DisputeStatus.WON)
    out, back = posting_of(_withdrawal(d)), posting_of(_reversal(d))
    assert out is not None and back is not None
    assert (out[1], back[1]) == ("dp_1", "dp_1:reversal")
    assert {(e.account, e.amount_minor) for e in out[2]} == {
        ("psp_clearing", 500),
        ("bank_cash", -500),
    }
    assert sum(e.amount_minor for e in back[2]) == 0
    assert settlement_key(LineKind.CHARGEBACK_REVERSAL, "dp_1") == "dp_1:reversal"


def _payout(n: int, minor: int, status: PayoutStatus) -> PayoutFact:
    return PayoutFact(f"pout_{n}", Money(minor, "EUR"), status)


def test_bank_payout_lines_match_by_payout_id() -> None:
    paid, returned = _payout(1, 900, PayoutStatus.PAID), _payout(2, 400, PayoutStatus.RETURNED)
    submitted, missing = _payout(3, 100, PayoutStatus.SUBMITTED), _payout(4, 50, PayoutStatus.PAID)
    failed = _payout(5, 70, PayoutStatus.FAILED)
    old = attrs.evolve(_payout(6, 10, PayoutStatus.PAID), settled_by="recon_old")
    bank = Format.CAMT053
    lines = [
        _line(LineKind.PAYOUT, "pout_1", Money(-900, "EUR"), source=bank),
        _line(LineKind.PAYOUT, "pout_2", Money(-400, "EUR"), source=bank),
        _line(LineKind.PAYOUT_REVERSAL, "pout_2", Money(400, "EUR"), source=bank),
        _line(LineKind.PAYOUT_REVERSAL, "pout_1", Money(900, "EUR"), source=bank),
        _line(LineKind.PAYOUT, "pout_3", Money(-100, "EUR"), source=bank),
        _line(LineKind.PAYOUT, "pout_5", Money(-70, "EUR"), source=bank),
        _line(LineKind.PAYOUT, "pout_6", Money(-10, "EUR"), source=bank),
        _line(LineKind.PAYOUT, "pout_9", Money(-1, "EUR"), source=bank),
        _line(LineKind.PAYOUT, "pout_1", Money(-901, "EUR"), source=bank),
    ]
    facts = LedgerFacts(
        {},
        expected=("pout_4",),
        payouts={p.payout_id: p for p in (paid, returned, submitted, missing, failed, old)},
    )
    items = match(_settlement(lines, bank), facts).items
    assert [(i.klass, i.reason, i.action, i.reference) for i in items] == [
        (ItemClass.MATCHED, Reason.AS_EXPECTED, Action.KEEP_MATCH, "pout_1"),
        (ItemClass.MATCHED, Reason.AS_EXPECTED, Action.KEEP_MATCH, "pout_2"),
        (ItemClass.MATCHED, Reason.AS_EXPECTED, Action.KEEP_MATCH, "pout_2"),
        (ItemClass.AUTO_FIXED, Reason.PAYOUT_NOT_HEARD, Action.QUERY_PAYOUT, "pout_1"),
        (ItemClass.AUTO_FIXED, Reason.PAYOUT_NOT_HEARD, Action.QUERY_PAYOUT, "pout_3"),
        (ItemClass.MANUAL_REVIEW, Reason.PAYOUT_NOT_PAID, Action.NONE, "pout_5"),
        (ItemClass.INVESTIGATE, Reason.ALREADY_SETTLED, Action.NONE, "pout_6"),
        (ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE, Action.NONE, "pout_9"),
        (ItemClass.INVESTIGATE, Reason.DUPLICATE_REFERENCE, Action.NONE, "pout_1"),
        (ItemClass.INVESTIGATE, Reason.MISSING_FROM_FILE, Action.NONE, "pout_4"),
    ]
    assert all(posting_of(line) is None for line in lines)


@given(disputes_st, st.sampled_from([Format.STRIPE, Format.ADYEN]))
def test_dispute_lines_round_trip_through_the_writers(spec, source) -> None:
    from engine.reconciliation import parse, write_adyen, write_stripe

    ds = [_dispute(i, m, s) for i, (m, s) in enumerate(spec)]
    lines = [attrs.evolve(line, source=source) for line in _file_of(ds)]
    data = write_adyen(lines) if source is Format.ADYEN else write_stripe(lines)
    back = parse(data).lines
    assert [(ln.kind, ln.reference, ln.order_reference, ln.gross, ln.fee) for ln in back] == [
        (ln.kind, ln.reference, ln.order_reference, ln.gross, ln.fee) for ln in lines
    ]
