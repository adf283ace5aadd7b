"""The event trace of a simulation run, and its hash: the run's fingerprint.

Every significant event (a PSP call and the action the fault plan chose, a webhook delivery and
its answer, a state change announced through the outbox, a fault, a crash) is one line
`<virtual ms>|<kind>|<field>|...`, fed to SHA-256 as it happens. Two runs with the same seed
must produce the same lines in the same order, so the same hash; a differing hash means some
nondeterminism leaked in (the determinism test runs one seed in two processes with different
PYTHONHASHSEED). Only the most recent lines are kept in memory, for a violation's context.
"""

from __future__ import annotations

import hashlib
from collections import deque

#: How many recent trace lines a run keeps for its report.
TRACE_LINES_KEPT_MAX = 50


class Trace:
    def __init__(self, lines_kept_max: int = TRACE_LINES_KEPT_MAX) -> None:
        self._hash = hashlib.sha256()
        self.events = 0
        self.recent: deque[str] = deque(maxlen=lines_kept_max)

    def add(self, now_ms: int, kind: str, *fields: object) -> None:
        line = "|".join((str(now_ms), kind, *(str(f) for f in fields)))
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.events += 1
        self.recent.append(line)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
