"""`payengine scenario`: exit codes, the report and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from payengine.cli import main


def test_list_shows_the_shipped_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "list"]) == 0
    out = capsys.readouterr().out
    assert "happy_path" in out and "black_friday" in out


def test_run_reports_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.json"
    code = main(["scenario", "run", "happy_path", "--scale", "0.02", "--json", str(target)])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    assert "every invariant held" in captured.out
    assert "replay     payengine scenario run happy_path --seed 1 --scale 0.02" in captured.out
    report = json.loads(target.read_text())
    assert report["ok"] is True and len(report["trace_hash"]) == 64


def test_bad_input_is_one_line_and_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[faults]\npsp_hang_p = "often"\n')
    assert main(["scenario", "run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "faults.psp_hang_p" in err
    assert main(["scenario", "run", "nope"]) == 2


def test_a_violation_exits_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator.runner as runner

    real = runner.run_scenario

    def with_bug(*args, **kwargs):  # type: ignore[no-untyped-def]
        return real(*args, seams=frozenset({"capture_without_idempotency_key"}), **kwargs)

    monkeypatch.setattr(runner, "run_scenario", with_bug)
    assert main(["scenario", "run", "happy_path", "--scale", "0.02"]) == 1
