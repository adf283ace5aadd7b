"""The command line: one-line errors with exit code 2, and the demo on a real database."""

from __future__ import annotations

from pathlib import Path

import pytest

from payengine.cli import main
from tests import pgfixtures


def _run(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    **env: str,
) -> tuple[int, str, str]:
    for key in ("DATABASE_URL", "PAYENGINE_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["bogus"], {}, "invalid choice: 'bogus'"),
        (["migrate"], {"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with postgresql://"),
        (["migrate"], {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}, "cannot reach"),
        (["--config", "/nonexistent.toml", "migrate"], {}, "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    env: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _run(argv, capsys, monkeypatch, **env)
    assert code == 2
    assert err.count("\n") == 1 and message in err
    assert out == ""


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[engine]\nbogus = 1\n", "unknown engine setting 'bogus'"),
        (
            "[engine]\ncapture_attempts_max = 1.5\n",
            "engine.capture_attempts_max must be an integer",
        ),
        ("[engine]\nretry_delay_s_base = 0\n", "retry_delay_s_base must be positive"),
        ("nonsense = [\n", "not valid TOML"),
        ("colour = 'blue'\n", "unknown setting 'colour'"),
    ],
)
def test_bad_config_names_the_setting(
    toml: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "payengine.toml"
    path.write_text(toml)
    code, _, err = _run(["--config", str(path), "migrate"], capsys, monkeypatch)
    assert code == 2 and message in err


@pytest.mark.postgres
def test_demo_runs_a_checkout_to_booked_money(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, name = pgfixtures.create_database_sync("embedded")
    try:
        for _ in range(2):  # a second run on the same database works too (fresh PSP ids)
            code, out, _ = _run(["demo", "--no-serve"], capsys, monkeypatch, DATABASE_URL=dsn)
            assert code == 0, out
            assert "Done: payment COMPLETED" in out
            assert "redelivered evt_" in out and ": duplicate;" in out
            assert "a partial refund paid back exactly" in out
            assert "Cr refunds_clearing" in out and "Dr refunds_clearing" in out
            assert "the seller paid out" in out and "Cr bank_cash" in out
            printed = [line.split() for line in out.splitlines() if line.startswith("     ")]
            printed = [words for words in printed if words[-1].startswith("pek_")]
            assert [scope for scope, _ in printed] == ["storefront", "admin"]
            assert f"Bearer {printed[0][1]}" in out  # the curl example uses the printed key
        code, out, _ = _run(["migrate"], capsys, monkeypatch, DATABASE_URL=dsn)
        assert code == 0 and "the schema is up to date" in out
    finally:
        pgfixtures.drop_database_sync("embedded", name)
