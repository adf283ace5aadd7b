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
        # The run's clock itself: `trio.current_time()` looks it up on every call, and every
        # id, record change and message reads the time.
        self._trio_clock = trio.lowlevel.current_clock()
        self._anchor_s = self._trio_clock.current_time()

    def monotonic(self) -> float:
        return self._trio_clock.current_time()

    def now_ms(self) -> int:
        return self._epoch_ms + int((self._trio_clock.current_time() - self._anchor_s) * 1000)
