"""Stripe itemized reports: what is read, what real files look like, what is refused and where."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.money import Money
from engine.reconciliation import Format, LineKind, ParseError, parse
from engine.reconciliation.stripe import parse_stripe
from engine.reconciliation.text import one_edit_apart

HEADER = (
    "balance_transaction_id,created_utc,created,available_on_utc,currency,gross,fee,net,"
    "reporting_category,source_id,description,automatic_payout_id,payment_metadata[order_id]"
)
CHARGE = (
    "txn_1,2026-01-01 10:00:00,2026-01-01 11:00:00,2026-01-03 00:00:00,usd,25,1.03,23.97,"
    "charge,ch_1,Order 1,po_1,ord_1"
)
REFUND = (
    "txn_2,2026-01-01 12:30:05,2026-01-01 13:30:05,2026-01-03 00:00:00,usd,-0.5,0,-0.5,"
    "refund,re_1,,po_1,ord_1"
)
DISPUTE = "txn_3,2026-01-01 13:00:00,,2026-01-03 00:00:00,usd,-10,15,-25,dispute,dp_1,,po_1,ord_2"


def report(*rows: str, header: str = HEADER, newline: str = "\n") -> bytes:
    return (newline.join([header, *rows]) + newline).encode()


def refusal(data: bytes) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(data, Format.STRIPE)
    return caught.value


def test_rows_become_canonical_lines_with_amounts_as_stripe_writes_them() -> None:
    settlement = parse(report(CHARGE, REFUND, DISPUTE))
    charge, refund, dispute = settlement.lines
    assert charge.kind is LineKind.CAPTURE
    assert (charge.reference, charge.order_reference, charge.psp_reference) == (
        "ord_1",
        "ord_1",
        "txn_1",
    )
    assert (charge.gross, charge.fee, charge.net) == (
        Money(2500, "USD"),
        Money(103, "USD"),
        Money(2397, "USD"),
    )
    assert charge.booked_at_ms == 1_767_261_600_000  # 2026-01-01 10:00:00 UTC
    assert charge.value_at_ms == 1_767_398_400_000
    assert charge.batch == "po_1" and settlement.batch == "po_1"
    assert refund.kind is LineKind.REFUND and refund.reference == "re_1"
    assert refund.gross == Money(-50, "USD") and refund.order_reference == "ord_1"
    assert dispute.kind is LineKind.CHARGEBACK and dispute.reference == "dp_1"
    assert dispute.net == Money(-2500, "USD")
    (total,) = settlement.totals
    assert (total.count, total.gross, total.fee, total.net) == (
        3,
        Money(1450, "USD"),
        Money(1603, "USD"),
        Money(-153, "USD"),
    )


def test_bom_crlf_quoting_and_no_final_newline_change_nothing() -> None:
    plain = parse(report(CHARGE, REFUND))
    quoted_charge = CHARGE.replace("Order 1", '"Order 1, blue ""XL""\r\nshirt"')
    real = b"\xef\xbb\xbf" + report(quoted_charge, REFUND, newline="\r\n").removesuffix(b"\r\n")
    assert parse(real).lines[0] == plain.lines[0]
    # the quoted line break makes the refund start on line 4
    assert parse(real).lines[1].line_number == 4


def test_columns_are_found_by_name_in_any_order_and_extra_ones_ignored() -> None:
    names = HEADER.split(",")
    values = CHARGE.split(",")
    order = list(reversed(range(len(names))))
    shuffled = report(
        ",".join(values[i] for i in order) + ",extra",
        header=",".join(names[i].upper() for i in order) + ",tax_amount",
    )
    assert parse(shuffled).lines[0].gross == parse(report(CHARGE)).lines[0].gross


def test_zero_and_three_decimal_currencies() -> None:
    jpy = CHARGE.replace("usd,25,1.03,23.97", "jpy,1500,73,1427")
    bhd = CHARGE.replace("usd,25,1.03,23.97", "bhd,10.5,0.315,10.185")
    assert parse(report(jpy)).lines[0].net == Money(1427, "JPY")
    assert parse(report(bhd)).lines[0].fee == Money(315, "BHD")


@pytest.mark.parametrize(
    ("row", "column", "words"),
    [
        (CHARGE.replace("23.97", "24.00"), 8, "is not net"),
        (CHARGE.replace(",25,", ",25.001,"), 6, "has 3 decimals but USD allows 2"),
        (CHARGE.replace("usd,25,1.03,23.97", "jpy,25.5,0,25.5"), 6, "JPY allows 0"),
        (CHARGE.replace("usd", "zzz"), 5, "not an ISO 4217 currency"),
        (CHARGE.replace(",25,", ",2.5e1,"), 6, "exponent"),
        (CHARGE.replace(",charge,", ",transfer,"), 9, "not a category"),
        (CHARGE.replace(",ord_1", ","), 13, "must carry the order id"),
        (CHARGE.replace("2026-01-01 10:00:00", "2026-02-30 10:00:00"), 2, "not a valid date"),
        (CHARGE.replace("2026-01-01 10:00:00", "01/01/2026 10:00"), 2, "YYYY-MM-DD HH:MM:SS"),
        (CHARGE + ",surplus", 14, "row has 14 fields but the header has 13"),
        # a refund relabelled as a charge (or the reverse) breaks the category's sign
        (REFUND.replace(",refund,", ",charge,").replace("txn_2", "txn_9"), 6, "positive gross"),
        (CHARGE.replace(",charge,", ",refund,"), 6, "must have a negative gross"),
        (CHARGE.replace(",charge,", ",dispute,"), 6, "must have a negative gross"),
    ],
)
def test_a_row_that_changes_meaning_is_refused_at_its_line_and_column(
    row: str, column: int, words: str
) -> None:
    error = refusal(report(REFUND, row))
    assert (error.line, error.column) == (3, column)
    assert words in error.reason


def test_a_duplicated_balance_transaction_is_refused_even_with_totals_recomputed() -> None:
    error = refusal(report(CHARGE, REFUND, CHARGE))
    assert (error.line, error.column) == (4, 1)
    assert "'txn_1' already appeared on line 2" in error.reason


def test_a_missing_required_column_is_refused_by_name() -> None:
    header = HEADER.replace(",fee,", ",fees,")
    error = refusal(report(CHARGE, header=header))
    assert error.line == 1 and "lacks required column 'fee'" in error.reason


def test_bytes_that_are_not_utf8_are_refused_at_their_line() -> None:
    data = report(CHARGE, REFUND).replace(b"re_1", b"re_\xff1")
    error = refusal(data)
    assert (error.line, error.column) == (3, REFUND.index("re_1") + 4)
    assert "not UTF-8" in error.reason


def test_broken_quoting_is_refused() -> None:
    error = refusal(report(CHARGE.replace("Order 1", '"Order" 1'), REFUND))
    assert error.line == 2 and "malformed CSV" in error.reason


def test_a_header_alone_is_an_empty_settlement() -> None:
    settlement = parse_stripe(report())
    assert settlement.lines == () and settlement.totals == () and settlement.batch is None


def test_amounts_whose_difference_is_not_money_are_refused_not_raised() -> None:
    # each amount is within the limit, gross - fee is not: a located refusal, not a crash
    row = CHARGE.replace("usd,25,1.03,23.97", "usd,9999999999999.99,-9999999999999.99,0")
    error = refusal(report(row))
    assert (error.line, error.column) == (2, 8) and "is not net" in error.reason


@pytest.mark.parametrize(
    "damaged",
    ["automatic_payout_iX", "automatic_payoutid", "available_on_utcc", "payment_metadata[orderid]"],
)
def test_a_damaged_optional_column_name_is_refused_not_read_as_absent(damaged: str) -> None:
    names = HEADER.split(",")
    wanted = next(name for name in names if one_edit_apart(name, damaged))
    error = refusal(report(CHARGE, header=HEADER.replace(wanted, damaged)))
    assert (error.line, error.column) == (1, names.index(wanted) + 1)
    assert f"looks like a damaged {wanted!r}" in error.reason


def test_an_optional_column_may_be_absent() -> None:
    names = HEADER.split(",")
    keep = [
        i for i, name in enumerate(names) if name not in ("available_on_utc", "automatic_payout_id")
    ]
    values = CHARGE.split(",")
    line = parse(
        report(",".join(values[i] for i in keep), header=",".join(names[i] for i in keep))
    ).lines[0]
    assert line.batch is None and line.value_at_ms is None and line.net == Money(2397, "USD")


@given(
    st.text(max_size=12),
    st.integers(0, 12),
    st.characters(),
    st.sampled_from(["replace", "insert", "delete"]),
)
def testone_edit_apart_holds_for_every_single_edit(
    text: str, at: int, char: str, edit: str
) -> None:
    at = min(at, len(text))
    if edit == "replace" and at < len(text):
        edited = text[:at] + char + text[at + 1 :]
    elif edit == "insert":
        edited = text[:at] + char + text[at:]
    else:
        edited = text[:at] + text[at + 1 :]
    assert one_edit_apart(text, edited) == (edited != text)
    assert one_edit_apart(edited, text) == (edited != text)
