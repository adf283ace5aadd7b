"""The reply slot of an actor `ask` (actors/runtime.py): one reply, one waiter, parked with
trio's low-level API. Why not a memory channel or an Event: `ask` is on every request path,
and a slot costs no parking lot and no channel state."""

from __future__ import annotations

from typing import Any

import trio


class ReplySlot:
    """A one-shot reply with one waiter (the asker), parked with trio's low-level API: lighter
    than a memory channel or an Event (and its parking lot), and `ask` is on every request
    path."""

    __slots__ = ("_waiter", "abandoned", "done", "ok", "value")

    def __init__(self) -> None:
        self.done = False
        self.abandoned = False  # the asker gave up (deadline): the reply goes nowhere
        self.ok = False
        self.value: Any = None
        self._waiter: trio.lowlevel.Task | None = None

    def set(self, ok: bool, value: Any) -> None:
        assert not self.done, "an ask is answered once"
        self.ok = ok
        self.value = value
        self.done = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> None:
        if self.done:
            await trio.lowlevel.checkpoint()
            return
        assert self._waiter is None, "one asker waits for a reply"
        self._waiter = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._waiter = None  # cancelled (the ask deadline): no reschedule will come
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
