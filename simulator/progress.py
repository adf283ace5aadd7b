"""Progress reports that leave a run's schedule alone.

Why not a ticker task: a task of its own joins trio's batches of ready tasks, and the seeded
scheduler shuffles each batch, so a run with a progress bar interleaved differently from the same
seed without one (`scenario run swarm --seed N` had another trace hash than that seed under
`fuzz`). A trio instrument is called by the run loop itself, outside any task, before each wait
for I/O (every loop iteration, also on the autojump clock), so it changes no schedule; the
progress callback throttles itself by wall time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

#: Run-loop turns between two calls of the report (which throttles itself by wall time): a
#: scenario turns the loop 10-50k times per wall second, and a call on every turn cost ~2% of
#: a `scenario run`.
LOOP_TURNS_PER_REPORT = 64


class ProgressInstrument(trio.abc.Instrument):
    def __init__(self, report: Callable[[], Any]) -> None:
        self._report = report
        self._turns = 0

    def before_io_wait(self, timeout: float) -> None:
        self._turns += 1
        if self._turns >= LOOP_TURNS_PER_REPORT:
            self._turns = 0
            self._report()
