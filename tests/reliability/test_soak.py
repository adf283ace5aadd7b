"""The soak (issue 14): one `payengine serve` process on PostgreSQL under steady HTTP load for
SOAK_S seconds (600 in `make test-reliability`, `SOAK_S=3600` on demand) with mixed database
faults (`pg_terminate_backend`, restarts, slow phases; no SIGKILL, so the one process's memory
is what is watched). Every `sample_every_s` the engine's RSS and its open connections are
sampled; both must stay flat: RSS grows by at most `RSS_GROWTH_MIB_MAX` from the warmed-up
first third to the last third, connections never exceed the pool. Then the nemesis's checks.
A 10-second version runs in `make test`.
"""

from __future__ import annotations

import os
import statistics

import pytest

from engine.store.postgres import POOL_SIZE_MAX
from tests.reliability.nemesis import Plan, Report, run
from tests.reliability.test_nemesis import LONG, assert_sound

pytestmark = [pytest.mark.postgres]

#: The most the engine's RSS may grow from the first third of the soak to the last.
RSS_GROWTH_MIB_MAX = 48.0
#: The pool's connections, plus one the readiness probe may hold while the pool is full.
CONNECTIONS_MAX = POOL_SIZE_MAX + 1


def soak_plan(duration_s: float) -> Plan:
    minutes = duration_s / 60
    return Plan(
        duration_s=duration_s,
        kills=0,
        terminations=max(1, round(minutes * 1.5)),
        db_restarts=round(minutes / 2),
        slow_phases=max(1, round(minutes / 2)),
        clients=4,
        pause_s=(2.0, 30.0),
        db_down_s=3.0,
        slow_s=5.0,
        sample_every_s=max(2.0, min(10.0, duration_s / 60)),
    )


def assert_flat(report: Report) -> None:
    rss, connections = report.rss_mib, report.connections
    assert len(rss) >= 3, rss
    third = max(1, len(rss) // 3)
    growth = statistics.median(rss[-third:]) - statistics.median(rss[:third])
    assert growth <= RSS_GROWTH_MIB_MAX, (growth, rss)
    assert max(connections) <= CONNECTIONS_MAX, connections


def test_soak_fast() -> None:
    report = run(soak_plan(10.0))
    print("\n" + report.summary("soak (fast)"))
    assert_flat(report)
    assert_sound(report)


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="the soak runs in `make test-reliability`")
def test_soak() -> None:
    report = run(soak_plan(float(os.environ.get("SOAK_S", "600"))))
    print("\n" + report.summary("soak"))
    assert_flat(report)
    assert_sound(report)
