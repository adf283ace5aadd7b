"""The nemesis: faults at random moments on the real stack under load, then the checks.

Faults (`Plan`): SIGKILL of `payengine serve` (started again at once, as a supervisor does),
`pg_terminate_backend` of its connections, a restart of PostgreSQL (stop, down for a while,
start), and a slow database (the proxy delays each answer). Between faults the engine runs
for a random pause, so kills land anywhere: mid-request, mid-capture, mid-recovery.

Measured: each kill's recovery (SIGKILL until the new process's /readyz answers 200), each
database restart's recovery (the server back until /readyz answers 200), and, in the soak,
the engine's RSS and the database's connection count every `sample_every_s`.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import psutil

from tests.reliability.checks import Verdict, check_all
from tests.reliability.load import Load
from tests.reliability.stack import Database, Engine, LatencyProxy, Psp, free_port


@attrs.frozen
class Plan:
    duration_s: float
    kills: int
    terminations: int = 1
    db_restarts: int = 1
    slow_phases: int = 1
    clients: int = 6
    pause_s: tuple[float, float] = (1.0, 4.0)
    db_down_s: float = 3.0
    slow_latency_s: float = 0.15
    slow_s: float = 4.0
    seed: int = 14
    sample_every_s: float = 5.0


@attrs.define
class Report:
    kill_recovery_s: list[float] = attrs.Factory(list)
    db_recovery_s: list[float] = attrs.Factory(list)
    terminated: int = 0
    slow_phases: int = 0
    rss_mib: list[float] = attrs.Factory(list)
    connections: list[int] = attrs.Factory(list)
    unexpected_exits: list[str] = attrs.Factory(list)
    verdict: Verdict = attrs.Factory(Verdict)
    blocked_s_max: float = 0.0
    given_up: int = 0
    surprises: list[str] = attrs.Factory(list)
    elapsed_s: float = 0.0

    def summary(self, title: str) -> str:
        def spread(xs: list[float]) -> str:
            if not xs:
                return "-"
            return f"median {statistics.median(xs):.2f} s, max {max(xs):.2f} s"

        v = self.verdict
        lines = [
            f"== {title} ({self.elapsed_s:.0f} s) ==",
            f"kills: {len(self.kill_recovery_s)}, pg_terminate_backend: {self.terminated}, "
            f"database restarts: {len(self.db_recovery_s)}, slow phases: {self.slow_phases}",
            f"payments acknowledged: {v.acknowledged}, completed: {v.completed}, "
            f"lost: {len(v.lost)}, doubled: {len(v.doubled)}, other problems: {len(v.problems)}",
            f"longest blocked retry: {self.blocked_s_max:.2f} s; requests given up: "
            f"{self.given_up}; surprises: {len(self.surprises)}; "
            f"unexpected exits: {len(self.unexpected_exits)}",
            f"recovery after a kill: {spread(self.kill_recovery_s)}",
            f"recovery after a database restart: {spread(self.db_recovery_s)}",
            f"settled after the last fault in {v.settle_s:.1f} s",
        ]
        if self.rss_mib:
            lines.append(
                f"engine RSS: first {self.rss_mib[0]:.0f} MiB, max {max(self.rss_mib):.0f} MiB, "
                f"last {self.rss_mib[-1]:.0f} MiB ({len(self.rss_mib)} samples); connections: "
                f"min {min(self.connections)}, max {max(self.connections)}, "
                f"last {self.connections[-1]}"
            )
            step = max(1, len(self.rss_mib) // 8)
            trace = ", ".join(f"{r:.0f}" for r in self.rss_mib[::step])
            lines.append(f"engine RSS trace (MiB, every {step} samples): {trace}")
        for name, items in (
            ("lost", v.lost),
            ("doubled", v.doubled),
            ("problems", v.problems),
            ("surprises", self.surprises),
            ("unexpected exits", self.unexpected_exits),
        ):
            lines += [f"  {name}: {item}" for item in items[:10]]
        return "\n".join(lines)


@contextmanager
def real_stack() -> Iterator[tuple[Database, LatencyProxy, Psp, Engine]]:
    db = Database()
    proxy = LatencyProxy(db)
    engine: Engine | None = None
    psp: Psp | None = None
    try:
        engine_port = free_port()
        psp = Psp(engine_port)
        engine = Engine(proxy.dsn(), psp, engine_port)
        engine.start(print_keys=True)
        engine.wait_ready()
        yield db, proxy, psp, engine
    finally:
        if engine is not None and engine.child is not None:
            engine.child.stop()
        if psp is not None:
            psp.child.stop()
        proxy.close()
        db.close()


def _faults(plan: Plan, rng: random.Random) -> list[str]:
    faults = (
        ["kill"] * plan.kills
        + ["terminate"] * plan.terminations
        + ["restart"] * plan.db_restarts
        + ["slow"] * plan.slow_phases
    )
    rng.shuffle(faults)
    return faults


def run(plan: Plan) -> Report:
    """The whole run: stack up, load on, faults spread over `duration_s`, load off, checks."""
    rng = random.Random(plan.seed)
    report = Report()
    started = time.monotonic()
    with real_stack() as (db, proxy, psp, engine):
        load = Load(engine.url, engine.keys["storefront"], plan.clients, plan.seed)
        load.start()
        sampling = threading.Event()
        sampler = threading.Thread(
            target=_sample_until, args=(sampling, plan.sample_every_s, report, db, engine)
        )
        sampler.start()
        faults = _faults(plan, rng)
        deadline = started + plan.duration_s
        try:
            for i, fault in enumerate(faults):
                # Spread what is left of the faults over what is left of the time.
                left = max(0.0, deadline - time.monotonic())
                pause = min(rng.uniform(*plan.pause_s), left / max(1, len(faults) - i))
                _supervise_until(engine, time.monotonic() + pause)
                _inflict(fault, plan, report, db, proxy, engine)
            _supervise_until(engine, deadline)
        finally:
            sampling.set()
            sampler.join()
        load.finish()
        engine.wait_ready()
        report.verdict = check_all(
            db, engine.url, engine.keys["admin"], psp.url, load.stats.acknowledged
        )
        report.blocked_s_max = load.stats.blocked_s_max
        report.given_up = load.stats.given_up
        report.surprises = list(load.stats.surprises)
        report.unexpected_exits = list(engine.unexpected_exits)
    report.elapsed_s = time.monotonic() - started
    return report


def _inflict(
    fault: str, plan: Plan, report: Report, db: Database, proxy: LatencyProxy, engine: Engine
) -> None:
    if fault == "kill":
        engine.kill()
        killed = time.monotonic()
        engine.start()
        engine.wait_ready()
        report.kill_recovery_s.append(time.monotonic() - killed)
    elif fault == "terminate":
        db.terminate_backends()
        report.terminated += 1
    elif fault == "restart":
        db.stop()
        time.sleep(plan.db_down_s)
        db.start()
        report.db_recovery_s.append(engine.wait_ready())
    elif fault == "slow":
        proxy.latency_s = plan.slow_latency_s
        time.sleep(plan.slow_s)
        proxy.latency_s = 0.0
        report.slow_phases += 1
    else:
        raise AssertionError(fault)


def _supervise_until(engine: Engine, until: float) -> None:
    while (left := until - time.monotonic()) > 0:
        engine.supervise()
        time.sleep(min(0.1, left))


def _sample_until(
    done: threading.Event, every_s: float, report: Report, db: Database, engine: Engine
) -> None:
    while not done.is_set():
        _sample(report, db, engine)
        done.wait(every_s)


def _sample(report: Report, db: Database, engine: Engine) -> None:
    pid = engine.pid()
    if pid is None:
        return
    try:
        rss_mib = psutil.Process(pid).memory_info().rss / 2**20
        connections = db.connections()
    except Exception:  # between a kill and a restart, or the database restarting: no sample
        return
    report.rss_mib.append(rss_mib)
    report.connections.append(connections)
