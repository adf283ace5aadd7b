"""`payengine scenario run NAME --html`: a self-contained page per run (no script, no other
file or host) with the faults fired on a time axis, the throughput, every invariant checked and
the replay command; sampling for it leaves the run's trace hash unchanged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from payengine.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_the_html_report_is_self_contained_and_says_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["scenario", "run", "duplicate_webhooks", "--scale", "0.05"]
    plain = _run(base, capsys)
    path = tmp_path / "report.html"
    with_html = _run([*base, "--html", str(path)], capsys)
    hashes = [re.search(r"sha256 (\w+)", out).group(1) for out in (plain, with_html)]  # type: ignore[union-attr]
    assert hashes[0] == hashes[1], "sampling for the report changed the run"

    page = path.read_text()
    assert "every invariant held" in page
    for line in plain.splitlines():  # every invariant the terminal report lists, held
        found = re.match(r"  (\w+)\s+held$", line)
        if found:
            assert f"<td>{found.group(1)}</td><td>held</td>" in page
    assert "payengine scenario run duplicate_webhooks --seed 3 --scale 0.05" in page
    assert page.count('class="fault"') > 0 and "webhook_duplicated" in page
    assert 'class="bar"' in page and "traffic and faults stop" in page
    assert hashes[0] in page
    for outside in ("<script", "src=", "href=", "http://", "https://", "@import", "url("):
        assert outside not in page, outside
