"""A TCP proxy in front of a test's PostgreSQL that a test can cut and restore: an outage.

Why a proxy: stopping the shared embedded server would take every other test's database down
with it, and `pg_terminate_backend` only drops sessions (the server still accepts new ones).
Cutting the proxy is what a partition or a stopped server looks like from the engine: every
open connection drops, every new one is refused, until `restore()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import trio

#: Bytes moved per read between the client and the server.
CHUNK_BYTES_MAX = 65536


class CuttableProxy:
    def __init__(self, dsn: str) -> None:
        self._target = dsn
        self.port = 0
        self._cut = False
        self._restored = trio.Event()
        self._serving: trio.CancelScope | None = None

    def dsn(self) -> str:
        """The target's DSN, pointed at the proxy."""
        parts = urlsplit(self._target)
        query = {k: v for k, v in parse_qs(parts.query).items() if k not in ("host", "port")}
        user = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, doseq=True)))

    async def _open_target(self) -> trio.SocketStream:
        parts = urlsplit(self._target)
        query = parse_qs(parts.query)
        port = int(query.get("port", [parts.port or 5432])[0])
        host = unquote(query["host"][0]) if "host" in query else parts.hostname or "127.0.0.1"
        if host.startswith("/"):
            return await trio.open_unix_socket(f"{host}/.s.PGSQL.{port}")
        return await trio.open_tcp_stream(host, port)

    async def _forward(self, client: trio.SocketStream) -> None:
        async with client, await self._open_target() as server, trio.open_nursery() as nursery:

            async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
                while data := await source.receive_some(CHUNK_BYTES_MAX):
                    await sink.send_all(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, client, server)
            nursery.start_soon(pump, server, client)

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            await self._forward(client)
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # one side went away: so does the other

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            if self._cut:
                await self._restored.wait()
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            with trio.CancelScope() as self._serving:
                async with trio.open_nursery() as nursery:
                    await nursery.start(trio.serve_listeners, self._handle, listeners)
                    if not started:
                        started = True
                        task_status.started()
            for listener in listeners:
                await listener.aclose()

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        self._cut = True
        self._restored = trio.Event()
        if self._serving is not None:
            self._serving.cancel()

    def restore(self) -> None:
        self._cut = False
        self._restored.set()


@asynccontextmanager
async def open_cuttable_proxy(dsn: str) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(dsn)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
