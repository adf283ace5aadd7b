"""`scenario run --store postgres`: the same world, fault plan and oracle against PostgreSQL.

Runs on the embedded server, and on the service when PAYENGINE_TEST_SERVICE_URL answers. Each
run creates a database of its own and drops it. Scenarios are cut short (a small scale, no
abandoned carts, so no half-hour expiry to wait for) and run at 20 virtual s per wall second.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from payengine.cli import main
from scenarios import Scenario, load_scenario
from simulator.pg_runner import (
    DATABASE_PREFIX,
    LIVENESS_WALL_S_MAX,
    default_time_scale,
    liveness_bound_s,
    liveness_needed_s,
    run_scenario_postgres,
)
from simulator.runner import scaled
from simulator.world import simulation_config
from tests import pgfixtures

TIME_SCALE = 20.0
#: Virtual seconds the quiet phase may take: a run that does not settle fails. A payment whose
#: buyer gave up (a loaded machine makes the simulated buyers' patience run out in real time)
#: ends only when its checkout expires, up to `checkout_expiry_s` after the last arrival; the
#: bound leaves the expiry sweep 10 virtual minutes beyond that (2,400 s: 120 wall s at most).
LIVENESS_S_MAX = simulation_config().checkout_expiry_s + 600.0


def _short(name: str, factor: float = 0.02) -> Scenario:
    """`name` scaled down, every buyer pays or declines (an abandoned cart waits 30 min)."""
    scenario = scaled(load_scenario(name), factor)
    traffic = attrs.evolve(scenario.traffic, pay_p=0.95, decline_p=0.05, review_p=0.0)
    return attrs.evolve(scenario, traffic=traffic, liveness_s_max=LIVENESS_S_MAX)


def _databases(admin: str) -> set[str]:
    rows = pgfixtures._run_asyncio(_fetch_names(admin))
    return {name for name in rows if name.startswith(DATABASE_PREFIX)}


async def _fetch_names(admin: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        return [r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")]
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", pgfixtures.available_kinds())
def test_crash_restart_on_postgres_passes_the_oracle(kind: str) -> None:
    scenario = _short("crash_restart", 0.05)
    faults = attrs.evolve(scenario.faults, crash_interval_s=30.0, restart_delay_s_max=10.0)
    scenario = attrs.evolve(scenario, faults=faults)
    admin = pgfixtures.admin_url(kind)
    before = _databases(admin)
    result = run_scenario_postgres(scenario, 5, server_dsn=admin, time_scale=TIME_SCALE)
    assert result.ok, result.violation
    assert result.stats["crashes"] >= 1
    assert result.payments > 0 and result.summary["psp_captures"] > 0
    assert result.tier["store"] == "postgres"
    assert result.tier["scheduler_deterministic"] is False
    assert result.tier["time_scale"] == TIME_SCALE
    # The actors' write-behind units ran on the real store, group-committed (pg_batched.py).
    batched = result.tier["write_behind"]
    assert batched["committed"] > 0 and batched["group_commits"] > 0, batched
    assert batched["group_units"] >= batched["committed"], batched
    assert _databases(admin) == before  # the run's database was dropped


def test_cli_runs_happy_path_on_the_embedded_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario_file = tmp_path / "happy_short.toml"
    scenario_file.write_text(attrs.evolve(_short("happy_path"), name="happy_short").to_toml())
    monkeypatch.setenv("DATABASE_URL", pgfixtures.embedded_admin_url())
    target = tmp_path / "report.json"
    code = main(
        [
            "scenario",
            "run",
            str(scenario_file),
            "--store",
            "postgres",
            "--time-scale",
            f"{TIME_SCALE:g}",
            "--json",
            str(target),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "every invariant held" in out
    assert f"store      postgres: {DATABASE_PREFIX}" in out and "on DATABASE_URL" in out
    assert "not deterministic" in out
    assert f"--store postgres --time-scale {TIME_SCALE:g}" in out
    report = json.loads(target.read_text())
    assert report["ok"] is True and report["tier"]["deterministic"] is False
    assert report["summary"]["payments"].get("COMPLETED", 0) >= 1
    assert report["tier"]["write_behind"]["committed"] > 0
    assert "write-behind" in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--store", "sqlite"], "--store"),
        (["--time-scale", "10"], "--time-scale"),
        (["--store", "postgres", "--time-scale", "0"], "--time-scale"),
        (["--store", "postgres", "--time-scale", "1000"], "--time-scale"),
        (["--store", "postgres", "--scale", "0"], "--scale"),
    ],
)
def test_bad_store_options_exit_two_in_one_line(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scenario", "run", "happy_path", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and named in err


def test_an_unreachable_database_exits_two_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert main(["scenario", "run", "happy_path", "--store", "postgres"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot reach the database" in err


def test_the_liveness_bound_is_never_cut_below_what_a_scenarios_tail_needs() -> None:
    # A risk review may stay pending 8 virtual hours: at the default 20x that is more than
    # LIVENESS_WALL_S_MAX of wall time, and cutting the bound there failed every full-size
    # risk_review run with "not quiet" although nothing was wrong.
    risk = load_scenario("risk_review")
    assert risk.traffic.review_hours_max == 8
    assert liveness_needed_s(risk) == 8 * 3600
    scale = default_time_scale(risk)
    assert liveness_bound_s(risk, scale) >= 1.5 * 8 * 3600 > LIVENESS_WALL_S_MAX * scale
    # Without reviews only the 30-minute checkout expiry is waited for; the wall cap rules.
    happy = load_scenario("happy_path")
    assert liveness_needed_s(happy) == 1800
    assert liveness_bound_s(happy, 20.0) == LIVENESS_WALL_S_MAX * 20.0
