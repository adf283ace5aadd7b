"""Ids: sortable, and reproducible from a seed."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from engine.ids import Ids, is_id


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
