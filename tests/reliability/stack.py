"""The real stack for the nemesis, the soak and the failover tests: real processes on real sockets.

- `Database`: a PostgreSQL of this test's own (pgserver's embedded server in a temporary
  directory), so that stopping, restarting or slowing it touches no other test; administrative
  SQL (`pg_terminate_backend`, counting connections) goes to it directly.
- `LatencyProxy`: a TCP proxy between the engine and that database, on a thread of its own,
  that delays every answer of the server by `latency_s` (a slow database). Its address never
  changes, so the engine's DSN survives a restart of the server behind it.
- `Child`: a `payengine` subprocess whose output is read by a thread into a bounded buffer.
- `Psp`: `payengine psp serve`, the fake PSP in its own process (its state outlives the
  engine's kills); `Engine`: `payengine serve --psp-url` on a fixed port, killed with SIGKILL
  and started again the way a supervisor would.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
import trio

from payengine import database
from tests.pgfixtures import _run_asyncio

#: Start-up of a process on a loaded two-core machine (imports, migrations).
START_TIMEOUT_S = 90.0
#: Bytes moved per read by the proxy.
CHUNK_BYTES_MAX = 65536
#: Lines of a child's output kept for a failure's message.
LINES_KEPT = 200
PSP_API_KEY = "sk_test_reliability"
WEBHOOK_SECRET = "whsec_reliability"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sql(Protocol):
    """Something the checks can read the engine's database through."""

    def fetch(self, sql: str, *args: Any) -> list[Any]: ...


def fetch(dsn: str, sql: str, *args: Any) -> list[Any]:
    """The rows of one statement on `dsn`, on a fresh connection (from any thread)."""

    async def go() -> list[Any]:
        conn = await asyncpg.connect(dsn, timeout=30)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return _run_asyncio(go())


# --- the database --------------------------------------------------------------------------------


class Database:
    """An embedded PostgreSQL in a temporary directory: started, stopped, restarted at will."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="payengine-nemesis-"))
        self.dsn = database.start_embedded(self.data_dir)

    def stop(self) -> None:
        database.stop_embedded(self.data_dir)

    def start(self) -> None:
        self.dsn = database.start_embedded(self.data_dir)

    def fetch(self, sql: str, *args: Any) -> list[Any]:
        return fetch(self.dsn, sql, *args)

    def terminate_backends(self) -> int:
        """`pg_terminate_backend` of every session on the engine's database."""
        rows = self.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database.DATABASE_NAME,
        )
        return len(rows)

    def connections(self) -> int:
        rows = self.fetch(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database.DATABASE_NAME,
        )
        return int(rows[0][0])

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _unix_socket_of(dsn: str) -> str:
    from urllib.parse import parse_qs, unquote, urlsplit

    query = parse_qs(urlsplit(dsn).query)
    return f"{unquote(query['host'][0])}/.s.PGSQL.{query['port'][0]}"


class LatencyProxy:
    """TCP on 127.0.0.1:`port` to the database's Unix socket, each answer `latency_s` late."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.latency_s = 0.0
        self.port = free_port()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main, started), daemon=True)
        self._thread.start()
        assert started.wait(30), "the proxy did not start"

    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database.DATABASE_NAME}"

    async def _main(self, started: threading.Event) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._cancel:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle, listeners)
                started.set()

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            await self._forward(client)
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # one side went away (a restart, a kill): so does the other

    async def _forward(self, client: trio.SocketStream) -> None:
        async with client:
            server = await trio.open_unix_socket(_unix_socket_of(self._db.dsn))
            await self._pump_both(client, server)

    async def _pump_both(self, client: trio.SocketStream, server: trio.SocketStream) -> None:
        async with server, trio.open_nursery() as nursery:

            async def pump(source: Any, sink: Any, slow: bool) -> None:
                while data := await source.receive_some(CHUNK_BYTES_MAX):
                    if slow and self.latency_s:
                        await trio.sleep(self.latency_s)
                    await sink.send_all(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, client, server, False)
            nursery.start_soon(pump, server, client, True)

    def close(self) -> None:
        if self._token is not None and self._cancel is not None:
            cancel = self._cancel
            trio.from_thread.run_sync(cancel.cancel, trio_token=self._token)
        self._thread.join(10)


# --- processes -----------------------------------------------------------------------------------


class Child:
    """A payengine subprocess; its output lines go to a bounded buffer, read by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "payengine", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=LINES_KEPT)
        self._seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()

    def wait_for(self, text: str, timeout_s: float = START_TIMEOUT_S) -> str:
        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._seen:
            ok = self._seen.wait_for(lambda: found() or self.popen.poll() is not None, timeout_s)
            line = found()
        if not ok or line is None:
            raise AssertionError(f"no {text!r} in the output:\n" + "\n".join(self.lines))
        return line

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)

    def stop(self) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


def _env(dsn: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": dsn}
    env.pop("PAYENGINE_CONFIG", None)
    return env


class Psp:
    """The fake PSP in its own process, posting webhooks to the engine's (fixed) port."""

    def __init__(self, engine_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = ["psp", "serve", "--port", str(self.port), "--api-key", PSP_API_KEY]
        hook = f"http://127.0.0.1:{engine_port}/v1/psp/webhooks"
        argv += ["--webhook-url", hook, "--webhook-secret", WEBHOOK_SECRET]
        self.child = Child(argv, _env("postgresql://unused.invalid/none"))
        self.child.wait_for(f"fake PSP (Stripe API) on {self.url}")


class Engine:
    """`payengine serve` on a fixed port, started again after each kill as a supervisor would."""

    def __init__(self, dsn: str, psp: Psp, port: int) -> None:
        self.dsn = dsn
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self._psp = psp
        self.child: Child | None = None
        self.keys: dict[str, str] = {}
        #: Exits this test did not cause (a crash, liveness giving up), with their last lines.
        self.unexpected_exits: list[str] = []

    def start(self, *, print_keys: bool = False) -> None:
        argv = ["serve", "--port", str(self.port), "--psp-url", self._psp.url]
        argv += ["--psp-api-key", PSP_API_KEY, "--webhook-secret", WEBHOOK_SECRET]
        self.child = Child([*argv, *(["--print-keys"] if print_keys else [])], _env(self.dsn))
        if print_keys:
            for scope in ("storefront", "admin"):
                line = self.child.wait_for(f"{scope} key: ")
                self.keys[scope] = line.split(f"{scope} key: ", 1)[1].strip()

    def ready(self, timeout_s: float = 1.0) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Seconds until /readyz answers 200 (restarting the process if it exits meanwhile)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            self.supervise()
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"not ready within {timeout_s} s:\n" + self.last_lines())

    def supervise(self) -> None:
        """Restart the process if it exited by itself (Restart=on-failure)."""
        if self.child is not None and not self.child.alive():
            code = self.child.popen.returncode
            lines = list(self.child.lines)
            # Exit 2 at start-up ("cannot reach the database") is the supervisor's cue to retry,
            # expected while the database is down; anything else is a finding.
            if code != 2:
                self.unexpected_exits.append(f"exit {code}: " + " | ".join(lines[-5:]))
            time.sleep(0.2)
            self.start()

    def kill(self) -> None:
        assert self.child is not None
        self.child.kill()

    def pid(self) -> int | None:
        return self.child.popen.pid if self.child is not None and self.child.alive() else None

    def last_lines(self) -> str:
        return "" if self.child is None else "\n".join(self.child.lines)
