"""`run_scenario_postgres`: one scenario against PostgreSQL in sped-up real time, judged as usual.

Each run gets a database of its own (`payengine_sim_<random>`), created on the server of the
given DSN before the run and dropped after it, so no run sees another's rows. The world is
`PgWorld` on `MockClock(rate=time_scale)`; the judgement is the memory tier's (`judge`), over a
snapshot read through the Store port. The result's `tier` says what differed (store, database,
time scale, what was scaled or disabled) and that the run was not deterministic.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import attrs
import trio
from trio.testing import MockClock

from scenarios import Scenario
from simulator.determinism import free_scheduling
from simulator.pg_world import TIER_NOTES, PgWorld
from simulator.runner import RunResult, _quiet_engine_logs, judge, replay_command, resolve
from simulator.stall import STALL_S_DEFAULT, RunInconclusive, StallThread
from simulator.world import SimWorld

#: The default time scale aims the traffic phase plus a checkout's expiry at this many wall s.
TARGET_WALL_S = 120.0
#: Virtual seconds a run goes on after its traffic: abandoned checkouts expire after 30 min.
LIVENESS_ESTIMATE_S = 1800.0
#: The liveness bound is never cut below this multiple of what the scenario's tail needs.
LIVENESS_MARGIN = 1.5
TIME_SCALE_MIN = 10.0
#: Measured on a loaded 2-core machine (crash_restart, 5 crashes, the service PostgreSQL): at
#: 20 it settles; at 50 the engine's asks (10 virtual s = 0.2 wall s) time out by the hundred
#: after the crashes, units roll back by the thousand and most runs never settle.
TIME_SCALE_DEFAULT_MAX = 20.0
#: Above this a database round trip (~1-5 ms) costs seconds of virtual time, near the engine's
#: own timeouts (ask and PSP call: 10 virtual s).
TIME_SCALE_MAX = 200.0
#: The longest the liveness phase may wait, in wall seconds: a scenario's bound (4 virtual days
#: by default) would take hours at a time scale of 50.
LIVENESS_WALL_S_MAX = 1200.0
#: Administrative statements (create and drop the run's database).
ADMIN_TIMEOUT_S = 60.0
DATABASE_PREFIX = "payengine_sim_"


def liveness_needed_s(scenario: Scenario) -> float:
    """Virtual seconds the quiet phase may need in a healthy run: an abandoned checkout expires
    after 30 min, and a buyer in risk review waits up to `review_hours_max` for its verdict."""
    traffic = scenario.traffic
    review_s = traffic.review_hours_max * 3600.0 if traffic.review_p > 0 else 0.0
    return max(LIVENESS_ESTIMATE_S, review_s)


def liveness_bound_s(scenario: Scenario, time_scale: float) -> float:
    """The most virtual seconds the quiet phase may take at `time_scale`: LIVENESS_WALL_S_MAX
    of wall time, but never less than the scenario's tail needs with a margin (risk_review's
    8 h reviews take ~25 wall minutes at 20x)."""
    return max(LIVENESS_WALL_S_MAX * time_scale, LIVENESS_MARGIN * liveness_needed_s(scenario))


def default_time_scale(scenario: Scenario) -> float:
    """R such that the traffic phase and the usual liveness phase take about TARGET_WALL_S."""
    wanted = (scenario.duration_s + liveness_needed_s(scenario)) / TARGET_WALL_S
    return float(min(TIME_SCALE_DEFAULT_MAX, max(TIME_SCALE_MIN, math.ceil(wanted))))


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def _admin(dsn: str, sql: str) -> None:
    """One administrative statement on a plain asyncio loop (before or after trio runs)."""

    async def go() -> None:
        conn = await asyncpg.connect(dsn, timeout=ADMIN_TIMEOUT_S)
        try:
            await conn.execute(sql, timeout=ADMIN_TIMEOUT_S)
        finally:
            await conn.close()

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(go())


def create_run_database(server_dsn: str) -> tuple[str, str]:
    """A new empty database on `server_dsn`'s server: (its DSN, its name)."""
    name = DATABASE_PREFIX + secrets.token_hex(6)
    _admin(server_dsn, f'CREATE DATABASE "{name}"')
    return _with_database(server_dsn, name), name


