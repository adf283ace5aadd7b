"""The PSP settlement file: the fee model, build -> parse round trip, and the parser's verdicts."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from engine.money import Money
from simulator.settlement import (
    DAY_MS,
    FeeSchedule,
    Movement,
    MovementKind,
    SettlementFile,
    build_settlement,
    day_start_ms,
    render_settlement,
)
from simulator.settlement_parse import SettlementProblem, SettlementRejected, parse_settlement

DATE = dt.date(2026, 1, 1)
START_MS = day_start_ms(DATE)
CURRENCIES = ["USD", "EUR", "JPY", "BHD", "GBP", "CHF"]

movements = st.lists(
    st.builds(
        Movement,
        psp_reference=st.from_regex(r"cap_[0-9]{10}", fullmatch=True),
        merchant_reference=st.from_regex(r"ord_[0-9A-Z]{26}", fullmatch=True),
        kind=st.sampled_from(list(MovementKind)),
        # Some movements fall on the day before or after: the file must leave them out.
        booked_at_ms=st.integers(START_MS - DAY_MS // 4, START_MS + DAY_MS + DAY_MS // 4),
        amount=st.builds(Money, st.integers(1, 10**9), st.sampled_from(CURRENCIES)),
    ),
    max_size=40,
)


def _parsed(data: bytes) -> SettlementFile:
    parsed = parse_settlement(data)
    assert isinstance(parsed, SettlementFile), parsed
    return parsed


def _rejected(data: bytes) -> SettlementRejected:
    parsed = parse_settlement(data)
    assert isinstance(parsed, SettlementRejected), "the parser accepted a damaged file"
    return parsed


@given(movements)
def test_build_then_parse_returns_the_same_rows(moves: list[Movement]) -> None:
    built = build_settlement(moves, DATE)
    assert _parsed(render_settlement(built)) == built
    in_day = [m for m in moves if START_MS <= m.booked_at_ms < START_MS + DAY_MS]
    assert len(built.rows) == len(in_day)


@given(movements)
def test_totals_equal_the_sum_of_the_days_movements(moves: list[Movement]) -> None:
    built = build_settlement(moves, DATE)
    expected: dict[str, int] = {}
    for m in moves:
        if START_MS <= m.booked_at_ms < START_MS + DAY_MS:
            sign = 1 if m.kind is MovementKind.CAPTURE else -1
            expected[m.amount.currency] = expected.get(m.amount.currency, 0) + sign * m.amount.minor
    totals = _parsed(render_settlement(built)).totals()
    assert {c: t.gross_minor for c, t in totals.items()} == expected
    for t in totals.values():
        assert t.gross_minor - t.fee_minor == t.net_minor


@given(st.integers(1, 10**12), st.sampled_from(CURRENCIES), st.integers(0, 10_000))
def test_capture_fee_is_bps_plus_fixed_never_above_gross(minor: int, cur: str, bps: int) -> None:
    fees = FeeSchedule(rate_bps=bps)
    fee = fees.fee(MovementKind.CAPTURE, Money(minor, cur))
    assert 0 <= fee.minor <= minor and fee.currency == cur
    fixed = fees.fixed_minor.get(cur, 0)
    # Fraction's round() is half to even, the rounding the PSP uses.
    assert fee.minor == min(minor, round(Fraction(minor * bps, 10_000)) + fixed)


def test_fee_examples() -> None:
    fees = FeeSchedule()
    assert fees.fee(MovementKind.CAPTURE, Money(10_000, "USD")) == Money(320, "USD")  # 2.9%+30
    assert fees.fee(MovementKind.CAPTURE, Money(1500, "JPY")) == Money(74, "JPY")  # 43.5->44+30
    assert fees.fee(MovementKind.REFUND, Money(10_000, "USD")) == Money(0, "USD")
    assert fees.fee(MovementKind.CHARGEBACK, Money(10_000, "USD")) == Money(1500, "USD")


def test_the_file_reads_like_a_settlement_report() -> None:
    moves = [
        Movement(
            "cap_0000000001",
            "ord_A",
            MovementKind.CAPTURE,
            START_MS + 754_567,
            Money(10_000, "USD"),
        ),
        Movement(
            "cap_0000000002", "ord_B", MovementKind.CAPTURE, START_MS + 1000, Money(1500, "JPY")
        ),
        Movement(
            "re_0000000003", "ord_A", MovementKind.REFUND, START_MS + 9000, Money(2500, "USD")
        ),
    ]
    text = render_settlement(build_settlement(moves, DATE)).decode()
    assert text == (
        "HEADER,fakepsp-settlement-20260101,2026-01-01,JPY USD,1\n"
        "COLUMNS,psp_reference,merchant_reference,type,booked_at,currency,gross,fee,net\n"
        "ROW,cap_0000000002,ord_B,capture,2026-01-01T00:00:01.000Z,JPY,1500,74,1426\n"
        "ROW,re_0000000003,ord_A,refund,2026-01-01T00:00:09.000Z,USD,-25.00,0.00,-25.00\n"
        "ROW,cap_0000000001,ord_A,capture,2026-01-01T00:12:34.567Z,USD,100.00,3.20,96.80\n"
        "TOTAL,JPY,1,1500,74,1426\n"
        "TOTAL,USD,2,75.00,3.20,71.80\n"
        "TRAILER,3\n"
    )


def test_a_day_without_movements_is_an_empty_valid_file() -> None:
    built = build_settlement([], DATE)
    assert _parsed(render_settlement(built)).rows == ()


GOOD = render_settlement(
    build_settlement(
        [
            Movement("cap_1", "ord_1", MovementKind.CAPTURE, START_MS + 10, Money(12_345, "USD")),
            Movement("cap_2", "ord_2", MovementKind.CAPTURE, START_MS + 20, Money(500, "JPY")),
            Movement("cap_3", "ord_3", MovementKind.CAPTURE, START_MS + 30, Money(1, "USD")),
        ],
        DATE,
    )
).decode()


def _edit(old: str, new: str) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new, 1).encode()


def test_each_kind_of_damage_gets_its_own_name() -> None:
    cases = [
        (_edit("TRAILER,3\n", "TRAILER,4\n"), SettlementProblem.ROW_COUNT_MISMATCH),
        (_edit("TRAILER,3\n", ""), SettlementProblem.MISSING_TRAILER),
        (_edit("TRAILER,3\n", "TRAILER,three\n"), SettlementProblem.BAD_TRAILER),
        (_edit("TRAILER,3\n", "TRAILER,3\nROW,x\n"), SettlementProblem.BAD_TRAILER),
        (
            _edit("TOTAL,USD,2,123.46", "TOTAL,USD,2,123.47"),
            SettlementProblem.CONTROL_TOTAL_MISMATCH,
        ),
        (_edit("TOTAL,USD,2,", "TOTAL,USD,3,"), SettlementProblem.ROW_COUNT_MISMATCH),
        (_edit("TOTAL,JPY", "SUBTOTAL,JPY"), SettlementProblem.UNKNOWN_ROW_TYPE),
        (_edit(",capture,", ",payout,"), SettlementProblem.UNKNOWN_MOVEMENT_TYPE),
        (_edit("USD,123.45,", "USD,123.46,"), SettlementProblem.ROW_ARITHMETIC_MISMATCH),
        (_edit("USD,123.45,", "USD,123.450,"), SettlementProblem.MALFORMED_ROW),
        (_edit("USD,123.45,", "USD,1.2345e2,"), SettlementProblem.MALFORMED_ROW),
        (_edit(",0.01,0.01,0.00", ",0.01,0.01,-0.00"), SettlementProblem.MALFORMED_ROW),
        (_edit(",0.01,0.01,0.00", ",0.01,0.01,.00"), SettlementProblem.MALFORMED_ROW),
        (_edit(",0.01,0.01,0.00", ",0.01,0.01,00.00"), SettlementProblem.MALFORMED_ROW),
        (_edit(",JPY,500,", ",JPY,500.0,"), SettlementProblem.MALFORMED_ROW),
        (_edit(",JPY,500,", ",EUR,500,"), SettlementProblem.CURRENCY_NOT_IN_HEADER),
        (
            _edit("2026-01-01T00:00:00.010Z", "2026-01-02T00:00:00.010Z"),
            SettlementProblem.ROW_DATE_MISMATCH,
        ),
        (
            _edit("2026-01-01T00:00:00.010Z", "2026-01-01T25:00:00.010Z"),
            SettlementProblem.MALFORMED_ROW,
        ),
        (_edit("HEADER,", "HEADR,"), SettlementProblem.UNKNOWN_ROW_TYPE),
        (_edit(",1\nCOLUMNS", ",2\nCOLUMNS"), SettlementProblem.BAD_HEADER),
        (_edit("booked_at,", "booked,"), SettlementProblem.BAD_COLUMNS),
        (
            _edit(
                "TOTAL,USD", "ROW,cap_9,ord_9,capture,2026-01-01T00:00:00.000Z,JPY,1,0,1\nTOTAL,USD"
            ),
            SettlementProblem.OUT_OF_ORDER,
        ),
        (GOOD.encode()[:-1], SettlementProblem.TRUNCATED),
        (b"", SettlementProblem.TRUNCATED),
        (_edit("ord_2", "ord_\xe92"), SettlementProblem.GARBAGE_BYTES),
        (_edit("\n", "\r\n"), SettlementProblem.GARBAGE_BYTES),
    ]
    for data, problem in cases:
        assert _rejected(data).problem is problem, (problem, data)


@given(st.binary(max_size=300))
def test_the_parser_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert isinstance(parse_settlement(data), SettlementFile | SettlementRejected)


def test_every_truncation_is_refused() -> None:
    # Every cut, not a sample: a cut right after the header's newline once read as bad columns.
    for cut in range(1, len(GOOD)):
        rejected = _rejected(GOOD.encode()[:cut])
        assert rejected.problem in {
            SettlementProblem.TRUNCATED,
            SettlementProblem.MISSING_TRAILER,
        }, (cut, rejected)
