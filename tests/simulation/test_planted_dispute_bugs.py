"""The oracle catches known-bad dispute behaviours, switched on one at a time through
test-only seams (actors/dispute.py; the pattern of tests/simulation/test_planted_bugs.py).

Each seam plants one bug a chargeback flow is known to have; the `chargebacks` scenario must
report the invariant it breaks within a few seeds, and the same runs pass without the seam.
"""

from __future__ import annotations

import pytest

from scenarios import load_scenario
from simulator.runner import run_scenario, scaled

#: Seeds tried per bug before the test gives up.
SEEDS_MAX = 5
#: The scale of the scenario's traffic time (scenarios.scaled).
SCALE = 0.15

CASES = [
    # (seam, invariants that may report it)
    # A won dispute is marked WON but its funds are never reinstated in the ledger.
    (
        "won_dispute_not_reinstated",
        {
            "psp_captured_equals_ledger",
            "one_chargeback_per_dispute",
            "chargebacks_net_open_disputes",
        },
    ),
    # A duplicated `charge.dispute.closed` (lost) recovers the amount from the seller again
    # (its debt is then more than its share: debts_accounted sees it at the commit).
    ("lost_dispute_recovered_twice", {"one_chargeback_per_dispute", "debts_accounted"}),
    # The platform keeps its commission: the seller pays the whole disputed amount.
    ("dispute_commission_kept", {"dispute_recovery_follows_policy", "debts_accounted"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_oracle_reports_the_planted_dispute_bug(case: tuple[str, set[str]]) -> None:
    seam, invariants = case
    scenario = scaled(load_scenario("chargebacks"), SCALE)
    for seed in range(1, SEEDS_MAX + 1):
        result = run_scenario(scenario, seed, seams=frozenset({seam}))
        if not result.ok:
            assert result.violation is not None
            assert result.violation.invariant in invariants, result.violation
            assert result.replay == f"payengine scenario run chargebacks --seed {seed}"
            return
    pytest.fail(f"{seam} went unnoticed for {SEEDS_MAX} seeds")


def test_without_a_seam_the_same_runs_pass() -> None:
    scenario = scaled(load_scenario("chargebacks"), SCALE)
    for seed in range(1, SEEDS_MAX + 1):
        result = run_scenario(scenario, seed)
        assert result.ok, result.violation
