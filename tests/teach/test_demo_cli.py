"""`payengine demo`'s bad input: one line on stderr, exit 2, nothing started or changed."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payengine.cli import main
from teach.traffic import RATE_PER_S_MAX, parse_rate


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["demo", "--port", "0"], {}, "--port must be 1..65535"),
        (["demo", "--traffic", "fast"], {}, "--traffic must look like 5/s"),
        (["demo", "--traffic", "0/s"], {}, "--traffic must be within"),
        (["demo", "--faults", "no_such_scenario"], {}, "no_such_scenario"),
        (
            ["demo", "--reset"],
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
            "--reset empties the embedded database only",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    env: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and message in err, err
    assert out == ""


def test_a_port_in_use_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--no-narration", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err


@given(st.integers(1, int(RATE_PER_S_MAX)), st.sampled_from(["{}/s", "{}", " {} / s "]))
def test_rates_parse(rate: int, form: str) -> None:
    assert parse_rate(form.format(rate)) == rate


@given(st.text(max_size=8))
def test_anything_else_is_refused_or_a_rate_in_range(text: str) -> None:
    try:
        rate = parse_rate(text)
    except ValueError as exc:
        assert "--traffic" in str(exc)
    else:
        assert 0 < rate <= RATE_PER_S_MAX
