"""Liveness: is the engine still there? `/healthz` answers from it; `serve` exits on it.

Why it exists (issue 14): when the engine's nursery ended with an error, the process went on
answering `/healthz` 200 and `/readyz` "shutting down" forever, and never exited, so no
supervisor restarted it. Outages no longer end the engine (actors/runtime.py), so an engine
that is gone is a bug or a resource failure: the lifespan task records it here, `/healthz`
turns 503, and `payengine serve` stops and exits non-zero for its supervisor to restart it.
"""

from __future__ import annotations

import attrs
import trio

#: The key under `app.extensions` holding the app's `Liveness`.
LIVENESS_EXTENSION = "payengine.liveness"


@attrs.define(eq=False)
class Liveness:
    #: Set once, when the engine ended while the app was serving.
    gone: trio.Event = attrs.Factory(trio.Event)
    reason: str | None = None

    def engine_gone(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.gone.set()

    @property
    def alive(self) -> bool:
        return self.reason is None
