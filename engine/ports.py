"""Ports: the small protocols through which the core meets the world (cosmicpython style).

Production wires real adapters in `payengine/`; the simulator wires virtual ones. Code in
`engine/` and `actors/` reaches time and randomness only through these, so a seeded simulation
replays exactly (a test enforces it).
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Monotonic time for deadlines and wall time for records, from one source."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (trio's clock in production and in simulation)."""
        ...

    def now_ms(self) -> int:
        """Wall-clock time as integer milliseconds since the Unix epoch."""
        ...


class Rng(Protocol):
    """The subset of `random.Random` payengine uses; a seeded instance in simulation."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...

    def uniform(self, a: float, b: float, /) -> float: ...
