"""What the PostgreSQL benches count and how: statements (round trips), process CPU, a scratch
database. Bench-only instrumentation: nothing here is imported by the engine.

- Round trips: asyncpg's `Connection` query methods are wrapped at class level, so every
  statement a pooled connection sends (the unit's BEGIN and COMMIT included: asyncpg's
  `Transaction` runs them through `Connection.execute`) counts once. With `record` set, each
  statement is kept with its arguments (bench/pg_ceiling.py turns one payment's into a
  pgbench script).
- CPU: `time.process_time()` for this process (every thread), `/proc` through psutil for the
  PostgreSQL server (the postmaster and all its children: backends, WAL writer, checkpointer,
  and the children it has reaped).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
import attrs
import psutil
import trio

T = TypeVar("T")

_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


@attrs.define
class StatementCounter:
    statements: int = 0
    #: When a list, every statement is appended as (method, query, args, connection id).
    record: list[tuple[str, str, tuple[Any, ...], int]] | None = None


COUNTER = StatementCounter()


def install_statement_counter() -> StatementCounter:
    """Wrap asyncpg's query methods (once per process); returns the shared counter."""
    cls: Any = asyncpg.connection.Connection
    if getattr(cls, "_bench_counted", False):
        return COUNTER
    for name in _METHODS:
        original = getattr(cls, name)

        def wrap(original: Any, name: str) -> Any:
            @functools.wraps(original)
            async def counted(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                COUNTER.statements += 1
                if COUNTER.record is not None:
                    COUNTER.record.append((name, query, args, id(self)))
                return await original(self, query, *args, **kwargs)

            return counted

        setattr(cls, name, wrap(original, name))
    cls._bench_counted = True
    return COUNTER


def postgres_cpu_s(server_pid: int | None) -> float:
    """User + system CPU seconds of the PostgreSQL server and every child it has now."""
    if server_pid is None:
        return 0.0
    try:
        root = psutil.Process(server_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    # Backends that exited (pgbench's, at the end of its run) live on in the postmaster's
    # children times once it reaped them.
    try:
        reaped = root.cpu_times()
        total += reaped.children_user + reaped.children_system
    except psutil.Error:
        pass
    return total


def thread_cpu_s(name: str) -> float:
    """User + system CPU seconds of this process's live threads named `name` (Linux /proc)."""
    import os
    import threading

    total = 0.0
    for thread in threading.enumerate():
        if thread.name != name or thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def server_pid_of(dsn: str) -> int | None:
    """The postmaster's pid (the backend's parent), asked of the server itself."""

    async def ask() -> int | None:
        conn = await asyncpg.connect(dsn)
        try:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            try:
                return psutil.Process(backend).ppid()  # while the backend lives
            except psutil.Error:
                return None
        finally:
            await conn.close()

    return run_asyncio(ask())


def run_asyncio(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a plain asyncio loop in a fresh thread (from sync code)."""

    def go() -> T:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(coro)

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(go).result()


def fresh_database(admin_dsn: str, name: str) -> str:
    """Drop and create database `name` on the server of `admin_dsn`; returns its DSN."""

    async def make() -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_asyncio(make())
    base, _, rest = admin_dsn.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + rest if rest else "")


class LoopCounts(trio.abc.Instrument):
    """trio task steps and run-loop turns (one I/O wait per turn)."""

    def __init__(self) -> None:
        self.steps = 0
        self.turns = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1

    def before_io_wait(self, timeout: float) -> None:
        self.turns += 1


def counting(fn: Callable[..., Any], tally: list[int]) -> Callable[..., Any]:
    """`fn` (an async function) counting its calls into `tally[0]`."""

    async def counted(*args: Any, **kwargs: Any) -> Any:
        tally[0] += 1
        return await fn(*args, **kwargs)

    return counted
