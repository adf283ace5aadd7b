"""The fake bank: statements continue from day to day, round-trip through the parser, and the
settlement-file corruption hooks work on them too."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.money import Money
from simulator.bank import (
    Direction,
    FakeBank,
    Statement,
    StatementProblem,
    StatementRejected,
    UnknownAccount,
    parse_statement,
    render_statement,
)
from simulator.corruption import Corruption, CorruptionPlan
from simulator.statement_text import DAY_MS, day_start_ms

FIRST = dt.date(2026, 1, 1)
START_MS = day_start_ms(FIRST)
DAYS = 4

postings = st.lists(
    st.tuples(
        st.integers(0, DAYS * DAY_MS - 1),
        st.sampled_from(list(Direction)),
        st.integers(1, 10**9),
    ),
    max_size=40,
)


def _bank(opening_minor: int, moves: list[tuple[int, Direction, int]]) -> FakeBank:
    bank = FakeBank()
    bank.open_account("platform_usd", "USD", opening_minor)
    for at, direction, minor in sorted(moves, key=lambda m: m[0]):
        bank.post(
            "platform_usd",
            direction,
            Money(minor, "USD"),
            at_ms=START_MS + at,
            counterparty="fakepsp",
            remittance="settlement 2026-01-01",
        )
    return bank


@given(st.integers(-(10**9), 10**9), postings)
def test_opening_plus_movements_is_closing_and_each_day_opens_at_the_last_close(
    opening: int, moves: list[tuple[int, Direction, int]]
) -> None:
    bank = _bank(opening, moves)
    previous_close = opening
    for day in range(DAYS):
        date = FIRST + dt.timedelta(days=day)
        statement = bank.statement("platform_usd", date)
        assert statement.opening_minor == previous_close
        moved = sum(e.signed_minor for e in statement.entries)
        assert statement.closing_minor == statement.opening_minor + moved
        parsed = parse_statement(render_statement(statement))
        assert parsed == statement
        previous_close = statement.closing_minor
    assert previous_close == bank.balance_minor("platform_usd")


def test_the_statement_reads_like_a_bank_statement() -> None:
    bank = _bank(
        50_000, [(3_600_000, Direction.CREDIT, 9_680), (7_200_000, Direction.DEBIT, 20_000)]
    )
    assert render_statement(bank.statement("platform_usd", FIRST)).decode() == (
        "STATEMENT,platform_usd-20260101,platform_usd,USD,2026-01-01,1\n"
        "OPENING,500.00\n"
        "ENTRY,bnk_0000000001,2026-01-01T01:00:00.000Z,CRDT,96.80,fakepsp,settlement 2026-01-01\n"
        "ENTRY,bnk_0000000002,2026-01-01T02:00:00.000Z,DBIT,200.00,fakepsp,settlement 2026-01-01\n"
        "CLOSING,396.80,2\n"
    )


def test_an_unknown_account_is_refused() -> None:
    with pytest.raises(UnknownAccount):
        FakeBank().statement("nope", FIRST)


def _statement() -> Statement:
    moves = [
        (i * 60_000, Direction.CREDIT if i % 3 else Direction.DEBIT, 1000 + i) for i in range(20)
    ]
    return _bank(1_000_000, moves).statement("platform_usd", FIRST)


EXPECTED = {
    Corruption.TRAILER_MISSING: StatementProblem.MISSING_CLOSING,
    Corruption.TRUNCATED: StatementProblem.TRUNCATED,
    Corruption.GARBAGE: StatementProblem.GARBAGE_BYTES,
    Corruption.UNKNOWN_ROW: StatementProblem.UNKNOWN_ROW_TYPE,
}


@pytest.mark.parametrize("corruption", list(EXPECTED))
@given(seed=st.integers(0, 2**32))
def test_transport_faults_on_a_statement_are_refused(corruption: Corruption, seed: int) -> None:
    bank = _bank(0, [(i * 1000, Direction.CREDIT, 5 + i) for i in range(10)])
    plan = CorruptionPlan(**{f"{corruption.value}_p": 1.0})
    clean, delivered, applied = bank.statement_file(
        "platform_usd", FIRST, random.Random(seed), plan
    )
    assert [a.corruption for a in applied] == [corruption]
    assert isinstance(parse_statement(clean), Statement)
    parsed = parse_statement(delivered)
    assert isinstance(parsed, StatementRejected) and parsed.problem is EXPECTED[corruption]


@given(seed=st.integers(0, 2**32))
def test_content_faults_on_a_statement_differ_from_the_clean_copy(seed: int) -> None:
    bank = _bank(0, [(i * 1000, Direction.CREDIT, 5 + i) for i in range(30)])
    plan = CorruptionPlan(
        row_dropped_p=0.05, row_duplicated_p=0.05, amount_altered_p=0.05, currency_altered_p=0.5
    )
    clean, delivered, applied = bank.statement_file(
        "platform_usd", FIRST, random.Random(seed), plan
    )
    assert all(a.corruption is not Corruption.CURRENCY_ALTERED for a in applied)
    parsed = parse_statement(delivered)
    assert isinstance(parsed, Statement)  # consistent: opening + entries = closing
    assert (delivered != clean) == bool(applied)


def test_a_statement_that_does_not_add_up_is_refused() -> None:
    text = render_statement(_statement()).decode()
    lines = text.split("\n")
    closing = lines[-2].split(",")
    broken = "\n".join([*lines[:-2], f"CLOSING,{closing[1]},{int(closing[2]) + 1}", ""])
    assert parse_statement(broken.encode()).problem is StatementProblem.ENTRY_COUNT_MISMATCH  # type: ignore[union-attr]
    altered = text.replace(",DBIT,10.00,", ",DBIT,10.01,")
    assert altered != text
    assert parse_statement(altered.encode()).problem is StatementProblem.BALANCE_MISMATCH  # type: ignore[union-attr]


@given(st.binary(max_size=200))
def test_the_statement_parser_never_raises(data: bytes) -> None:
    assert isinstance(parse_statement(data), Statement | StatementRejected)
