"""The payout oracle catches known-bad payout behaviours, planted one at a time through the
test-only seams of `Context.faults` (actors/merchant.py), as tests/simulation/
test_planted_bugs.py does for pay-in and refunds.

The `payouts` scenario is run shortened (a day and a half of traffic instead of a week) with
no payout delay and its provider faults turned up, so that every bug meets the fault that
exposes it within a few seeds: a submit whose answer is lost (a key regenerated on retry), a
payout the provider fails (a void without a reserve), a payout the bank returns (a return not
credited back).
"""

from __future__ import annotations

import attrs
import pytest

from scenarios import Scenario, load_scenario
from simulator.runner import run_scenario, scaled

SEEDS_MAX = 4
SCALE = 0.2

CASES = [
    # A retry after a lost answer under a new key: a second payout at the provider.
    ("payout_key_regenerated_on_retry", {"at_most_one_provider_payout_per_payout"}),
    # A failed payout credited to the available balance without releasing its reserve: money
    # created, and the reserve outlives its payout.
    (
        "payout_void_without_reserve",
        {"reserved_equals_payouts_in_flight", "money_conserved_with_payouts", "money_conserved"},
    ),
    # A bank return that moves the payout to RETURNED but never credits the seller back.
    ("returned_payout_not_credited", {"money_conserved_with_payouts", "money_conserved"}),
]


def _planted_scenario() -> Scenario:
    scenario = scaled(load_scenario("payouts"), SCALE)
    return attrs.evolve(
        scenario,
        traffic=attrs.evolve(scenario.traffic, payout_delay_days=0, refund_p=0.0),
        faults=attrs.evolve(
            scenario.faults,
            payout_timeout_after_p=0.3,
            payout_reject_p=0.1,
            payout_failed_p=0.25,
            payout_returned_p=0.25,
        ),
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_oracle_reports_the_planted_payout_bug(case: tuple[str, set[str]]) -> None:
    seam, invariants = case
    scenario = _planted_scenario()
    for seed in range(1, SEEDS_MAX + 1):
        result = run_scenario(scenario, seed, seams=frozenset({seam}))
        if result.violation is not None:
            assert result.violation.invariant in invariants, result.violation
            return
    pytest.fail(f"{seam} went unnoticed for {SEEDS_MAX} seeds")


def test_without_a_seam_the_same_run_passes() -> None:
    result = run_scenario(_planted_scenario(), 1)
    assert result.ok, result.violation
    payouts = result.stats["payouts"]
    assert isinstance(payouts, dict) and payouts["provider_payouts"], payouts
