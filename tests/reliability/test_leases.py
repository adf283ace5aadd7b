"""Several engine processes on one database under load and faults (issue 14, leases).

Two (fast, in `make test`) or three (long, `make test-reliability`) `payengine serve --leases`
processes on one embedded PostgreSQL, the fake PSP in its own process (its webhooks go to the
first process, which forwards what it does not own), HTTP clients spread over all processes.
The fast run SIGKILLs one process (a supervisor starts it again); the long run also SIGSTOPs one
past its leases and resumes it (SIGCONT).

Asserted: every acknowledged payment ends COMPLETED, one charge per order at the PSP and one
capture in the ledger (nothing lost, nothing doubled), balanced books; from the PSP's call log
(a recording proxy per process), no payment's family was driven by two processes at once; from
the lease table, epochs only grow, a partition changes hands only at a new epoch, and the
killed process's partitions were taken over.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from tests.reliability.checks import check_all
from tests.reliability.multi import Call, LeasedEngine, LeaseWatch, NamedLoad, PspRecorder, overlaps
from tests.reliability.stack import Database, Psp, free_port

pytestmark = [pytest.mark.postgres]

LONG = os.environ.get("PAYENGINE_RELIABILITY") == "1"
#: Past the lease time (3 s) and its renewal: the paused process's partitions are taken over.
PAUSE_S = 7.0


@contextmanager
def stack(processes: int) -> Iterator[tuple[Database, Psp, list[LeasedEngine], list[Call]]]:
    calls: list[Call] = []
    lock = threading.Lock()
    with ExitStack() as stack:
        db = Database()
        stack.callback(db.close)
        ports = [free_port() for _ in range(processes)]
        psp = Psp(ports[0])
        stack.callback(psp.child.stop)
        engines = []
        for n, port in enumerate(ports):
            recorder = PspRecorder(psp.url, calls, lock)
            stack.callback(recorder.close)
            engine = LeasedEngine(f"e{n}", db.dsn, psp, port, recorder)
            engine.start(print_keys=n == 0)
            if n == 0:
                engine.wait_ready()  # migrations and keys first, by one process
            stack.callback(lambda e=engine: e.child and e.child.stop())
            engines.append(engine)
        for engine in engines[1:]:
            engine.keys = engines[0].keys
            engine.wait_ready()
        yield db, psp, engines, calls


def _supervise(
    engines: list[LeasedEngine], seconds: float, paused: frozenset[int] = frozenset()
) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for n, engine in enumerate(engines):
            if n not in paused:
                engine.supervise()
        time.sleep(0.1)


def _family_of(db: Database) -> dict[str, str]:
    rows = db.fetch("SELECT order_id, payment_id FROM payment_orders")
    family = {r["order_id"]: r["payment_id"] for r in rows}
    for r in db.fetch("SELECT refund_id, order_id FROM refunds"):
        family[r["refund_id"]] = family.get(r["order_id"], r["order_id"])
    return family


#: After the faults, every live process holds a share within this.
BALANCE_TIMEOUT_S = 30.0


def _wait_balanced(db: Database, processes: int) -> float:
    """Seconds until every process holds some partitions (each its fair share, roughly)."""
    started = time.monotonic()
    while time.monotonic() - started < BALANCE_TIMEOUT_S:
        rows = db.fetch(
            "SELECT owner, count(*) AS n FROM partition_leases"
            " WHERE expires_at > now() GROUP BY owner"
        )
        if len(rows) == processes and sum(int(r["n"]) for r in rows) == 64:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not balanced over {processes} processes: {rows}")


def _forwarded(engine: LeasedEngine) -> int:
    """Webhooks the PSP's target forwarded to their owner and the owner answered 2xx."""
    text = httpx.get(f"{engine.url}/metrics", timeout=30).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith('requests_forwarded_total{status="2')
    )


def run(processes: int, load_s: float, kill: int, pause: int | None) -> None:
    with stack(processes) as (db, psp, engines, calls):
        watch = LeaseWatch(db)
        loads = [
            NamedLoad(e.name, e.url, engines[0].keys["storefront"], clients=2, seed=n)
            for n, e in enumerate(engines)
        ]
        for load in loads:
            load.start()
        _supervise(engines, load_s / 3)
        engines[kill].kill()  # SIGKILL: its leases lapse, the others take them over
        engines[kill].start()  # a supervisor starts it again: a new incarnation
        _supervise(engines, load_s / 3)
        if pause is not None:
            child = engines[pause].child
            assert child is not None
            child.popen.send_signal(signal.SIGSTOP)
            try:
                _supervise(engines, PAUSE_S, paused=frozenset({pause}))
            finally:
                child.popen.send_signal(signal.SIGCONT)
        _supervise(engines, load_s / 3)
        for load in loads:
            load.finish()
        for engine in engines:
            engine.wait_ready()
        acked = [a for load in loads for a in load.stats.acknowledged]
        verdict = check_all(db, engines[0].url, engines[0].keys["admin"], psp.url, acked)
        balanced_s = _wait_balanced(db, processes)
        forwarded = _forwarded(engines[0])
        watch.stop()
        found = overlaps(list(calls), _family_of(db))
        owners = {owner for owner, _ in watch.last.values()}
        print(
            f"\nleases ({processes} processes): {verdict.acknowledged} acknowledged, "
            f"{verdict.completed} completed in {verdict.settle_s:.1f} s after the load, "
            f"{len(calls)} PSP calls, {forwarded} webhooks forwarded by e0, "
            f"{watch.takeovers} takeovers seen in "
            f"{watch.samples} samples, owners now {len(owners)} (balanced after {balanced_s:.1f} s)"
        )
        assert verdict.acknowledged > 0, "no payment was acknowledged"
        assert not verdict.lost, verdict.lost[:10]
        assert not verdict.doubled, verdict.doubled[:10]
        assert not verdict.problems, verdict.problems[:10]
        for load in loads:
            assert not load.stats.surprises, load.stats.surprises[:10]
        assert not watch.problems, watch.problems[:10]
        assert not found, found[:10]
        assert forwarded > 0, "no webhook was forwarded to its owner"
        # The killed incarnation's partitions were taken over: some epoch is past the first.
        assert max(epoch for _, epoch in watch.last.values()) >= 2
        assert all(not e.unexpected_exits for e in engines), [e.unexpected_exits for e in engines]


def test_two_processes_one_killed() -> None:
    run(processes=2, load_s=12.0, kill=1, pause=None)


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="the three-process run is in `make test-reliability`")
def test_three_processes_one_killed_one_paused() -> None:
    run(processes=3, load_s=float(os.environ.get("LEASES_LOAD_S", "45")), kill=2, pause=1)
