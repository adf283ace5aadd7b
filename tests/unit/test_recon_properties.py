"""Properties every settlement parser holds (issue 12's acceptance).

- Any byte string either parses or is refused with a located ParseError: never another
  exception, whatever the format asked for (random bytes, and valid files damaged at random).
- writer -> parser gives the same lines back, for each format, with or without a byte order
  mark, with LF or CRLF line ends, and without a final newline.
- detect() names the format of every file a writer produced.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.errors import InvalidInput
from engine.money import Money, format_amount, parse_amount
from engine.reconciliation import (
    Format,
    ParseError,
    Settlement,
    StatementFacts,
    detect,
    parse,
    write_adyen,
    write_camt053,
    write_stripe,
)
from engine.reconciliation.adyen import WRITTEN_COLUMNS as WRITTEN_ADYEN
from engine.reconciliation.camt053 import SUPPORTED_VERSIONS
from engine.reconciliation.stripe import WRITTEN_COLUMNS as WRITTEN_STRIPE
from tests.recon_strategies import (
    ADYEN_PAYMENT_SIGNS,
    CURRENCIES,
    adyen_lines,
    any_lines,
    camt_lines,
    numbered,
    statements,
    stripe_lines,
    unnumbered,
)

stripe_files = st.lists(stripe_lines(), max_size=12, unique_by=lambda line: line.psp_reference)
adyen_files = st.lists(
    adyen_lines(),
    max_size=12,
    unique_by=lambda line: (line.kind, line.psp_reference, line.reference),
)
layouts = st.fixed_dictionaries({"newline": st.sampled_from(["\n", "\r\n"]), "bom": st.booleans()})
formats = st.none() | st.sampled_from(list(Format))
PAYMENT_KINDS = set(ADYEN_PAYMENT_SIGNS)


def parse_or_refuse(data: bytes, format: Format | None) -> Settlement | ParseError:
    """The one contract of a parser: a Settlement, or a ParseError that says where."""
    try:
        return parse(data, format)
    except ParseError as exc:
        assert exc.line >= 1 and exc.column >= 1 and exc.reason, exc
        assert str(exc).startswith(f"line {exc.line}, column {exc.column}: ")
        return exc


def check_settlement(settlement: Settlement) -> None:
    for line in settlement.lines:
        assert line.gross - line.fee == line.net
    assert sum(total.count for total in settlement.totals) == len(settlement.lines)


@settings(max_examples=500)
@given(st.binary(max_size=3000), formats)
def test_any_bytes_parse_or_are_refused_with_a_location(data: bytes, format: Format | None) -> None:
    outcome = parse_or_refuse(data, format)
    if isinstance(outcome, Settlement):
        check_settlement(outcome)


@st.composite
def valid_files(draw: st.DrawFn) -> bytes:
    which = draw(st.sampled_from(list(Format)))
    layout = draw(layouts)
    if which is Format.STRIPE:
        return write_stripe(draw(stripe_files), **layout)
    if which is Format.ADYEN:
        return write_adyen(draw(adyen_files), **layout)
    facts, lines = draw(statements())
    version = draw(st.sampled_from(SUPPORTED_VERSIONS))
    return write_camt053(facts, lines, version=version, **layout)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid file with a few bytes replaced, inserted, deleted, or a line duplicated."""
    data = bytearray(draw(valid_files()))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "insert", "delete", "duplicate_line"]))
        at = draw(st.integers(0, len(data)))
        if action == "replace" and at < len(data):
            data[at] = draw(st.sampled_from(b',"\r\n<>&;:-.0123456789 aZ\x00\xff\xc3'))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            data[end:end] = data[start:end]
    return bytes(data)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(damaged(), formats)
def test_damaged_files_parse_or_are_refused_with_a_location(
    data: bytes, format: Format | None
) -> None:
    outcome = parse_or_refuse(data, format)
    if isinstance(outcome, Settlement):
        check_settlement(outcome)


@given(stripe_files, layouts, st.booleans(), st.booleans())
def test_stripe_writer_round_trips(lines, layout, trim, final_newline) -> None:  # type: ignore[no-untyped-def]
    data = write_stripe(lines, trim_decimals=trim, **layout)
    if not final_newline:
        data = data.removesuffix(layout["newline"].encode())
    assert detect(data) is Format.STRIPE
    settlement = parse(data)
    assert list(settlement.lines) == numbered(lines)
    assert settlement.source is Format.STRIPE


@given(adyen_files, layouts, st.booleans())
def test_adyen_writer_round_trips(lines, layout, final_newline) -> None:  # type: ignore[no-untyped-def]
    data = write_adyen(lines, **layout)
    if not final_newline:
        data = data.removesuffix(layout["newline"].encode())
    assert detect(data) is Format.ADYEN
    assert list(parse(data).lines) == numbered(lines)


@given(statements(), st.sampled_from(SUPPORTED_VERSIONS), layouts)
def test_camt053_writer_round_trips(statement, version, layout) -> None:  # type: ignore[no-untyped-def]
    facts, lines = statement
    data = write_camt053(facts, lines, version=version, **layout)
    assert detect(data) is Format.CAMT053
    settlement = parse(data)
    assert unnumbered(settlement.lines) == unnumbered(lines)
    assert settlement.statements == (facts,)
    assert settlement.version == version


