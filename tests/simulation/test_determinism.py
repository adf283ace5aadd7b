"""Same seed, same trace: in one process, and in two processes with different PYTHONHASHSEED."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios import load_scenario
from simulator.runner import run_scenario, scaled

ROOT = Path(__file__).resolve().parents[2]
#: `everything` has every fault, crashes included: the hardest run to keep reproducible.
SCALE = 0.1

#: Besides `everything`: the crash sweep (crashes placed at commit boundaries) and outages
#: (correlated faults) each add a schedule of their own that must replay too.
NAMES = ["everything", "crash_sweep", "psp_outage", "chargebacks"]

SCRIPT = """
import sys
from scenarios import load_scenario
from simulator.runner import run_scenario, scaled
result = run_scenario(scaled(load_scenario(sys.argv[1]), float(sys.argv[2])))
print(result.trace_hash, result.trace_events)
"""


def _hash_in_subprocess(hash_seed: str, name: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, name, str(SCALE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_in_two_processes_with_different_hash_seeds_gives_one_trace_hash(
    name: str,
) -> None:
    first = _hash_in_subprocess("1", name)
    second = _hash_in_subprocess("4242", name)
    assert first == second
    in_process = run_scenario(scaled(load_scenario(name), SCALE))
    assert first == f"{in_process.trace_hash} {in_process.trace_events}"


def test_another_seed_gives_another_trace() -> None:
    scenario = scaled(load_scenario("everything"), SCALE)
    assert run_scenario(scenario, 1).trace_hash != run_scenario(scenario, 2).trace_hash


def test_trio_scheduling_is_restored_after_a_run() -> None:
    from trio._core import _run

    before = (_run._ALLOW_DETERMINISTIC_SCHEDULING, _run._r.getstate())
    run_scenario(scaled(load_scenario("happy_path"), 0.02))
    assert (_run._ALLOW_DETERMINISTIC_SCHEDULING, _run._r.getstate()) == before
