"""Timers: one task fires scheduled callbacks in deadline order (a heap, not a task per timer).

Why its own task: a checkout's expiry, an order's retry backoff and the like would otherwise be
a sleeping task each, one per payment in flight; a heap and one task cost a tuple each. Timers
are not durable: after a restart, recovery recomputes them from the store.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

Reply = TypeVar("Reply")


class TimerHandle:
    """A scheduled callback; `cancel()` before it fires and it never runs."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], Awaitable[None]]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Idempotent; a no-op once the callback has started."""
        self.cancelled = True


class Timers(Generic[Reply]):
    """One task that fires scheduled callbacks in deadline order (a heap, not a task per timer).

    Timers are not durable: after a restart, recovery recomputes them from the store. A
    cancelled timer stays in the heap until its deadline (then it is dropped unfired), so the
    heap holds what it held before the cancel, never more.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self._wakeup = trio.Event()
        self.cancelled_dropped = 0

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, deadline: float, callback: Callable[[], Awaitable[None]]) -> TimerHandle:
        self._seq += 1
        handle = TimerHandle(callback)
        heapq.heappush(self._heap, (deadline, self._seq, handle))
        if self._heap[0][1] == self._seq:
            self._wakeup.set()
        return handle

    def call_later(self, delay_s: float, callback: Callable[[], Awaitable[None]]) -> TimerHandle:
        return self.call_at(trio.current_time() + max(0.0, delay_s), callback)

    async def run(
        self, nursery: trio.Nursery, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, handle = heapq.heappop(self._heap)
                if handle.cancelled:
                    self.cancelled_dropped += 1
                    continue
                nursery.start_soon(handle.callback)
            deadline = self._heap[0][0] if self._heap else math.inf
            self._wakeup = trio.Event()
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
        raise AssertionError("Timers.run never returns")
