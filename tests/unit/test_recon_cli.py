"""`payengine reconcile FILE` on a real database: the summary table, exit 1 when items need a
person, a re-run recognised, a dry run and an unusable file writing nothing, exit 2 with one
located line."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.reconciliation import write_stripe
from tests import pgfixtures
from tests.unit.test_cli import _run

DATA = Path(__file__).parent / "data" / "recon"


@pytest.mark.postgres
def test_reconcile_prints_a_summary_and_exits_by_what_needs_a_person(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dsn, name = pgfixtures.create_database_sync("embedded")
    try:
        report = str(DATA / "stripe_usd.csv")
        code, out, _ = _run(
            ["reconcile", report, "--dry-run"], capsys, monkeypatch, DATABASE_URL=dsn
        )
        assert code == 1 and "dry run (nothing written)" in out
        code, out, err = _run(["reconcile", report], capsys, monkeypatch, DATABASE_URL=dsn)
        assert code == 1, err
        rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[4:8]}
        assert rows == {"matched": "0", "auto_fixed": "1", "manual_review": "0", "investigate": "6"}
        assert "needs a person:" in out and "unknown_reference" in out
        code, again, _ = _run(["reconcile", report], capsys, monkeypatch, DATABASE_URL=dsn)
        assert code == 1 and "already run" in again
        empty = tmp_path / "empty.csv"
        empty.write_bytes(write_stripe([]))
        code, out, _ = _run(
            ["reconcile", str(empty), "--format", "stripe"], capsys, monkeypatch, DATABASE_URL=dsn
        )
        assert code == 0 and "new run" in out
        damaged = tmp_path / "damaged.csv"
        damaged.write_bytes((DATA / "stripe_usd.csv").read_bytes().replace(b"charge", b"chorge", 1))
        code, out, err = _run(["reconcile", str(damaged)], capsys, monkeypatch, DATABASE_URL=dsn)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and "damaged.csv: line 2, column 8:" in err
        code, _, err = _run(
            ["reconcile", str(tmp_path / "nope.csv")], capsys, monkeypatch, DATABASE_URL=dsn
        )
        assert code == 2 and err.count("\n") == 1 and "nope.csv" in err
    finally:
        pgfixtures.drop_database_sync("embedded", name)