@given(stripe_files)
def test_totals_are_the_sums_of_the_lines(lines) -> None:  # type: ignore[no-untyped-def]
    settlement = parse(write_stripe(lines))
    for total in settlement.totals:
        mine = [line for line in lines if line.currency == total.currency]
        assert total.count == len(mine)
        assert total.gross.minor == sum(line.gross.minor for line in mine)
        assert total.fee.minor == sum(line.fee.minor for line in mine)
        assert total.net.minor == sum(line.net.minor for line in mine)
    assert {total.currency for total in settlement.totals} == {line.currency for line in lines}


def _bump(text: str, currency: str, delta: int) -> str:
    """`text` (a major-unit amount) moved by `delta` minor units."""
    amount = parse_amount(text, currency, allow_negative=True, allow_zero=True)
    return format_amount(amount.minor + delta, currency)


def _rewrite(data: bytes, row: int, column: str, change: Callable[[list[str]], str]) -> bytes:
    records = list(csv.reader(io.StringIO(data.decode(), newline="")))
    index = records[0].index(column)
    records[row][index] = change(records[row])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records)
    return out.getvalue().encode()


@given(
    st.lists(stripe_lines(), min_size=1, max_size=6, unique_by=lambda line: line.psp_reference),
    st.data(),
)
def test_a_stripe_amount_moved_by_one_minor_unit_is_refused_at_its_row(lines, data) -> None:  # type: ignore[no-untyped-def]
    row = data.draw(st.integers(1, len(lines)))
    column = data.draw(st.sampled_from(["gross", "fee", "net"]))
    delta = data.draw(st.sampled_from([-1, 1]))
    currency = lines[row - 1].currency
    tampered = _rewrite(
        write_stripe(lines),
        row,
        column,
        lambda fields: _bump(fields[WRITTEN_STRIPE.index(column)], currency, delta),
    )
    with pytest.raises(ParseError) as caught:
        parse(tampered)
    assert caught.value.line == row + 1


@given(
    adyen_files.filter(lambda lines: any(line.kind in PAYMENT_KINDS for line in lines)), st.data()
)
def test_an_adyen_fee_moved_by_one_minor_unit_is_refused_at_its_row(lines, data) -> None:  # type: ignore[no-untyped-def]
    payments = [i for i, line in enumerate(lines, start=1) if line.kind in PAYMENT_KINDS]
    row = data.draw(st.sampled_from(payments))
    delta = data.draw(st.sampled_from([-1, 1]))
    currency = lines[row - 1].currency
    tampered = _rewrite(
        write_adyen(lines),
        row,
        "Commission (NC)",
        lambda fields: _bump(fields[WRITTEN_ADYEN.index("Commission (NC)")], currency, delta),
    )
    with pytest.raises(ParseError) as caught:
        parse(tampered)
    assert caught.value.line == row + 1


@given(statements().filter(lambda statement: bool(statement[1])), st.data())
def test_a_statement_entry_moved_by_one_minor_unit_is_refused(statement, data) -> None:  # type: ignore[no-untyped-def]
    facts, lines = statement
    text = write_camt053(facts, lines).decode()
    entry = data.draw(st.integers(0, len(lines) - 1))
    start = [m.start() for m in re.finditer("<Ntry>", text)][entry]
    amount = re.compile(r'(<Amt Ccy="[A-Z]{3}">)([0-9.]+)(</Amt>)').search(text, start)
    assert amount is not None
    bumped = _bump(amount[2], facts.currency, 1)
    tampered = text[: amount.start(2)] + bumped + text[amount.end(2) :]
    with pytest.raises(ParseError):
        parse(tampered.encode())


@given(st.lists(st.one_of(any_lines(), stripe_lines(), adyen_lines()), max_size=6))
def test_a_csv_writer_refuses_what_its_reader_would_not_give_back(lines) -> None:  # type: ignore[no-untyped-def]
    for source, write in ((Format.STRIPE, write_stripe), (Format.ADYEN, write_adyen)):
        mine = [attrs.evolve(line, source=source) for line in lines]
        try:
            data = write(mine)
        except InvalidInput:
            event(f"{source} writer refused")
            continue
        event(f"{source} writer wrote")
        assert list(parse(data, source).lines) == numbered(mine)


statement_lines = st.sampled_from(CURRENCIES).flatmap(
    lambda code: st.tuples(
        st.just(code), st.lists(st.one_of(any_lines(code), camt_lines(code)), max_size=6)
    )
)


@given(statement_lines, st.integers(-(10**9), 10**9))
def test_the_statement_writer_refuses_what_its_reader_would_not_give_back(
    code_and_lines, opening
) -> None:  # type: ignore[no-untyped-def]
    code, lines = code_and_lines
    mine = [attrs.evolve(line, source=Format.CAMT053) for line in lines]
    closing = opening + sum(line.net.minor for line in mine)
    facts = StatementFacts(
        "S-1", "ACCT-1", code, Money(opening, code), Money(closing, code), None, len(mine)
    )
    try:
        data = write_camt053(facts, mine)
    except InvalidInput:
        event("camt053 writer refused")
        return
    event("camt053 writer wrote")
    settlement = parse(data, Format.CAMT053)
    assert unnumbered(settlement.lines) == unnumbered(mine)
    assert settlement.statements == (facts,)
