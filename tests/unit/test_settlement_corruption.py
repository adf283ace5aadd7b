"""Settlement-file corruption: every fault is either refused by the parser or shows as a
difference against the clean copy, and the same rng state gives the same damage."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.money import Money
from scenarios import Faults, ScenarioError, parse_scenario
from simulator.corruption import TRANSPORT, Corruption, CorruptionPlan
from simulator.settlement import (
    Movement,
    MovementKind,
    SettlementFile,
    build_settlement,
    day_start_ms,
    render_settlement,
)
from simulator.settlement_desk import corrupt_settlement, swarm_settlement_faults
from simulator.settlement_parse import SettlementProblem, SettlementRejected, parse_settlement

DATE = dt.date(2026, 1, 3)
START_MS = day_start_ms(DATE)


def _file(rows: int = 30) -> SettlementFile:
    rng = random.Random(7)
    moves = [
        Movement(
            f"cap_{i:010d}",
            f"ord_{i:026d}",
            MovementKind.CAPTURE,
            START_MS + i * 1000,
            Money(rng.randint(100, 100_000), rng.choice(["USD", "EUR", "JPY", "BHD"])),
        )
        for i in range(rows)
    ]
    return build_settlement(moves, DATE)


def _only(corruption: Corruption, p: float = 1.0) -> CorruptionPlan:
    return CorruptionPlan(**{f"{corruption.value}_p": p})


#: What the strict parser says of each transport fault.
EXPECTED_PROBLEM = {
    Corruption.TRAILER_MISSING: SettlementProblem.MISSING_TRAILER,
    Corruption.TRUNCATED: SettlementProblem.TRUNCATED,
    Corruption.GARBAGE: SettlementProblem.GARBAGE_BYTES,
    Corruption.UNKNOWN_ROW: SettlementProblem.UNKNOWN_ROW_TYPE,
}


@pytest.mark.parametrize("corruption", list(EXPECTED_PROBLEM))
@given(seed=st.integers(0, 2**32))
def test_transport_faults_are_refused_by_the_parser(corruption: Corruption, seed: int) -> None:
    delivered, applied = corrupt_settlement(_file(), random.Random(seed), _only(corruption))
    assert [a.corruption for a in applied] == [corruption]
    parsed = parse_settlement(delivered)
    assert isinstance(parsed, SettlementRejected)
    assert parsed.problem is EXPECTED_PROBLEM[corruption], parsed


@pytest.mark.parametrize(
    "corruption",
    [
        Corruption.ROW_DROPPED,
        Corruption.ROW_DUPLICATED,
        Corruption.AMOUNT_ALTERED,
        Corruption.CURRENCY_ALTERED,
    ],
)
@given(seed=st.integers(0, 2**32))
def test_content_faults_parse_but_differ_from_the_clean_copy(
    corruption: Corruption, seed: int
) -> None:
    clean = _file()
    delivered, applied = corrupt_settlement(clean, random.Random(seed), _only(corruption, 0.1))
    parsed = parse_settlement(delivered)
    assert isinstance(parsed, SettlementFile), parsed  # well-formed: the PSP's books are wrong
    assert all(a.corruption is corruption for a in applied)
    refs = [a.detail for a in applied]
    clean_rows = {r.psp_reference: r for r in clean.rows}
    got = Counter(r.psp_reference for r in parsed.rows)
    if not applied:
        assert parsed == clean
        return
    if corruption is Corruption.ROW_DROPPED:
        assert set(clean_rows) - set(got) == set(refs)
    elif corruption is Corruption.ROW_DUPLICATED:
        assert sorted(ref for ref, n in got.items() if n == 2) == sorted(refs)
    else:
        changed = [r.psp_reference for r in parsed.rows if r != clean_rows[r.psp_reference]]
        assert changed == refs
        for ref in refs:
            row = next(r for r in parsed.rows if r.psp_reference == ref)
            if corruption is Corruption.AMOUNT_ALTERED:
                assert row.gross.currency == clean_rows[ref].gross.currency
                assert row.gross.minor != clean_rows[ref].gross.minor
            else:
                assert row.gross.currency != clean_rows[ref].gross.currency


def test_no_plan_delivers_the_clean_bytes() -> None:
    clean = _file()
    delivered, applied = corrupt_settlement(clean, random.Random(1), CorruptionPlan())
    assert delivered == render_settlement(clean) and applied == []


@given(seed=st.integers(0, 2**32))
def test_the_same_rng_state_gives_the_same_damage(seed: int) -> None:
    plan = CorruptionPlan(0.05, 0.05, 0.05, 0.05, 0.5, 0.3, 0.3, 0.3)
    first = corrupt_settlement(_file(), random.Random(seed), plan)
    assert corrupt_settlement(_file(), random.Random(seed), plan) == first


def test_at_most_one_transport_fault_per_file() -> None:
    plan = CorruptionPlan(trailer_missing_p=0.34, truncated_p=0.33, garbage_p=0.33)
    for seed in range(200):
        _, applied = corrupt_settlement(_file(3), random.Random(seed), plan)
        assert len([a for a in applied if a.corruption in TRANSPORT]) == 1


def test_the_scenario_loader_validates_the_settlement_keys() -> None:
    with pytest.raises(ScenarioError, match=r"faults\.settlement_garbage_p"):
        parse_scenario({"name": "x", "faults": {"settlement_garbage_p": 2}})
    with pytest.raises(ScenarioError, match=r"faults\.settlement_garbled_p is not a known"):
        parse_scenario({"name": "x", "faults": {"settlement_garbled_p": 0.1}})
    with pytest.raises(ScenarioError, match="trailer_missing_p"):
        parse_scenario(
            {"name": "x", "faults": {"settlement_truncated_p": 0.6, "settlement_garbage_p": 0.6}}
        )
    with pytest.raises(ScenarioError, match="per-row settlement"):
        parse_scenario(
            {
                "name": "x",
                "faults": {"settlement_row_dropped_p": 0.6, "settlement_amount_altered_p": 0.6},
            }
        )


def test_swarm_draws_settlement_faults_per_seed_without_touching_the_others() -> None:
    base = Faults(psp_unavailable_p=0.1)
    drawn = [swarm_settlement_faults(base, seed) for seed in range(40)]
    assert all(attrs.evolve(d, **_settlement_zero()) == base for d in drawn)
    assert len({attrs.astuple(d) for d in drawn}) == 40
    assert swarm_settlement_faults(base, 5) == swarm_settlement_faults(base, 5)
    for d in drawn:
        CorruptionPlan.settlement(d)  # within the plan's bounds


def _settlement_zero() -> dict[str, float]:
    return {f.name: 0.0 for f in attrs.fields(Faults) if f.name.startswith("settlement_")}
