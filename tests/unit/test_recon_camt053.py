"""camt.053 bank statements: every version, any namespace, and the statement's own arithmetic."""

from __future__ import annotations

import re

import pytest

from engine.money import Money
from engine.reconciliation import (
    Format,
    LineKind,
    ParseError,
    SettlementLine,
    StatementFacts,
    parse,
    write_camt053,
)
from engine.reconciliation.camt053 import SUPPORTED_VERSIONS


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


DAY_MS = 86_400_000
JAN_2_MS = 1_767_312_000_000  # 2026-01-02 00:00 UTC
LINES = [
    SettlementLine(
        Format.CAMT053, 1, LineKind.DEPOSIT, "po_1", "BANK-1", None,
        eur(9760), eur(0), eur(9760), None, JAN_2_MS, JAN_2_MS,
    ),
    SettlementLine(
        Format.CAMT053, 1, LineKind.PAYOUT, "pay_1", "BANK-2", None,
        eur(-5000), eur(0), eur(-5000), None, JAN_2_MS + 3_600_000, None,
    ),
    SettlementLine(
        Format.CAMT053, 1, LineKind.PAYOUT_REVERSAL, "pay_0", None, None,
        eur(1200), eur(0), eur(1200), None, JAN_2_MS, None,
    ),
]  # fmt: skip
FACTS = StatementFacts(
    "STMT-2026-01-02", "DE89370400440532013000", "EUR", eur(100_000), eur(105_960),
    JAN_2_MS + DAY_MS - 1000, 3,
)  # fmt: skip


def statement(version: str = "001.08") -> str:
    return write_camt053(FACTS, LINES, version=version).decode()


def refusal(text: str) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(text.encode(), Format.CAMT053)
    return caught.value


def line_of(text: str, fragment: str, nth: int = 0) -> int:
    """The line number of the nth occurrence of `fragment` in `text`."""
    at = [m.start() for m in re.finditer(re.escape(fragment), text)][nth]
    return text.count("\n", 0, at) + 1


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_version_reads_into_the_same_lines(version: str) -> None:
    settlement = parse(statement(version).encode())
    assert settlement.version == version
    assert settlement.statements == (FACTS,)
    assert [line.kind for line in settlement.lines] == [
        LineKind.DEPOSIT,
        LineKind.PAYOUT,
        LineKind.PAYOUT_REVERSAL,
    ]
    assert [line.reference for line in settlement.lines] == ["po_1", "pay_1", "pay_0"]
    assert [line.net for line in settlement.lines] == [eur(9760), eur(-5000), eur(1200)]
    assert settlement.lines[1].booked_at_ms == JAN_2_MS + 3_600_000
    assert settlement.lines[0].line_number == line_of(statement(version), "<Ntry>")


def test_namespace_and_prefix_do_not_matter() -> None:
    text = statement()
    bare = text.replace(' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"', "")
    prefixed = re.sub(r"<(/?)(\w+)", r"<\1c:\2", text).replace("xmlns=", "xmlns:c=")
    expected = parse(text.encode()).lines
    assert parse(bare.encode()).lines == expected
    assert parse(prefixed.encode()).lines == expected
    assert parse(bare.encode()).version is None


def test_bom_and_crlf_change_nothing() -> None:
    data = write_camt053(FACTS, LINES, newline="\r\n", bom=True)
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    assert parse(data).lines == parse(statement().encode()).lines


def test_a_closing_balance_that_does_not_add_up_is_refused_at_it() -> None:
    text = statement().replace(">1059.60<", ">1059.61<")
    error = refusal(text)
    assert error.line == line_of(text, "<Bal>", 1)
    assert "opening balance 1000.00 EUR + entries 59.60 EUR = 1059.60 EUR" in error.reason


def test_a_dropped_entry_is_refused_by_the_balance() -> None:
    text = statement()
    start = text.index("<Ntry>", text.index("<Ntry>") + 1)
    end = text.index("</Ntry>", start) + len("</Ntry>")
    error = refusal(text[:start] + text[end:])
    assert "but the closing balance is 1059.60 EUR" in error.reason


def test_an_entry_count_that_disagrees_is_refused_at_it() -> None:
    text = statement().replace("<NbOfNtries>3<", "<NbOfNtries>4<")
    error = refusal(text)
    assert error.line == line_of(text, "<NbOfNtries>")
    assert "says 4 but the entries give 3" in error.reason


def test_a_net_total_that_disagrees_is_refused() -> None:
    text = statement().replace("<Amt>59.60</Amt>", "<Amt>59.61</Amt>")
    assert "says a net of 59.61 EUR" in refusal(text).reason


def test_a_credit_turned_debit_is_refused() -> None:
    text = statement().replace(
        "<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>",
        "<CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>",
        1,
    )
    assert "closing balance" in refusal(text).reason


def test_a_pending_entry_is_refused() -> None:
    text = statement().replace("<Cd>BOOK</Cd>", "<Cd>PDNG</Cd>", 1)
    error = refusal(text)
    assert error.line == line_of(text, "PDNG") and "status 'PDNG'" in error.reason


def test_an_entry_in_another_currency_is_refused() -> None:
    text = statement().replace('<Amt Ccy="EUR">97.60', '<Amt Ccy="USD">97.60')
    error = refusal(text)
    assert error.line == line_of(text, 'Ccy="USD"') and "an entry in USD" in error.reason


def test_more_decimals_than_the_currency_has_are_refused() -> None:
    text = statement().replace(">97.60<", ">97.600<")
    error = refusal(text)
    assert error.line == line_of(text, ">97.600<") and "EUR allows 2" in error.reason


def test_a_missing_closing_balance_is_refused() -> None:
    text = statement().replace("<Cd>CLBD</Cd>", "<Cd>CLAV</Cd>")
    assert "lacks a closing balance" in refusal(text).reason


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (
            '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><Document>&a;</Document>',
            "refused XML feature",
        ),
        ('<?xml version="1.0" encoding="TF-8"?><Document/>', "unknown encoding"),
        ("<Document><BkToCstmrStmt></Document>", "mismatched tag"),
        ("<Document><BkToCstmrStmt/></Document>", "lacks <Stmt>"),
        ("<Other><BkToCstmrStmt/></Other>", "root element"),
    ],
)
def test_dangerous_or_broken_xml_is_refused_with_a_location(document: str, words: str) -> None:
    error = refusal(document)
    assert error.line == 1 and error.column >= 1 and words in error.reason


def test_deep_nesting_is_refused() -> None:
    text = "<Document>" + "<a>" * 100 + "</a>" * 100 + "</Document>"
    assert "nest deeper" in refusal(text).reason


def test_a_zero_decimal_currency_and_an_account_without_iban() -> None:
    jpy = [
        SettlementLine(
            Format.CAMT053, 1, LineKind.DEPOSIT, "po_9", None, None,
            Money(1500, "JPY"), Money(0, "JPY"), Money(1500, "JPY"), None, JAN_2_MS, None,
        )
    ]  # fmt: skip
    facts = StatementFacts(
        "S-JPY", "ACCT 0042", "JPY", Money(0, "JPY"), Money(1500, "JPY"), None, 1
    )
    text = write_camt053(facts, jpy, version="001.04").decode()
    assert "<Othr>" in text and '<Amt Ccy="JPY">1500</Amt>' in text
    assert parse(text.encode()).statements == (facts,)
    assert "JPY allows 0" in refusal(text.replace(">1500<", ">1500.0<", 1)).reason
