"""The oracle catches known-bad wallet behaviours of money out (issue 11), switched on one at a
time through test-only seams (actors/debts.py, actors/merchant.py; the pattern of
tests/simulation/test_planted_bugs.py).

- `debt_collection_not_credited`: the merchant actor takes a debt from the wallet but does not
  credit the debt, so the seller still owes it and pays it again at the next settlement (a
  refund's debit applied twice). The refunds of `refund_storm` expose it at the commit:
  `debts_accounted` (simulator/oracle_wallet.py).
- `debt_not_collected_before_payout` needs a debt still owed when a payout is decided, which the
  engine's prompt settlement makes rare in a scenario: tests/actors/test_wallet_debts.py builds
  that moment and shows the commit check naming it.
"""

from __future__ import annotations

import pytest

from scenarios import load_scenario
from simulator.runner import run_scenario, scaled

#: Seeds tried per bug before the test gives up.
SEEDS_MAX = 5
#: The scale of the scenario's traffic time (scenarios.scaled).
SCALE = 0.1

CASES = [("debt_collection_not_credited", "refund_storm", {"debts_accounted"})]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_oracle_reports_the_planted_wallet_bug(case: tuple[str, str, set[str]]) -> None:
    seam, name, invariants = case
    scenario = scaled(load_scenario(name), SCALE)
    for seed in range(1, SEEDS_MAX + 1):
        result = run_scenario(scenario, seed, seams=frozenset({seam}))
        if not result.ok:
            assert result.violation is not None
            assert result.violation.invariant in invariants, result.violation
            assert result.replay == f"payengine scenario run {name} --seed {seed}"
            return
    pytest.fail(f"{seam} went unnoticed for {SEEDS_MAX} seeds")


def test_without_a_seam_the_same_runs_pass() -> None:
    for _, name, _ in CASES:
        result = run_scenario(scaled(load_scenario(name), SCALE), 1)
        assert result.ok, result.violation
