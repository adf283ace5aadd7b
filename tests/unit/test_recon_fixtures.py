"""The committed fixtures (tests/unit/data/recon/) read as their column specs say, and detect().

Each fixture's expected lines are written out here by hand, as (kind, reference, gross, fee,
net) in minor units, so a reader that drifted from the format would fail even if the writer
drifted the same way.
"""

from __future__ import annotations

import importlib.util
import pickle
import re
from pathlib import Path
from types import ModuleType

import pytest

from engine.money import Money
from engine.reconciliation import Format, ParseError, UnsupportedFormat, detect, parse

DATA = Path(__file__).resolve().parent / "data"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_recon_fixtures", DATA / "make_recon_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STRIPE_USD = [
    ("capture", "ord_01", 2500, 103, 2397),
    ("capture", "ord_02", 10000, 320, 9680),
    ("refund", "re_01", -50, 0, -50),
    ("chargeback", "dp_01", -10000, 1500, -11500),
    ("chargeback_reversal", "dp_01", 10000, -1500, 11500),
    ("fee", "Radar fees", -5, 0, -5),
    ("payout", "po_0", -4000, 0, -4000),
]
ADYEN_EUR = [
    ("capture", "ord_20", 10000, 240, 9760),
    ("refund", "rf_20", -2000, 12, -2012),
    ("chargeback", "8835000000000022", -5000, 1500, -6500),
    ("chargeback_reversal", "8845000000000023", 5000, 0, 5000),
    ("fee", "Monthly fee", -200, 0, -200),
    ("payout", "41", -6548, 0, -6548),
]
CAMT_EUR = [
    ("deposit", "41", 6548, 0, 6548),
    ("payout", "pay_01", -3000, 0, -3000),
    ("payout", "pay_02", -2500, 0, -2500),
    ("payout_reversal", "pay_02", 2500, 0, 2500),
]
EXPECTED = {
    "stripe_usd.csv": (Format.STRIPE, "USD", STRIPE_USD),
    "stripe_usd_bom_crlf.csv": (Format.STRIPE, "USD", STRIPE_USD),
    "stripe_jpy.csv": (
        Format.STRIPE,
        "JPY",
        [("capture", "ord_10", 1500, 73, 1427), ("refund", "re_10", -500, 0, -500)],
    ),
    "adyen_eur.csv": (Format.ADYEN, "EUR", ADYEN_EUR),
    "adyen_bhd_bom_crlf.csv": (
        Format.ADYEN,
        "BHD",
        [("capture", "ord_30", 10500, 315, 10185), ("refund", "rf_30", -1250, 0, -1250)],
    ),
    "camt053_eur_v08.xml": (Format.CAMT053, "EUR", CAMT_EUR),
    "camt053_eur_v04_bom_crlf.xml": (Format.CAMT053, "EUR", CAMT_EUR),
    "camt053_jpy_v02.xml": (
        Format.CAMT053,
        "JPY",
        [("deposit", "po_2", 927, 0, 927), ("payout", "pay_10", -900, 0, -900)],
    ),
}


def test_the_committed_fixtures_are_what_the_generator_writes() -> None:
    written = generator().fixtures()
    assert set(written) == set(EXPECTED)
    for name, content in written.items():
        assert (DATA / "recon" / name).read_bytes() == content, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_reads_as_its_spec_says(name: str) -> None:
    data = (DATA / "recon" / name).read_bytes()
    fmt, currency, rows = EXPECTED[name]
    assert detect(data) is fmt
    settlement = parse(data)
    got = [
        (line.kind.value, line.reference, line.gross.minor, line.fee.minor, line.net.minor)
        for line in settlement.lines
    ]
    assert got == rows
    assert {line.currency for line in settlement.lines} == {currency}
    (total,) = settlement.totals
    assert total.net == Money(sum(row[4] for row in rows), currency)


