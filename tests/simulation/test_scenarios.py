"""Every shipped scenario passes with its own seed (scaled down so the suite stays quick).

The shipped durations simulate hours; here each runs a quarter of its traffic time with the
same rates and fault plan, and its expectations scaled alike. `payengine scenario run NAME`
runs the full size.
"""

from __future__ import annotations

import attrs
import pytest

from scenarios import shipped
from simulator.runner import run_scenario, scaled

#: The share of each shipped scenario's traffic time the test runs.
TEST_SCALE = 0.25

NAMES = [s.name for s in shipped() if not s.swarm]


@pytest.mark.parametrize("name", NAMES)
def test_shipped_scenario_holds_every_invariant(name: str) -> None:
    scenario = next(s for s in shipped() if s.name == name)
    result = run_scenario(scaled(scenario, TEST_SCALE))
    assert result.ok, f"{result.violation}\nreplay: {result.replay} --scale {TEST_SCALE}"
    assert all(v == "held" for v in result.invariants.values()), result.invariants
    assert result.payments > 0
    planned = {
        "psp_timeouts": {"psp_timeout_after", "psp_unavailable", "psp_hang"},
        "duplicate_webhooks": {"webhook_duplicated"},
        "lost_webhooks": {"webhook_lost"},
        "crash_restart": {"engine_crash"},
        "everything": {"engine_crash", "webhook_forged", "psp_timeout_after", "webhook_lost"},
        "refund_storm": {"psp_pending", "psp_timeout_after", "psp_decline", "engine_crash"},
        "corrupted_settlement": {
            "settlement_row_dropped",
            "settlement_row_duplicated",
            "settlement_amount_altered",
            "settlement_currency_altered",
            "settlement_fee_altered",
        },
        "lost_webhooks_repaired_by_recon": {"psp_capture_unheard"},
        "chargebacks": {"webhook_duplicated", "webhook_lost", "webhook_reordered"},
    }.get(name, set())
    missing = planned - set(result.faults)
    assert not missing, f"faults that never fired: {missing}"
    if name == "lost_webhooks_repaired_by_recon":  # the reports repaired the withheld captures
        assert result.stats["settlement"]["items"].get("auto_fixed", 0) > 0, result.stats


def test_every_required_scenario_is_shipped() -> None:
    required = {
        "happy_path",
        "psp_timeouts",
        "duplicate_webhooks",
        "lost_webhooks",
        "crash_restart",
        "risk_review",
        "hot_seller",
        "black_friday",
        "everything",
    }
    assert required <= set(NAMES)


def test_black_friday_burst_is_twenty_times_the_base_rate() -> None:
    scenario = next(s for s in shipped() if s.name == "black_friday")
    assert scenario.traffic.burst_factor == 20
    assert scenario.traffic.burst_end_s > scenario.traffic.burst_start_s


def test_a_run_ends_at_its_liveness_bound_even_with_buyers_still_waiting() -> None:
    # Risk reviews last up to 8 h; with a 10-minute bound the run must stop there and say that
    # the world was not quiet, not wait for the last buyer (in real time, on the postgres tier,
    # that wait ran half an hour past the bound).
    scenario = scaled(next(s for s in shipped() if s.name == "risk_review"), 0.1)
    scenario = attrs.evolve(scenario, liveness_s_max=600.0)
    result = run_scenario(scenario)
    assert not result.ok
    assert result.violation is not None
    assert result.violation.invariant == "every_authorized_order_terminal", result.violation
    assert "not quiet 600 virtual s after the faults stopped" in result.violation.detail
    assert result.virtual_s <= scenario.duration_s + 600.0 + 1.0, result.virtual_s
