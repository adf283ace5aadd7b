"""Scenario reports for the demo's Reports page (filled in below)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path


def scenario_runner(reports_dir: Path | None) -> Callable[[str], Awaitable[Path]] | None:
    return None
