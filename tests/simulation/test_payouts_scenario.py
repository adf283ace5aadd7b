"""The `payouts` scenario, shortened: it passes, pays sellers through every provider fault, and
the same seed gives the same trace (tests/simulation/test_determinism.py does the same for
the other scenarios)."""

from __future__ import annotations

from scenarios import load_scenario
from simulator.runner import run_scenario, scaled

#: A day and a half of the week: scheduled and manual payouts, faults on.
SCALE = 0.2


def test_payouts_scenario_passes_and_replays_to_the_same_trace() -> None:
    scenario = scaled(load_scenario("payouts"), SCALE)
    first = run_scenario(scenario, 5)
    assert first.ok, first.violation
    payouts = first.stats["payouts"]
    assert isinstance(payouts, dict)
    assert payouts["payouts"].get("PAID", 0) > 0, payouts  # type: ignore[union-attr]
    assert any(name.startswith("payout_") for name in first.faults), first.faults
    again = run_scenario(scenario, 5)
    assert again.trace_hash == first.trace_hash
