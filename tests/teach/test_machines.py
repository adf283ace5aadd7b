"""The state machine pictures are the transition tables: one arrow per legal move, one box per
state, every arrow pointing right, and exactly the current state lit."""

from __future__ import annotations

import enum
import re

from hypothesis import given
from hypothesis import strategies as st

from engine.states import TRANSITIONS
from teach.machines import layers, svg

MACHINES = list(TRANSITIONS)
EDGE = re.compile(r'class="edge" data-from="(\w+)" data-to="(\w+)"')


@st.composite
def machine_and_state(draw: st.DrawFn) -> tuple[type[enum.Enum], enum.Enum | None]:
    machine = draw(st.sampled_from(MACHINES))
    state = draw(st.one_of(st.none(), st.sampled_from(list(TRANSITIONS[machine]))))
    return machine, state


@given(machine_and_state())
def test_the_picture_is_the_table(case: tuple[type[enum.Enum], enum.Enum | None]) -> None:
    machine, current = case
    drawn = svg(machine, current)
    table = TRANSITIONS[machine]
    edges = EDGE.findall(drawn)
    legal = [(s.value, t.value) for s, targets in table.items() for t in targets]
    assert sorted(edges) == sorted(legal)
    for state in table:
        assert drawn.count(f'data-state="{state.value}"') == 1
    lit = re.findall(r'class="state lit(?: final)?" data-state="(\w+)"', drawn)
    assert lit == ([] if current is None else [current.value])


def test_a_state_sits_right_of_every_state_that_leads_to_it() -> None:
    for machine, table in TRANSITIONS.items():
        depth = layers(machine)
        first = next(iter(table))
        assert depth[first] == 0
        for source, targets in table.items():
            assert all(depth[t] > depth[source] for t in targets), (machine, source)
