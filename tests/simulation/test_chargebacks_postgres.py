"""The chargebacks scenario on PostgreSQL (embedded, and the service when it answers): the
PSP disputes captured orders, wins some and loses others, while refunds race them, and the
oracle's dispute invariants hold over the rows PostgreSQL committed."""

from __future__ import annotations

import attrs
import pytest

from simulator.pg_runner import run_scenario_postgres
from tests import pgfixtures
from tests.simulation.test_scenario_postgres import TIME_SCALE, _short


@pytest.mark.parametrize("kind", pgfixtures.available_kinds())
def test_chargebacks_on_postgres_pass_the_oracle(kind: str) -> None:
    scenario = _short("chargebacks", 0.1)
    # Every order the card networks see is disputed within seconds and decided within a
    # minute: orders are offered at the oracle's ticks (no commit hook on this tier), and only
    # while the faults last, so a loaded machine must still see disputes of both outcomes.
    faults = attrs.evolve(
        scenario.faults, dispute_p=1.0, dispute_open_s_max=5.0, dispute_close_s_max=60.0
    )
    scenario = attrs.evolve(scenario, faults=faults)
    result = run_scenario_postgres(
        scenario, 3, server_dsn=pgfixtures.admin_url(kind), time_scale=TIME_SCALE
    )
    assert result.ok, result.violation
    assert result.tier["store"] == "postgres"
    assert result.tier["write_behind"]["committed"] > 0, result.tier["write_behind"]
    disputes = result.stats["disputes"]
    assert disputes["disputed"] > 0, disputes
    assert all(v == "held" for k, v in result.invariants.items() if "dispute" in k or "charge" in k)
