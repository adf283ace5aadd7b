"""Failures the fuzzer once found, kept as regression tests with their shrunk scenario.

The first: a capture.failed notice for a failed *attempt* arrived late, after a retry under
the same key had captured but its answer was lost; the order actor trusted the notice and
failed a captured order. The order actor now confirms such a notice with `query_capture`.
"""

from __future__ import annotations

from pathlib import Path

from scenarios import load_scenario
from simulator.runner import run_scenario

DATA = Path(__file__).parent / "data"


def test_late_failed_attempt_notice_after_a_lost_capture_answer() -> None:
    scenario = load_scenario(str(DATA / "failed_attempt_after_lost_answer.toml"))
    result = run_scenario(scenario)
    assert result.ok, result.violation
