"""`fuzz --jobs N`: seeds run in worker processes give the verdicts and hashes of one process."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from payengine.cli import main
from scenarios import load_scenario
from simulator.parallel_fuzz import fuzz_parallel
from simulator.runner import RunResult, fuzz

#: A short swarm: the seeds' fault plans are the swarm's, the traffic lasts a virtual minute.
SHORT_S = 60.0


def _hashes(results: list[RunResult]) -> dict[int, str]:
    return {r.seed: r.trace_hash for r in results}


def test_two_jobs_give_each_seed_the_hash_of_one_job() -> None:
    base = attrs.evolve(load_scenario("swarm"), duration_s=SHORT_S)
    one: list[RunResult] = []
    two: list[RunResult] = []
    first = fuzz_parallel(base, 4, 11, jobs=1, on_run=one.append)
    second = fuzz_parallel(base, 4, 11, jobs=2, on_run=two.append)
    assert first.failure is None and second.failure is None
    assert first.runs == second.runs == 4
    assert sorted(_hashes(two)) == [11, 12, 13, 14]
    assert _hashes(one) == _hashes(two)


def test_a_seed_under_fuzz_has_the_hash_of_scenario_run_swarm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[RunResult] = []
    fuzz_parallel(load_scenario("swarm"), 2, 21, jobs=2, on_run=seen.append)
    target = tmp_path / "report.json"
    assert main(["scenario", "run", "swarm", "--seed", "21", "--json", str(target)]) == 0
    assert _hashes(seen)[21] == json.loads(target.read_text())["trace_hash"]


def test_the_parallel_fuzzer_reports_the_lowest_failing_seed_of_a_planted_bug() -> None:
    # With new_key_on_retry planted, seeds 22..27 of this short swarm pass and 28 fails
    # (checked below with one process): two workers must report 28, not a later seed.
    base = attrs.evolve(load_scenario("swarm"), duration_s=SHORT_S)
    seams = frozenset({"new_key_on_retry"})
    alone = fuzz(base, 10, 22, seams=seams, shrink_failure=False)
    assert alone.failure is not None and alone.failure.seed == 28
    outcome = fuzz_parallel(base, 10, 22, jobs=2, seams=seams, shrink_failure=False)
    assert outcome.failure is not None
    assert outcome.failure.seed == 28
    assert outcome.failure.violation == alone.failure.violation
    assert outcome.failure.trace_hash == alone.failure.trace_hash
    assert outcome.failure.replay == "payengine scenario run swarm --seed 28"


def test_jobs_below_one_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "fuzz", "--runs", "2", "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--jobs" in err
