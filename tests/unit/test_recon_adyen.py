"""Adyen Settlement Details Reports: what is read, what is refused, and where."""

from __future__ import annotations

import pytest

from engine.money import Money
from engine.reconciliation import Format, LineKind, ParseError, parse

COLUMNS = [
    "Company Account",
    "Merchant Account",
    "Psp Reference",
    "Merchant Reference",
    "Payment Method",
    "Creation Date",
    "TimeZone",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Exchange Rate",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    "Commission (NC)",
    "Markup (NC)",
    "Scheme Fees (NC)",
    "Interchange (NC)",
    "Payment Method Variant",
    "Modification Merchant Reference",
    "Batch Number",
    "Reserved4",
]
HEADER = ",".join(COLUMNS)
SETTLED = (
    "Acme,AcmeShop,8815000000000001,ord_1,visa,2026-01-01 10:00:00,CET,Settled,"
    "8815000000000001,EUR,,100.00,1,EUR,,97.60,,0.40,0.30,1.70,visacredit,,12,"
)
REFUNDED = (
    "Acme,AcmeShop,8815000000000001,ord_1,visa,2026-01-01 12:00:00,CET,Refunded,"
    "8825000000000002,EUR,20.00,,1,EUR,20.12,,0.12,,,,visacredit,rf_1,12,"
)
CHARGEBACK = (
    "Acme,AcmeShop,8815000000000003,ord_2,mc,2026-01-01 13:00:00,CET,Chargeback,"
    "8835000000000004,EUR,50.00,,1,EUR,65.00,,15.00,,,,mccredit,,12,"
)
FEE = "Acme,AcmeShop,,,,2026-01-01 23:00:00,CET,Fee,,,,,,EUR,2.00,,,,,,,Monthly fee,12,"
PAYOUT = "Acme,AcmeShop,,,,2026-01-02 00:10:00,CET,MerchantPayout,,,,,,EUR,10.48,,,,,,,,12,"


def report(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def refusal(data: bytes) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(data, Format.ADYEN)
    return caught.value


def column(name: str) -> int:
    return COLUMNS.index(name) + 1


def test_record_types_become_canonical_lines() -> None:
    settlement = parse(report(SETTLED, REFUNDED, CHARGEBACK, FEE, PAYOUT))
    settled, refunded, chargeback, fee, payout = settlement.lines
    assert [line.kind for line in settlement.lines] == [
        LineKind.CAPTURE,
        LineKind.REFUND,
        LineKind.CHARGEBACK,
        LineKind.FEE,
        LineKind.PAYOUT,
    ]
    assert (settled.reference, settled.psp_reference) == ("ord_1", "8815000000000001")
    # the four fee columns add up: 0.40 + 0.30 + 1.70
    assert (settled.gross, settled.fee, settled.net) == (
        Money(10000, "EUR"),
        Money(240, "EUR"),
        Money(9760, "EUR"),
    )
    assert settled.booked_at_ms == 1_767_258_000_000  # 10:00 CET is 09:00 UTC
    assert (refunded.reference, refunded.order_reference, refunded.psp_reference) == (
        "rf_1",
        "ord_1",
        "8825000000000002",
    )
    assert refunded.net == Money(-2012, "EUR") and refunded.fee == Money(12, "EUR")
    assert chargeback.reference == "8835000000000004" and chargeback.order_reference == "ord_2"
    assert chargeback.net == Money(-6500, "EUR")
    assert fee.reference == "Monthly fee" and fee.gross == fee.net == Money(-200, "EUR")
    assert payout.reference == "12" and payout.net == Money(-1048, "EUR")
    assert settlement.batch == "12"
    assert settlement.totals[0].net == Money(0, "EUR")


def test_unknown_columns_are_ignored_and_order_does_not_matter() -> None:
    names = [*reversed(COLUMNS), "Acquirer Reference"]
    values = [*reversed(SETTLED.split(",")), "ACQ-1"]
    line = parse(report(",".join(values), header=",".join(names))).lines[0]
    assert line == parse(report(SETTLED)).lines[0]


def test_a_three_decimal_currency_with_bom_and_crlf() -> None:
    bhd = SETTLED.replace(
        "EUR,,100.00,1,EUR,,97.60,,0.40,0.30,1.70", "BHD,,10.500,1,BHD,,10.185,0.315,,,"
    )
    data = b"\xef\xbb\xbf" + report(bhd).replace(b"\n", b"\r\n")
    line = parse(data).lines[0]
    assert (line.gross, line.fee, line.net) == (
        Money(10500, "BHD"),
        Money(315, "BHD"),
        Money(10185, "BHD"),
    )


@pytest.mark.parametrize(
    ("row", "name", "words"),
    [
        (SETTLED.replace(",97.60,", ",97.61,"), "Net Credit (NC)", "is not gross"),
        (SETTLED.replace(",,100.00,", ",100.00,,"), "Gross Debit (GC)", "is a credit"),
        (SETTLED.replace(",,100.00,", ",1.00,100.00,"), "Gross Credit (GC)", "both"),
        (SETTLED.replace(",,100.00,", ",,-100.00,"), "Gross Credit (GC)", "not a sign"),
        (SETTLED.replace(",EUR,,97.60", ",USD,,97.60"), "Net Currency", "converted"),
        (SETTLED.replace(",Settled,", ",SentForSettle,"), "Type", "not a record type"),
        (SETTLED.replace(",ord_1,", ",,"), "Merchant Reference", "is empty"),
        (SETTLED.replace(",CET,", ",CST,"), "TimeZone", "can place"),
        (SETTLED.replace(",100.00,", ",100.001,"), "Gross Credit (GC)", "EUR allows 2"),
        (REFUNDED.replace(",Refunded,", ",Settled,"), "Gross Debit (GC)", "is a credit"),
        (FEE.replace(",,,,,,,Monthly", ",,1.00,,,,,Monthly"), "Commission (NC)", "only the net"),
        (PAYOUT.replace(",10.48,,", ",,10.48,"), "Net Credit (NC)", "is a debit"),
    ],
)
def test_a_row_that_changes_meaning_is_refused_at_its_column(
    row: str, name: str, words: str
) -> None:
    error = refusal(report(SETTLED.replace("ord_1", "ord_0").replace("0001", "0000"), row))
    assert (error.line, error.column) == (3, column(name)), error
    assert words in error.reason


def test_a_duplicated_movement_is_refused() -> None:
    error = refusal(report(SETTLED, REFUNDED, SETTLED))
    assert error.line == 4 and "already appeared on line 2" in error.reason


def test_a_missing_required_column_is_refused_by_name() -> None:
    names = [name for name in COLUMNS if name != "Batch Number"]
    values = SETTLED.split(",")
    del values[COLUMNS.index("Batch Number")]
    error = refusal(report(",".join(values), header=",".join(names)))
    assert error.line == 1 and "lacks required column 'Batch Number'" in error.reason


def test_time_zone_offsets_are_read() -> None:
    plus = parse(report(SETTLED.replace(",CET,", ",+05:30,"))).lines[0]
    utc = parse(report(SETTLED.replace(",CET,", ",UTC,"))).lines[0]
    assert utc.booked_at_ms - plus.booked_at_ms == 330 * 60_000
