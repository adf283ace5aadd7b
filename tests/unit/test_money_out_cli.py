"""`payengine payouts` and `payengine refunds create`: usage errors are one line, exit 2."""

from __future__ import annotations

import pytest

from payengine.cli import main


def test_refund_without_a_key_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYENGINE_API_KEY", raising=False)
    assert main(["refunds", "create", "ord_1", "--amount", "1.00"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "API key" in err


def test_refund_to_an_unreachable_api_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["refunds", "create", "ord_1", "--api-url", "http://127.0.0.1:9", "--key", "k"])
    assert code == 2
    assert "cannot reach the API" in capsys.readouterr().err


def test_payouts_list_limit_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["payouts", "list", "m1", "--limit", "0"]) == 2
    assert main(["payouts", "nothing", "x"]) == 2
    assert capsys.readouterr().err.count("\n") == 2
