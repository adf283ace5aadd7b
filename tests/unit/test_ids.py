"""Ids: sortable, and reproducible from a seed."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from engine.ids import Ids, _encode, _encode_id, is_id


class FakeClock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def monotonic(self) -> float:
        return self.ms / 1000

    def now_ms(self) -> int:
        return self.ms


def test_same_seed_same_ids() -> None:
    a = Ids(FakeClock(), random.Random(7))
    b = Ids(FakeClock(), random.Random(7))
    assert [a.new("pay") for _ in range(5)] == [b.new("pay") for _ in range(5)]
    assert is_id(a.new("ord"), "ord")


@given(st.lists(st.integers(min_value=0, max_value=5), min_size=2, max_size=200))
def test_ids_strictly_increase_even_within_a_millisecond(steps: list[int]) -> None:
    clock = FakeClock()
    ids = Ids(clock, random.Random(1))
    made = []
    for step in steps:
        clock.ms += step
        made.append(ids.new("ord"))
    assert made == sorted(made) and len(set(made)) == len(made)


def test_clock_going_backwards_keeps_order() -> None:
    clock = FakeClock()
    ids = Ids(clock, random.Random(3))
    first = ids.new("pay")
    clock.ms -= 10_000
    assert ids.new("pay") > first


def _encode_by_divmod(value: int, length: int) -> str:
    """The reference encoding: one divmod per character, least significant first."""
    chars = []
    for _ in range(length):
        value, index = divmod(value, 32)
        chars.append("0123456789ABCDEFGHJKMNPQRSTVWXYZ"[index])
    assert value == 0
    return "".join(reversed(chars))


@given(st.integers(0, (1 << 48) - 1), st.integers(0, (1 << 80) - 1))
def test_pair_table_encoding_matches_crockford_base32(now_ms: int, random_part: int) -> None:
    expected = _encode_by_divmod(now_ms, 10) + _encode_by_divmod(random_part, 16)
    assert _encode(now_ms, 10) + _encode(random_part, 16) == expected
    assert _encode_id(now_ms, random_part) == expected
