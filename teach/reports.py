"""The scenario runs the demo makes (its Reports page): each is `payengine scenario run NAME
--html` in a worker thread (the simulator runs its own trio loop in virtual time), at a tenth of
the scenario's traffic time so a run takes seconds; the pages list every report in the folder.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from teach.report_html import Sampler, render

#: The demo runs scenarios scaled down by this factor (`--scale`), so the page answers quickly.
DEMO_SCALE = 0.1


def run_to_html(name: str, reports_dir: Path, scale: float = DEMO_SCALE) -> Path:
    """Run scenario `name` (shipped name or file) and write its report; ValueError when the
    scenario cannot be loaded."""
    from scenarios import ScenarioError, load_scenario
    from simulator.runner import run_scenario, scaled

    try:
        scenario = scaled(load_scenario(name), scale)
    except ScenarioError as exc:
        raise ValueError(str(exc)) from None
    sampler = Sampler()
    result = run_scenario(scenario, None, progress=sampler, replay_options=f" --scale {scale:g}")
    sampler.finish(result)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = reports_dir / f"{stamp}-{scenario.name}-seed{result.seed}.html"
    path.write_text(render(result, sampler.samples))
    return path


def scenario_runner(reports_dir: Path | None) -> Callable[[str], Awaitable[Path]] | None:
    """What the Reports page calls to run a scenario; None (no form) without a folder."""
    if reports_dir is None:
        return None
    folder = reports_dir

    async def run(name: str) -> Path:
        return await trio.to_thread.run_sync(run_to_html, name, folder)

    return run
