"""Money: exact, strict, single-currency."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidAmount, UnknownCurrency
from engine.money import (
    AMOUNT_MINOR_MAX,
    Money,
    allocate,
    currency_exponent,
    format_amount,
    parse_amount,
    split_bps,
)

CURRENCIES = ["USD", "EUR", "JPY", "KRW", "BHD", "KWD", "TND", "GBP", "CLF"]


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("12.3", "USD", 1230),
        ("12", "USD", 1200),
        ("0.01", "USD", 1),
        ("1500", "JPY", 1500),
        ("1.234", "BHD", 1234),
        ("0.5", "BHD", 500),
    ],
)
def test_parse_amount_reads_major_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == Money(minor, currency)


def test_exponents_come_from_iso_4217() -> None:
    assert [currency_exponent(c) for c in ("JPY", "USD", "BHD")] == [0, 2, 3]


@pytest.mark.parametrize(
    ("value", "currency", "rule"),
    [
        (12.34, "USD", "not a float"),
        ("1e3", "USD", "exponent"),
        ("1E3", "USD", "exponent"),
        ("12.345", "USD", "has 3 decimals but USD allows 2"),
        ("1.5", "JPY", "has 1 decimals but JPY allows 0"),
        ("1.2345", "BHD", "allows 3"),
        ("+5", "USD", "'+' sign"),
        ("-5", "USD", "negative"),
        ("0", "USD", "zero"),
        ("012", "USD", "leading zeros"),
        (" 12", "USD", "plain decimal"),
        ("12.", "USD", "plain decimal"),
        (".5", "USD", "plain decimal"),
        ("1,000", "USD", "plain decimal"),
        ("NaN", "USD", "plain decimal"),
        ("Infinity", "USD", "plain decimal"),
        (1200, "USD", "decimal string, got int"),
        (None, "USD", "decimal string"),
        ("1" * 41, "USD", "longer than 40"),
        ("100000000000000.00", "USD", "exceeds the limit"),
    ],
)
def test_parse_amount_rejects_inexact_input_naming_the_rule(
    value: object, currency: str, rule: str
) -> None:
    with pytest.raises(InvalidAmount, match=rule.replace("+", r"\+")):
        parse_amount(value, currency)


@pytest.mark.parametrize("code", ["XYZ", "usd", "US", "USDD", "", "XAU", 840])
def test_unknown_currency_is_refused(code: object) -> None:
    with pytest.raises(UnknownCurrency):
        parse_amount("1", code)  # type: ignore[arg-type]


def test_negative_and_zero_only_where_allowed() -> None:
    assert parse_amount("-1.50", "USD", allow_negative=True) == Money(-150, "USD")
    assert parse_amount("0", "USD", allow_zero=True) == Money(0, "USD")
    with pytest.raises(InvalidAmount, match="negative zero"):
        parse_amount("-0", "USD", allow_negative=True, allow_zero=True)


def test_money_refuses_float_bool_and_mixed_currency() -> None:
    with pytest.raises(InvalidAmount, match="integer of minor units, got float"):
        Money(12.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount, match="got bool"):
        Money(True, "USD")
    with pytest.raises(InvalidAmount, match="currency mismatch: cannot combine USD with EUR"):
        Money(1, "USD") + Money(1, "EUR")
    with pytest.raises(InvalidAmount, match="currency mismatch"):
        _ = Money(1, "USD") < Money(1, "JPY")
    with pytest.raises(TypeError):
        Money(1, "USD") * 2
    with pytest.raises(TypeError):
        Money(1, "USD") + 1  # type: ignore[operator]


@given(
    st.sampled_from(CURRENCIES),
    st.integers(min_value=-AMOUNT_MINOR_MAX, max_value=AMOUNT_MINOR_MAX),
)
def test_format_then_parse_is_identity(currency: str, minor: int) -> None:
    text = format_amount(minor, currency)
    parsed = parse_amount(text, currency, allow_negative=True, allow_zero=True)
    assert parsed.minor == minor


def test_format_amount_examples() -> None:
    assert format_amount(1234, "USD") == "12.34"
    assert format_amount(5, "USD") == "0.05"
    assert format_amount(-5, "USD") == "-0.05"
    assert format_amount(1500, "JPY") == "1500"
    assert format_amount(1, "BHD") == "0.001"
    assert str(Money(1234, "EUR")) == "12.34 EUR"


@given(
    st.integers(min_value=0, max_value=AMOUNT_MINOR_MAX // 10_000),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(CURRENCIES),
)
def test_split_bps_loses_no_minor_unit(minor: int, rate_bps: int, currency: str) -> None:
    part, rest = split_bps(Money(minor, currency), rate_bps)
    assert part.minor + rest.minor == minor
    assert part.minor >= 0 and rest.minor >= 0
    # the part is the exact product rounded to the nearest minor unit
    assert abs(part.minor * 10_000 - minor * rate_bps) <= 5_000


def test_split_bps_rounds_half_to_even() -> None:
    assert split_bps(Money(5, "USD"), 1000)[0].minor == 0  # 0.5 -> 0
    assert split_bps(Money(15, "USD"), 1000)[0].minor == 2  # 1.5 -> 2
    assert split_bps(Money(25, "USD"), 1000)[0].minor == 2  # 2.5 -> 2
    assert split_bps(Money(16, "USD"), 1000)[0].minor == 2  # 1.6 -> 2
    with pytest.raises(InvalidAmount, match="rate_bps must be within"):
        split_bps(Money(1, "USD"), 10_001)


@given(
    st.integers(min_value=0, max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=20).filter(
        lambda ws: sum(ws) > 0
    ),
)
def test_allocate_is_exact(minor: int, weights: list[int]) -> None:
    shares = allocate(Money(minor, "USD"), weights)
    assert sum(s.minor for s in shares) == minor
    assert all(s.minor >= 0 for s in shares)
