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

#: The scale of each scenario's traffic time (scenarios.scaled), unless a case says otherwise.
SCALE = 0.1

CASES = [
    # (seam, scenario whose faults expose it, invariants that may report it[, scale])
    ("capture_without_idempotency_key", "happy_path", {"at_most_one_capture_per_order"}),
    ("new_key_on_retry", "psp_timeouts", {"at_most_one_capture_per_order"}),
    (
        "timeout_as_failure",
        "psp_timeouts",
        {"captured_orders_match_psp", "psp_captured_equals_ledger"},
    ),
    ("duplicate_webhook_booked_twice", "duplicate_webhooks", {"psp_captured_equals_ledger"}),
    # Re-applying a final state announces it again: the announcement check sees it first.
    (
        "trust_webhook_order",
        "duplicate_webhooks",
        {"captured_orders_match_psp", "state_changes_announced"},
    ),
    ("wallet_outside_ledger", "crash_restart", {"wallet_equals_ledger"}),
    # The flow invariants (simulator/oracle_flows.py), one planted bug each.
    ("commission_rounded_to_cent", "happy_path", {"commission_recomputed"}),
    ("expiry_ignores_late_authorization", "lost_webhooks", {"authorized_sessions_honoured"}),
    ("completed_before_orders_final", "happy_path", {"payment_status_agrees_with_orders"}),
    # Reported at its commit by the payment/orders check, and at the end (had the run gone on)
    # by charged_buyers_completed: tests/unit/test_oracle_flows.py shows that one alone.
    (
        "partial_capture_marks_failed",
        "everything",
        {"payment_status_agrees_with_orders", "charged_buyers_completed"},
    ),
    ("order_message_in_second_unit", "happy_path", {"state_changes_announced"}),
    ("notification_dropped", "happy_path", {"merchants_notified"}),
    # A crash between the two commits is needed: the crash sweep puts one there.
    ("event_recorded_before_effect", "crash_sweep", {"webhook_effect_committed"}, 0.25),
    # A refund's retry after a lost answer under a new key: a second refund at the PSP.
    ("refund_key_regenerated_on_retry", "refund_storm", {"at_most_one_psp_refund_per_refund"}),
    # A crash the supervisor hides behind a restart is still a bug: the webhook's asker gets
    # a 500 (no_server_errors); a crash in a told message has no asker (actors_never_crash).
    ("crash_on_late_event", "duplicate_webhooks", {"no_server_errors"}),
    ("crash_in_completion_check", "happy_path", {"actors_never_crash"}),
    # Twelve unknown outcomes in a row need a correlated outage.
    ("fail_after_unknown_outcomes", "psp_outage", {"orders_fail_only_on_psp_word"}, 0.5),
]
#: Invariants checked only at the end: a run that breaks one is judged in full, so the test can
#: also show that no other invariant saw the bug.
FINAL_ONLY = {
    "authorized_sessions_honoured",
    "orders_fail_only_on_psp_word",
    "merchants_notified",
}


def _scale(case: tuple[object, ...]) -> float:
    return float(case[3]) if len(case) > 3 else SCALE  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_oracle_reports_the_planted_bug(case: tuple[object, ...]) -> None:
    seam, scenario_name, invariants = case[0], case[1], case[2]
    assert isinstance(seam, str) and isinstance(scenario_name, str)
    assert isinstance(invariants, set)
    scenario = scaled(load_scenario(scenario_name), _scale(case))
    for seed in range(1, SEEDS_MAX + 1):
        result = run_scenario(scenario, seed, seams=frozenset({seam}))
        if result.violation is not None:
            assert result.violation.invariant in invariants, result.violation
            assert result.replay == f"payengine scenario run {scenario_name} --seed {seed}"
            if result.violation.invariant in FINAL_ONLY:
                broken = {k for k, v in result.invariants.items() if v.startswith("violated")}
                assert broken <= invariants, broken  # only the new invariant saw it
            return
    pytest.fail(f"{seam} went unnoticed for {SEEDS_MAX} seeds")


def test_without_a_seam_the_same_runs_pass() -> None:
    for case in {(c[1], _scale(c)): c for c in CASES}.values():
        scenario_name = case[1]
        assert isinstance(scenario_name, str)
        result = run_scenario(scaled(load_scenario(scenario_name), _scale(case)), 1)
        assert result.ok, result.violation
