"""The HTTP bench's load generator: raw HTTP/1.1 over trio sockets, closed or open loop.

Why not httpx: on this 2-core machine the client shares the CPU with the server, and httpx
spends about as much CPU per request as the server does, so it measured itself. This client
sends pre-encoded requests on keep-alive connections and parses only the status line and
Content-Length of each answer (the server always sends one), which costs a small fraction of
the server's time per request; the bench reports the client's CPU share so this stays checked.

- closed loop (`closed_loop`): `concurrency` connections, each sending its next request as
  soon as the previous answer arrived. The figure is sustained throughput.
- open loop (`open_loop`): requests are due at a fixed rate whatever the answers do; each due
  request takes an idle connection or opens one. Latency is measured from the moment the
  request was *due*, not sent, so a client that falls behind shows as latency rather than
  hiding it (no coordinated omission). The figure is p50/p99 at a rate below saturation.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

#: Per-request deadline; an answer later than this counts as an error `timeout`.
REQUEST_TIMEOUT_S = 30.0
#: Open loop: connections opened at most (a due request waits for one past this).
CONNECTIONS_MAX = 512
#: Bytes read per receive call.
RECEIVE_BYTES_MAX = 65_536
HEADERS_END = b"\r\n\r\n"
#: How a keep-alive connection the server closed while idle fails (Hypercorn closes idle ones
#: after its keep-alive timeout); the request is sent again once on a new connection, as HTTP
#: clients do (safe here: every request carries an Idempotency-Key).
STALE = frozenset({"BrokenResourceError", "ConnectionClosed"})


class ConnectionClosed(Exception):
    """The server closed the connection before a full answer."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(await trio.open_tcp_stream(host, port))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def _fill(self) -> None:
        chunk = await self._stream.receive_some(RECEIVE_BYTES_MAX)
        if not chunk:
            raise ConnectionClosed("the server closed the connection")
        self._buffer += chunk

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one pre-encoded request; the status and body of its answer."""
        await self._stream.send_all(data)
        while (end := self._buffer.find(HEADERS_END)) < 0:
            await self._fill()
        head = bytes(self._buffer[:end])
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        assert length is not None, "the server sent no Content-Length"
        total = end + len(HEADERS_END) + length
        while len(self._buffer) < total:
            await self._fill()
        body = bytes(self._buffer[end + len(HEADERS_END) : total])
        del self._buffer[:total]
        return status, body


def payment_request(host: str, port: int, key: str, checkout_id: str) -> bytes:
    """A POST /v1/payments for a new two-seller checkout, its Idempotency-Key the checkout id."""
    body = json.dumps(
        {
            "checkout_id": checkout_id,
            "buyer": f"buyer-{checkout_id}",
            "currency": "EUR",
            "orders": [
                {"seller_id": "s1", "amount": "10.00"},
                {"seller_id": "s2", "amount": "5.50"},
            ],
        },
        separators=(",", ":"),
    ).encode()
    head = (
        f"POST /v1/payments HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nIdempotency-Key: {checkout_id}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@attrs.define
class Tally:
    """What one measured window saw."""

    latencies_s: list[float] = attrs.Factory(list)
    errors: dict[str, int] = attrs.Factory(dict)

    def record(self, status: str, elapsed_s: float) -> None:
        if status == "201":
            self.latencies_s.append(elapsed_s)
        else:
            self.errors[status] = self.errors.get(status, 0) + 1


async def _one(connection: Connection, data: bytes) -> str:
    try:
        with trio.fail_after(REQUEST_TIMEOUT_S):
            status, _ = await connection.request(data)
    except trio.TooSlowError:
        return "timeout"
    except (OSError, trio.BrokenResourceError, ConnectionClosed) as exc:
        return type(exc).__name__
    return str(status)


Requests = Callable[[], bytes]


async def closed_loop(
    host: str, port: int, next_request: Requests, concurrency: int, span_s: float
) -> Tally:
    tally = Tally()
    until_s = trio.current_time() + span_s

    async def worker() -> None:
        connection = await Connection.open(host, port)
        try:
            while trio.current_time() < until_s:
                data = next_request()
                started_s = time.perf_counter()
                status = await _one(connection, data)
                tally.record(status, time.perf_counter() - started_s)
                if not status.isdigit():
                    await connection.aclose()
                    connection = await Connection.open(host, port)
        finally:
            await connection.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return tally


async def open_loop(
    host: str, port: int, next_request: Requests, rate_per_s: float, span_s: float
) -> Tally:
    tally = Tally()
    idle: list[Connection] = []
    slots = trio.Semaphore(CONNECTIONS_MAX)

    async def send(due_s: float, data: bytes) -> None:
        async with slots:  # a connection of our own: an idle one, or a new one
            reused = bool(idle)
            connection = idle.pop() if reused else await Connection.open(host, port)
            status = await _one(connection, data)
            if reused and status in STALE:  # the server closed it while idle: once more
                await connection.aclose()
                connection = await Connection.open(host, port)
                status = await _one(connection, data)
            tally.record(status, time.perf_counter() - due_s)
            if status.isdigit():
                idle.append(connection)
            else:
                await connection.aclose()

    count = math.floor(rate_per_s * span_s)
    interval_s = 1.0 / rate_per_s
    async with trio.open_nursery() as nursery:
        start_s = time.perf_counter()
        for index in range(count):
            due_s = start_s + index * interval_s
            delay_s = due_s - time.perf_counter()
            if delay_s > 0:
                await trio.sleep(delay_s)
            nursery.start_soon(send, due_s, next_request())
    for connection in idle:
        await connection.aclose()
    return tally


def cpu_s() -> float:
    """This process's CPU time (user + system) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summary(tally: Tally, wall_s: float) -> dict[str, Any]:
    latencies = sorted(tally.latencies_s)

    def pct_ms(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "requests_ok": len(latencies),
        "errors": tally.errors,
        "duration_s": round(wall_s, 2),
        "per_s": round(len(latencies) / wall_s, 1),
        "p50_ms": pct_ms(0.50),
        "p99_ms": pct_ms(0.99),
        "max_ms": pct_ms(1.0),
    }
