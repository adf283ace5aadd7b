"""The `Clock` port on trio's clock: monotonic time and wall time from one source.

Wall time is an anchor (epoch milliseconds, given by the caller: the real time in production,
a fixed epoch in simulation) plus trio's elapsed time, so under trio's MockClock every
timestamp is virtual and a seeded run replays exactly.
"""

from __future__ import annotations

import trio


class TrioClock:
    def __init__(self, epoch_ms: int) -> None:
        """Must be created inside `trio.run`: it reads trio's clock to set its anchor."""
        assert isinstance(epoch_ms, int) and epoch_ms >= 0
        self._epoch_ms = epoch_ms
        self._anchor_s = trio.current_time()

    def monotonic(self) -> float:
        return trio.current_time()

    def now_ms(self) -> int:
        return self._epoch_ms + int((trio.current_time() - self._anchor_s) * 1000)
