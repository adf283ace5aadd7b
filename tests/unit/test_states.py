"""Transition tables: the single place that says which move is legal."""

from __future__ import annotations

import enum
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import IllegalTransition
from engine.states import (
    TRANSITIONS,
    OrderStatus,
    PaymentStatus,
    PayoutStatus,
    RefundStatus,
    can_transition,
    is_terminal,
    transition,
)

ALL = [PaymentStatus, OrderStatus, PayoutStatus, RefundStatus]


def test_happy_paths_are_legal() -> None:
    path = [
        PaymentStatus.CREATED,
        PaymentStatus.AWAITING_PAYMENT,
        PaymentStatus.AUTHORIZED,
        PaymentStatus.COMPLETED,
    ]
    for a, b in itertools.pairwise(path):
        assert transition(a, b) is b
    assert transition(OrderStatus.NOT_STARTED, OrderStatus.EXECUTING) is OrderStatus.EXECUTING
    assert transition(OrderStatus.EXECUTING, OrderStatus.SUCCESS) is OrderStatus.SUCCESS
    assert transition(PayoutStatus.SUBMITTED, PayoutStatus.PAID) is PayoutStatus.PAID
    assert transition(RefundStatus.SUBMITTED, RefundStatus.SUCCEEDED) is RefundStatus.SUCCEEDED


def test_illegal_move_is_named() -> None:
    with pytest.raises(
        IllegalTransition, match="illegal payment order transition SUCCESS -> FAILED"
    ):
        transition(OrderStatus.SUCCESS, OrderStatus.FAILED)
    with pytest.raises(IllegalTransition, match="payment transition COMPLETED -> CREATED"):
        transition(PaymentStatus.COMPLETED, PaymentStatus.CREATED)
    with pytest.raises(IllegalTransition):
        transition(OrderStatus.NOT_STARTED, PaymentStatus.CREATED)  # type: ignore[arg-type]


def test_every_table_covers_its_enum_and_terminals_are_final() -> None:
    for machine in ALL:
        table = TRANSITIONS[machine]
        assert set(table) == set(machine)
        for source, targets in table.items():
            assert all(type(t) is machine for t in targets)
            assert source not in targets
    assert is_terminal(OrderStatus.SUCCESS) and is_terminal(PaymentStatus.EXPIRED)
    assert not is_terminal(PayoutStatus.PAID)  # a bank may still return it


def test_timeout_is_not_a_state() -> None:
    # An order whose capture timed out stays EXECUTING: there is no UNKNOWN -> FAILED shortcut.
    assert OrderStatus.FAILED not in TRANSITIONS[OrderStatus][OrderStatus.SUCCESS]
    assert {s.value for s in OrderStatus} == {"NOT_STARTED", "EXECUTING", "SUCCESS", "FAILED"}


def _reachable(machine: type[enum.Enum], start: enum.Enum) -> set[enum.Enum]:
    seen = {start}
    frontier = [start]
    while frontier:
        for nxt in TRANSITIONS[machine][frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def test_every_state_is_reachable_and_every_path_ends() -> None:
    for machine in ALL:
        start = next(iter(machine))
        assert _reachable(machine, start) == set(machine)
        for state in machine:
            assert any(is_terminal(s) for s in _reachable(machine, state))


@given(st.sampled_from(ALL).flatmap(lambda m: st.tuples(st.sampled_from(m), st.sampled_from(m))))
def test_transition_agrees_with_table(pair: tuple[enum.Enum, enum.Enum]) -> None:
    source, target = pair
    if can_transition(source, target):
        assert transition(source, target) is target
    else:
        with pytest.raises(IllegalTransition):
            transition(source, target)