def test_the_bom_and_crlf_variants_carry_the_same_lines() -> None:
    for plain, variant in [
        ("stripe_usd.csv", "stripe_usd_bom_crlf.csv"),
        ("camt053_eur_v08.xml", "camt053_eur_v04_bom_crlf.xml"),
    ]:
        raw = (DATA / "recon" / variant).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
        lines = [(line.kind, line.reference, line.net) for line in parse(raw).lines]
        assert lines == [
            (line.kind, line.reference, line.net)
            for line in parse((DATA / "recon" / plain).read_bytes()).lines
        ]
    assert not (DATA / "recon" / "stripe_usd_bom_crlf.csv").read_bytes().endswith(b"\n")


def test_the_statement_fixture_states_its_balances() -> None:
    (facts,) = parse((DATA / "recon" / "camt053_eur_v08.xml").read_bytes()).statements
    assert (facts.opening, facts.closing, facts.entries_count) == (
        Money(100_000, "EUR"),
        Money(103_548, "EUR"),
        4,
    )
    assert facts.account == "DE89370400440532013000"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \r\n",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"HEADER,f1,2026-01-01,USD,1\nCOLUMNS,psp_reference,merchant_reference\n",
        b"date,amount,description\n2026-01-01,12.00,coffee\n",
        b'<?xml version="1.0"?><Document><BkToCstmrAcctRpt/></Document>',
        b"<html><body>not a statement</body></html>",
        b'{"object": "list", "data": []}',
    ],
)
def test_a_file_of_no_known_format_is_unsupported_not_damaged(data: bytes) -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        detect(data)
    assert caught.value.reason.startswith("unsupported format")
    with pytest.raises(UnsupportedFormat):
        parse(data)


def test_the_examples_in_the_docs_read_as_the_docs_say() -> None:
    doc = (DATA.parents[2] / "docs" / "reconciliation.md").read_text()
    blocks = re.findall(r"```(?:csv|xml)\n(.*?)```", doc, re.S)
    stripe, adyen, camt, disputes, example = (parse(block.encode()) for block in blocks)
    # The dispute example: a withdrawal and reversal of dp_1, a withdrawal of dp_2.
    assert [
        (ln.kind.value, ln.reference, ln.order_reference, ln.gross.minor) for ln in disputes.lines
    ] == [
        ("chargeback", "dp_1", "ord_1", -5000),
        ("chargeback_reversal", "dp_1", "ord_1", 5000),
        ("chargeback", "dp_2", "ord_2", -2000),
    ]
    assert (stripe.source, adyen.source, camt.source) == (
        Format.STRIPE,
        Format.ADYEN,
        Format.CAMT053,
    )
    first = stripe.lines[0]
    assert (first.kind.value, first.reference, first.gross.minor, first.fee.minor) == (
        "capture",
        "ord_01",
        2500,
        103,
    )
    assert [(line.reference, line.net.minor) for line in adyen.lines[:2]] == [
        ("ord_1", 9760),
        ("rf_1", -2012),
    ]
    assert adyen.lines[0].booked_at_ms == 1_767_258_000_000  # 09:00 UTC
    (deposit,) = camt.lines
    assert (deposit.kind.value, deposit.reference, deposit.net.minor) == ("deposit", "41", 6548)
    # The end-to-end example: its USD payout's net is the deposit the text says (115.05).
    usd = [line for line in example.lines if line.batch == "po_20260101_usd"]
    assert [(line.reference, line.fee.minor) for line in example.lines] == [
        ("ord_1", 320),
        ("ord_2", 141),
        ("re_1", 0),
        ("ord_3", 175),
    ]
    assert sum(line.net.minor for line in usd) == 11_505


def test_refusals_survive_pickling_with_their_location() -> None:
    for error in (ParseError(3, 7, "net: is empty"), UnsupportedFormat("the file is empty")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.line, copy.column, copy.reason) == (error.line, error.column, error.reason)
