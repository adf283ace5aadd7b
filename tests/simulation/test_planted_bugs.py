"""The oracle catches known-bad behaviours, switched on one at a time through test-only seams.

Each seam (actors/context.py `faults`, or the simulator's store for the wallet) plants one bug
a payment engine is known to have; the simulator must report the invariant it breaks within a
few seeds. If a change to the engine or the oracle made one of these pass, the oracle would
have gone blind to that bug.
"""

from __future__ import annotations

import pytest

from scenarios import load_scenario
from simulator.runner import run_scenario, scaled

#: Seeds tried per bug before the test gives up.
SEEDS_MAX = 5

CASES = [
    # (seam, scenario whose faults expose it, invariants that may report it)
    ("capture_without_idempotency_key", "happy_path", {"at_most_one_capture_per_order"}),
    ("new_key_on_retry", "psp_timeouts", {"at_most_one_capture_per_order"}),
    (
        "timeout_as_failure",
        "psp_timeouts",
        {"captured_orders_match_psp", "psp_captured_equals_ledger"},
    ),
    ("duplicate_webhook_booked_twice", "duplicate_webhooks", {"psp_captured_equals_ledger"}),
    ("trust_webhook_order", "duplicate_webhooks", {"captured_orders_match_psp"}),
    ("wallet_outside_ledger", "crash_restart", {"wallet_equals_ledger"}),
]


@pytest.mark.parametrize(("seam", "scenario_name", "invariants"), CASES, ids=[c[0] for c in CASES])
def test_oracle_reports_the_planted_bug(
    seam: str, scenario_name: str, invariants: set[str]
) -> None:
    scenario = scaled(load_scenario(scenario_name), 0.1)
    reported = []
    for seed in range(1, SEEDS_MAX + 1):
        result = run_scenario(scenario, seed, seams=frozenset({seam}))
        if result.violation is not None:
            reported.append(result.violation.invariant)
            assert result.violation.invariant in invariants, result.violation
            assert result.replay == f"payengine scenario run {scenario_name} --seed {seed}"
            return
    pytest.fail(f"{seam} went unnoticed for {SEEDS_MAX} seeds")


def test_without_a_seam_the_same_runs_pass() -> None:
    for _, scenario_name, _ in CASES:
        result = run_scenario(scaled(load_scenario(scenario_name), 0.1), 1)
        assert result.ok, result.violation
