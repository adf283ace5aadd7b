"""The trio/asyncio bridge of the PostgreSQL store: asyncpg on its own loop, in its own thread.

Why: asyncpg speaks asyncio and payengine runs on trio. Hosting asyncio inside trio
(trio-asyncio) made every asyncio callback a trio task step with its own cancel scope: a
payment cost ~500 trio task steps and ~310 run-loop turns on PostgreSQL against ~32 and 3 on
the memory store (docs/benchmarks.md, issue 15). Here asyncio runs natively (uvloop when it is
installed) in one dedicated thread per store, and trio sees one wake-up per job:

- `Bridge.run(fn, *args)` hands `fn(*args)` (an asyncio coroutine function: a port operation
  from pg_queries.py and friends, or a unit's begin/commit) to the loop through one channel,
  parks the calling trio task (`wait_task_rescheduled`) and is woken once, through the run's
  `TrioToken`, with the outcome. No trio task, channel or cancel scope per asyncio callback;
  the asyncio side never touches trio objects but the token. Both directions batch: jobs
  that arrive together cost the loop one wake-up, outcomes that finish together cost trio
  one (`Bridge`).
- Cancellation: a cancelled trio caller cancels the asyncio task and *waits for it to end*
  before `trio.Cancelled` is raised, so a caller never leaves while its statement still runs
  on its connection, and a result that arrived anyway (a connection just acquired) is
  delivered first and handled by the caller's own cleanup (the unit rolls back). Only
  `run(..., abandon_on_cancel=True)` returns at once on cancel; the store uses it for a unit's
  end under its commit timeout, and then drops the connection (`post(_terminate, conn)`).
- Errors: refusals map through pg_errors.py, outages to `StoreUnavailable` (`unavailable`).

Everything that touches an asyncpg object runs on the loop's thread (`run` or `post`); trio
code holds such objects only to hand them back. This is the only module that knows about
threads or event loops; postgres.py and pg_unit.py call `run`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import asyncpg
import outcome
import trio

from engine.errors import StoreUnavailable
from engine.store.pg_errors import map_error

log = logging.getLogger("payengine.store")

T = TypeVar("T")
P = ParamSpec("P")

#: How long closing waits for the loop's thread to finish its last tasks.
THREAD_JOIN_TIMEOUT_S = 10.0

#: SQLSTATEs of a server that is going away or not yet accepting connections (class 57P:
#: admin shutdown, crash shutdown, cannot connect now); class 08 is a connection exception.
_GOING_AWAY_STATES = frozenset({"57P01", "57P02", "57P03"})
#: What asyncpg's InternalClientError says of a protocol left mid-operation by a lost
#: connection (units use their connection one statement at a time, so nothing else says it).
_BUSY_AFTER_LOSS_SIGN = "another operation"
#: What asyncpg's InterfaceError says when the connection under it was lost.
_LOST_CONNECTION_SIGNS = ("connection is closed", "released back to the pool")

_MAPPED = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
)


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """`StoreUnavailable` when `exc` says the database did not answer, else None.

    A refused or dropped socket (OSError, which includes TimeoutError), a connection asyncpg
    knows is closed, a server shutting down or starting up: all of these pass when the
    database is back. A statement the database refused is not one of them (pg_errors.py).
    """
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if not (state.startswith("08") or state in _GOING_AWAY_STATES):
            return None
    elif isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", or a unit's connection the pool took back when the server
        # dropped it ("released back to the pool": units release only at their end); any
        # other misuse is a bug.
        if not any(sign in str(exc) for sign in _LOST_CONNECTION_SIGNS):
            return None
    elif isinstance(exc, asyncpg.exceptions.TargetServerAttributeNotMatched):
        pass  # a multi-host DSN's hosts answer, none read-write (yet): a failover under way
    elif isinstance(exc, asyncpg.exceptions.InternalClientError):
        # A connection the server dropped while an operation was under way: asyncpg's
        # protocol is left mid-operation ("cannot switch to state ...; another operation is
        # in progress") and every later statement on it fails so. The pool replaces it.
        if _BUSY_AFTER_LOSS_SIGN not in str(exc):
            return None
    elif not isinstance(exc, OSError):
        return None
    return StoreUnavailable(f"database unreachable: {type(exc).__name__}: {exc}")


def tolerate_lost_connections(loop: Any) -> None:
    """Log a lost connection's leftover asyncio error on `loop` as what it is.

    When PostgreSQL drops a connection (a restart, a failover, `pg_terminate_backend`),
    asyncpg may leave a future holding `ConnectionError('unexpected connection_lost() call')`
    that nobody awaits; asyncio reports it to the loop's exception handler. Errors that say
    the database did not answer (`unavailable`) are logged as an outage the pool survives by
    reconnecting; anything else goes to the loop's default handler. (Under trio-asyncio, the
    store's former host, the default handler raised into the engine's nursery.)
    """
    if getattr(loop, "_payengine_tolerates_lost_connections", False):
        return

    def handle(loop: Any, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException) and unavailable(exc) is not None:
            log.warning(
                "asyncpg: %s: %r (a lost connection; the pool reconnects)",
                context.get("message", "error"),
                exc,
            )
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    loop._payengine_tolerates_lost_connections = True


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (faster callbacks and socket I/O), else the selector loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.SelectorEventLoop()
    return uvloop.new_event_loop()


class _Job:
    """One crossing: what to run, who waits for it, and the asyncio task running it."""

    __slots__ = ("abandoned", "args", "caller", "fn", "kwargs", "task")

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: trio.lowlevel.Task,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.caller = caller
        self.task: asyncio.Task[Any] | None = None
        #: The caller left (cancelled, `run_abandoning`): its outcome is dropped.
        self.abandoned = False

    async def call(self) -> Any:
        return await self.fn(*self.args, **self.kwargs)


#: What the trio side hands the loop: start a job, cancel one, or call a plain function.
_START, _CANCEL, _CALL = 0, 1, 2


class Bridge:
    """Runs asyncio-native coroutine functions from trio on a loop in a dedicated thread,
    mapping refusals (pg_errors.py) and outages (`StoreUnavailable`) to the port's errors.

    Two one-way channels, each a deque under a lock with a "drain scheduled" flag: requests
    trio -> loop (one `call_soon_threadsafe` per batch, not per job) and outcomes loop -> trio
    (one `TrioToken.run_sync_soon` per batch, which reschedules every waiting caller of the
    batch). Under load many jobs share one wake-up of each thread; each channel is FIFO, so a
    job's cancel request always follows its start.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken) -> None:
        self._loop = loop
        self._token = token
        #: Jobs handed to the loop: a cost counter for benchmarks and tests.
        self.crossings = 0
        self._lock = threading.Lock()
        self._requests: collections.deque[tuple[int, Any, tuple[Any, ...]]] = collections.deque()
        self._requests_scheduled = False
        self._outcomes: collections.deque[tuple[_Job, outcome.Outcome[Any]]] = collections.deque()
        self._outcomes_scheduled = False

    async def run(
        self,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        result = await self._cross(fn, args, kwargs, abandon_on_cancel=False)
        return result  # type: ignore[no-any-return]

    async def run_abandoning(
        self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
    ) -> Any:
        """`run`, but a cancelled caller leaves at once; the job is cancelled on the loop and
        its outcome dropped. For work whose connection the caller then drops anyway."""
        return await self._cross(fn, args, kwargs, abandon_on_cancel=True)

    def post(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Call the plain function `fn(*args)` on the loop soon, without waiting for it."""
        self._request(_CALL, fn, args)

    # --- trio -> loop ---------------------------------------------------------------------

    def _request(self, kind: int, what: Any, args: tuple[Any, ...] = ()) -> None:
        with self._lock:
            self._requests.append((kind, what, args))
            if self._requests_scheduled:
                return
            self._requests_scheduled = True
        self._loop.call_soon_threadsafe(self._take_requests)

    def _take_requests(self) -> None:  # on the loop's thread
        with self._lock:
            batch = list(self._requests)
            self._requests.clear()
            self._requests_scheduled = False
        for kind, what, args in batch:
            if kind == _START:
                job: _Job = what
                job.task = self._loop.create_task(job.call())
                job.task.add_done_callback(functools.partial(self._finished, job))
            elif kind == _CANCEL:
                if what.task is not None:
                    what.task.cancel()
            else:
                what(*args)

    # --- loop -> trio ---------------------------------------------------------------------

    def _finished(self, job: _Job, task: asyncio.Task[Any]) -> None:  # on the loop's thread
        if task.cancelled():
            result: outcome.Outcome[Any] = outcome.Error(asyncio.CancelledError())
        elif (exc := task.exception()) is not None:
            result = outcome.Error(exc)
        else:
            result = outcome.Value(task.result())
        with self._lock:
            self._outcomes.append((job, result))
            if self._outcomes_scheduled:
                return
            self._outcomes_scheduled = True
        with contextlib.suppress(trio.RunFinishedError):  # the run is gone: nobody waits
            self._token.run_sync_soon(self._take_outcomes)

    def _take_outcomes(self) -> None:  # on the trio thread
        with self._lock:
            batch = list(self._outcomes)
            self._outcomes.clear()
            self._outcomes_scheduled = False
        for job, result in batch:
            if not job.abandoned:
                trio.lowlevel.reschedule(job.caller, result)

    async def _cross(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        abandon_on_cancel: bool,
    ) -> Any:
        self.crossings += 1
        job = _Job(fn, args, kwargs, trio.lowlevel.current_task())

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._request(_CANCEL, job)
            if abandon_on_cancel:
                job.abandoned = True
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED  # the outcome comes when the asyncio task ended

        self._request(_START, job)
        try:
            return await trio.lowlevel.wait_task_rescheduled(abort)
        except asyncio.CancelledError as exc:
            # Our cancel request ended the job: the caller's scope is cancelled, so this
            # checkpoint raises trio.Cancelled. Otherwise the loop cancelled it (the store is
            # closing under its caller): asyncio's CancelledError must not leak into trio.
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("the store's connection loop stopped under this call") from exc
        except _MAPPED as exc:
            mapped = map_error(exc) or unavailable(exc)
            if mapped is None:
                raise
            raise mapped from exc


class _LoopThread:
    """An asyncio loop running forever in a daemon thread, until `stop`."""

    def __init__(self) -> None:
        self.loop = _new_loop()
        tolerate_lost_connections(self.loop)
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="payengine-asyncpg", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@asynccontextmanager
async def open_bridge() -> AsyncIterator[Bridge]:
    """A loop in a thread of its own for as long as the caller needs it; the thread ends (its
    leftover asyncio tasks cancelled) when the block does."""
    host = _LoopThread()
    try:
        yield Bridge(host.loop, trio.lowlevel.current_trio_token())
    finally:
        host.stop()
        with trio.move_on_after(THREAD_JOIN_TIMEOUT_S, shield=True):
            await trio.to_thread.run_sync(host.thread.join, abandon_on_cancel=True)