def drop_run_database(server_dsn: str, name: str) -> None:
    assert name.startswith(DATABASE_PREFIX), f"refusing to drop {name!r}"
    _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _first_inconclusive(group: BaseExceptionGroup[BaseException]) -> RunInconclusive | None:
    for exc in group.exceptions:
        if isinstance(exc, RunInconclusive):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_inconclusive(exc)
            if found is not None:
                return found
    return None


def run_scenario_postgres(
    scenario: Scenario,
    seed: int | None = None,
    *,
    server_dsn: str,
    where: str = "",
    time_scale: float | None = None,
    seams: frozenset[str] = frozenset(),
    progress: Callable[[SimWorld], None] | None = None,
    verbose: bool = False,
    replay_options: str = "",
    stall_s: float = STALL_S_DEFAULT,
) -> RunResult:
    """Run `scenario` with `seed` against a fresh database on `server_dsn`'s server; judge it.

    Raises `RunInconclusive` (unwrapped from trio's exception groups) when the run could not be
    judged: the database stopped answering the world's reads (`StoreUnresponsive`) or every
    operation (`RunStalled`, after `stall_s` wall seconds without an answer).
    """
    seed = scenario.seed if seed is None else seed
    concrete = resolve(scenario, seed)
    scale = default_time_scale(concrete) if time_scale is None else time_scale
    assert 0 < scale <= TIME_SCALE_MAX, scale
    notes = list(TIER_NOTES)
    liveness_s_max = liveness_bound_s(concrete, scale)
    if concrete.liveness_s_max > liveness_s_max:
        notes.append(
            f"liveness bound cut from {concrete.liveness_s_max:,.0f} to {liveness_s_max:,.0f} "
            f"virtual s ({liveness_s_max / scale:,.0f} wall s)"
        )
        concrete = attrs.evolve(concrete, liveness_s_max=liveness_s_max)
    if concrete.faults.crash_sweep_p > 0:
        # The sweep needs the memory store's commit hooks; random crashes still run here.
        notes.append("crash sweep off: it needs the memory store's commit hooks")
        concrete = attrs.evolve(concrete, faults=attrs.evolve(concrete.faults, crash_sweep_p=0.0))
    dsn, database = create_run_database(server_dsn)
    try:
        world = PgWorld(concrete, seed, dsn=dsn, time_scale=scale, seams=seams, stall_s=stall_s)
        world.progress = progress
        last_resort = StallThread(
            f"database {database} is left behind (drop it by hand)", stall_s=world.stall_s
        )
        world.beat = last_resort.beat
        wall_start = time.perf_counter()
        with _quiet_engine_logs(verbose), free_scheduling(), last_resort:
            try:
                trio.run(world.run, clock=MockClock(rate=scale))
            except BaseExceptionGroup as group:
                inconclusive = _first_inconclusive(group)
                if inconclusive is None:
                    raise
                raise inconclusive from group
        wall_s = time.perf_counter() - wall_start
    finally:
        drop_run_database(server_dsn, database)
    options = replay_options + f" --store postgres --time-scale {scale:g}"
    result = judge(world, wall_s, replay_command(scenario, seed) + options)
    tier: dict[str, Any] = {
        "store": "postgres",
        "database": f"{database} on {where or 'the given server'} (created and dropped)",
        "time_scale": scale,
        "deterministic": False,
        "scheduler_deterministic": world.scheduling_deterministic,
        "notes": notes,
        "write_behind": world.write_behind_report(),
    }
    return attrs.evolve(result, tier=tier)
