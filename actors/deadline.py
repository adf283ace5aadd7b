"""`fail_after_s`: trio's `fail_after`, as a plain class.

`trio.fail_after` is a generator-based context manager wrapped around `move_on_after`: each
use costs a generator and contextlib's wrapper (about six calls) on top of the cancel scope, and
every PSP call and every notifier delivery takes one. This one enters the same cancel scope
and raises the same `trio.TooSlowError` when its deadline cancelled the block.
"""

from __future__ import annotations

from types import TracebackType

import trio


class fail_after_s:
    """`with fail_after_s(seconds):` runs the block within `seconds`, else trio.TooSlowError."""

    __slots__ = ("_scope",)

    def __init__(self, seconds: float) -> None:
        self._scope = trio.move_on_after(seconds)

    def __enter__(self) -> trio.CancelScope:
        return self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        suppressed = self._scope.__exit__(exc_type, exc, traceback)
        if self._scope.cancelled_caught:
            raise trio.TooSlowError
        return suppressed
