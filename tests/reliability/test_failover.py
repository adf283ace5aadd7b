"""Failover (issue 14): payengine on a pg_auto_failover pair (primary + synchronous standby,
scripts/ha/cluster.sh) through a multi-host DSN with `target_session_attrs=read-write`. Under
HTTP load, the primary is killed (SIGKILL of its keeper, postmaster and backends: a crashed
machine). The monitor promotes the standby; the engine's connections fail, its store answers
StoreUnavailable, actors and requests retry, the pool reconnects and finds the new primary.

Asserted: no acknowledged payment lost (synchronous replication: what was committed is on the
standby), nothing doubled, books balanced, the engine never exited, and the service is back
within `DOWNTIME_S_MAX`. Measured and printed: the downtime as the clients saw it (the longest
stretch without an acknowledged payment around the kill) and as readiness saw it (/readyz
failing until it answers 200 again). Runs in `make test-reliability` (it installs the Debian
packages when missing, which needs root or sudo).
"""

from __future__ import annotations

import itertools
import shutil
import time

import pytest

from tests.reliability.checks import check_all
from tests.reliability.ha import HaCluster
from tests.reliability.load import Load
from tests.reliability.nemesis import Report
from tests.reliability.stack import Engine, Psp, free_port
from tests.reliability.test_nemesis import LONG, assert_sound

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: The service is back within this of the primary's death.
DOWNTIME_S_MAX = 30.0
#: Load before the kill and after the service is back.
WARM_S = 8.0
AFTER_S = 10.0


def _longest_gap(acked_at: list[float], killed_at: float, end: float) -> float:
    """The longest stretch without an acknowledgement from the last one before the kill."""
    times = sorted(acked_at)
    before = [t for t in times if t <= killed_at]
    marks = [before[-1] if before else killed_at] + [t for t in times if t > killed_at] + [end]
    return max(b - a for a, b in itertools.pairwise(marks))


@pytest.mark.skipif(not LONG, reason="the failover test runs in `make test-reliability`")
@pytest.mark.skipif(
    shutil.which("apt-get") is None and shutil.which("pg_autoctl") is None,
    reason="needs pg_auto_failover (Debian: scripts/ha/install.sh)",
)
def test_failover_under_load_loses_nothing() -> None:
    cluster = HaCluster()
    engine: Engine | None = None
    psp: Psp | None = None
    report = Report()
    try:
        port = free_port()
        psp = Psp(port)
        engine = Engine(cluster.dsn, psp, port)
        engine.start(print_keys=True)
        engine.wait_ready()
        load = Load(engine.url, engine.keys["storefront"], clients=6, seed=7)
        started = time.monotonic()
        load.start()
        time.sleep(WARM_S)
        old = cluster.kill_primary()
        killed_at = time.monotonic()
        went_down = None
        while time.monotonic() - killed_at < DOWNTIME_S_MAX * 3:
            engine.supervise()
            ok = engine.ready()
            if not ok and went_down is None:
                went_down = time.monotonic()
            if ok and went_down is not None:
                break
            time.sleep(0.1)
        ready_s = time.monotonic() - killed_at
        time.sleep(AFTER_S)
        load.finish()
        gap_s = _longest_gap(load.stats.acked_at, killed_at, time.monotonic())
        new = cluster.primary()
        report.verdict = check_all(
            cluster, engine.url, engine.keys["admin"], psp.url, load.stats.acknowledged
        )
        report.blocked_s_max = load.stats.blocked_s_max
        report.given_up = load.stats.given_up
        report.surprises = list(load.stats.surprises)
        report.unexpected_exits = list(engine.unexpected_exits)
        report.elapsed_s = time.monotonic() - started
        print("\n" + report.summary("failover"))
        print(
            f"failover {old} -> {new}: downtime seen by clients (no payment acknowledged) "
            f"{gap_s:.1f} s; /readyz back {ready_s:.1f} s after the kill"
        )
        assert new and new != old, cluster.state()
        assert gap_s <= DOWNTIME_S_MAX
        assert ready_s <= DOWNTIME_S_MAX
        assert_sound(report)
    finally:
        if engine is not None and engine.child is not None:
            engine.child.stop()
        if psp is not None:
            psp.child.stop()
        cluster.close()
