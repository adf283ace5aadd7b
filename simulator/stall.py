"""Stall watch for real-time runs: a run that stops making progress says where, and ends.

Why: the postgres tier runs in real time against a real database (asyncpg in the store's own
asyncio thread). A wait that never ends (a connection the pool never hands out, an asyncio
future that ignores its cancellation, a main thread blocked in a call) would otherwise leave a
silent process at 0% CPU, which is what one early full-size run did. Two watchers, each with
a bound:

- `watch_progress`, a trio task: when the `progress` count (database operations answered) has
  not moved for `stall_s` wall seconds it raises `RunStalled`, whose message holds where every
  trio task is waiting (grouped, most common first). The run's nursery then cancels the rest.
- `StallThread`, a daemon thread, for when trio itself cannot act (a blocked main thread, or a
  cancelled wait that never returns): once progress has not moved for `stall_s + grace_s` it
  prints the Python stack of every thread and ends the process with `EXIT_STALLED`.

A healthy run answers database reads every few wall seconds (the oracle ticks once a virtual
minute, the quiet detection polls), so `stall_s` can be generous and still catch a wedge.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import trio

#: No database operation answered for this many wall seconds: the run has stalled.
STALL_S_DEFAULT = 180.0
#: After a stall is raised in trio, the run has this long to end before the thread ends it.
GRACE_S_DEFAULT = 60.0
#: How often (wall seconds) the trio task looks at the progress count.
POLL_S = 1.0
#: Distinct waiting places listed in a stall report.
PLACES_SHOWN_MAX = 25
#: Process exit code when the thread has to end a wedged run.
EXIT_STALLED = 3

_PROJECT = str(Path(__file__).resolve().parent.parent)


class RunInconclusive(Exception):
    """The run could not be judged: it stopped before the oracle could look at a final state."""


class RunStalled(RunInconclusive):
    """No database operation answered for the watch's `stall_s` (where tasks wait inside)."""


def _ours(path: str) -> bool:
    return path.startswith(_PROJECT) and "site-packages" not in path


def _trio_core(path: str) -> bool:
    return f"trio{os.sep}_core" in path or f"{os.sep}outcome{os.sep}" in path


def _place(task: trio.lowlevel.Task) -> str:
    """Where `task` waits: its innermost frame in this project, then the innermost frame
    outside trio's core (the library call it waits in), when that is another frame."""
    frames = [frame for frame, _ in task.iter_await_frames()]
    linenos = [lineno for _, lineno in task.iter_await_frames()]
    if not frames:
        return "(not started)"

    def fmt(i: int) -> str:
        code = frames[i].f_code
        path = code.co_filename
        path = os.path.relpath(path, _PROJECT) if _ours(path) else Path(path).name
        return f"{path}:{linenos[i]} {code.co_name}"

    outside = [i for i, f in enumerate(frames) if not _trio_core(f.f_code.co_filename)]
    inner = outside[-1] if outside else len(frames) - 1
    ours = [i for i, f in enumerate(frames) if _ours(f.f_code.co_filename)]
    if ours and ours[-1] != inner:
        return f"{fmt(ours[-1])} -> {fmt(inner)}"
    return fmt(inner)


def _name_kind(name: str) -> str:
    """A task name without its ids, so a thousand order actors group as one line."""
    return name.split("[", 1)[0].split(" ", 1)[0][:60]


def trio_task_report() -> str:
    """Every trio task of this run, grouped by where it waits, most common first."""
    places: Counter[tuple[str, str]] = Counter()
    root = trio.lowlevel.current_root_task()
    assert root is not None, "called inside a trio run"
    stack = [root]
    while stack:
        task = stack.pop()
        places[(_place(task), _name_kind(task.name))] += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    lines = [f"{sum(places.values())} trio tasks, by where they wait:"]
    for (place, kind), count in places.most_common(PLACES_SHOWN_MAX):
        lines.append(f"  {count:>5} x {place}  ({kind})")
    if len(places) > PLACES_SHOWN_MAX:
        lines.append(f"  ... and {len(places) - PLACES_SHOWN_MAX} more places")
    return "\n".join(lines)


class StallThread:
    """The last resort: ends a process whose run stopped answering and could not stop itself.

    `beat()` records progress; the thread wakes every second and, once `stall_s + grace_s`
    wall seconds pass without a beat, writes `what` and every thread's stack to `out` and calls
    `os._exit(EXIT_STALLED)`. Use as a context manager around the run.
    """

    def __init__(
        self,
        what: str,
        *,
        stall_s: float = STALL_S_DEFAULT,
        grace_s: float = GRACE_S_DEFAULT,
        out: TextIO | None = None,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        assert stall_s > 0 and grace_s > 0, (stall_s, grace_s)
        self.what = what
        self.limit_s = stall_s + grace_s
        self._out = out
        self._exit = exit
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)

    def beat(self) -> None:
        self._last = time.monotonic()

    def __enter__(self) -> StallThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            idle_s = time.monotonic() - self._last
            if idle_s < self.limit_s:
                continue
            out = self._out if self._out is not None else sys.stderr
            out.write(
                f"payengine: the run is wedged: no progress for {idle_s:.0f} wall s and it did "
                f"not stop by itself; {self.what}; the Python stack of every thread follows\n"
            )
            out.flush()
            faulthandler.dump_traceback(file=out, all_threads=True)
            out.flush()
            self._exit(EXIT_STALLED)
            return


async def watch_progress(
    progress: Callable[[], int],
    *,
    stall_s: float = STALL_S_DEFAULT,
    time_scale: float = 1.0,
    beat: Callable[[], None] = lambda: None,
) -> None:
    """Raise `RunStalled` once `progress()` has not changed for `stall_s` wall seconds.

    The run's clock may run `time_scale` times faster than the wall; the poll sleeps on it, the
    stall is measured on the wall (`time.monotonic`). `beat` is called at each change.
    """
    assert stall_s > 0 and time_scale > 0, (stall_s, time_scale)
    seen = progress()
    last = time.monotonic()
    while True:
        await trio.sleep(POLL_S * time_scale)
        now = time.monotonic()
        count = progress()
        if count != seen:
            seen, last = count, now
            beat()
        elif now - last >= stall_s:
            raise RunStalled(
                f"no database operation answered for {now - last:.1f} wall s "
                f"(stall limit {stall_s:g} s)\n{trio_task_report()}"
            )
