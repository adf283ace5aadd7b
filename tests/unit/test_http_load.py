"""The HTTP bench's load client reads answers correctly however the bytes arrive."""

from __future__ import annotations

import functools

import trio
import trio.testing

from bench.http_load import (
    Connection,
    ConnectionClosed,
    Tally,
    closed_loop,
    open_loop,
    payment_request,
    summary,
)


async def _serve(stream: trio.abc.Stream, answers: list[bytes], chunk_bytes: int) -> None:
    for answer in answers:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some(4096)
        for start in range(0, len(answer), chunk_bytes):
            await stream.send_all(answer[start : start + chunk_bytes])


def _answer(status: int, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


async def test_answers_split_anywhere_are_read_one_by_one() -> None:
    answers = [_answer(201, b'{"id":"pay_1"}'), _answer(409, b"{}"), _answer(200, b"")]
    for chunk_bytes in (1, 7, 1000):
        client, server = trio.testing.memory_stream_pair()
        connection = Connection(client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, server, answers, chunk_bytes)
            got = [await connection.request(b"GET / HTTP/1.1\r\n\r\n") for _ in answers]
        assert got == [(201, b'{"id":"pay_1"}'), (409, b"{}"), (200, b"")]


async def test_a_closed_connection_mid_answer_raises() -> None:
    client, server = trio.testing.memory_stream_pair()
    connection = Connection(client)

    async def half_then_close() -> None:
        await server.receive_some(4096)
        await server.send_all(_answer(201, b"0123456789")[:-3])
        await server.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(half_then_close)
        try:
            await connection.request(b"GET / HTTP/1.1\r\n\r\n")
        except ConnectionClosed:
            pass
        else:
            raise AssertionError("a truncated answer must raise ConnectionClosed")


def test_payment_request_is_a_complete_http_request() -> None:
    data = payment_request("127.0.0.1", 8000, "pek_x", "bench-1")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/payments HTTP/1.1\r\n")
    assert b"Idempotency-Key: bench-1" in head and b"Authorization: Bearer pek_x" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert b'"amount":"10.00"' in body  # amounts travel as decimal strings


def test_summary_counts_only_201_as_ok() -> None:
    tally = Tally()
    for ms in range(1, 101):
        tally.record("201", ms / 1000)
    tally.record("409", 0.5)
    tally.record("timeout", 30.0)
    result = summary(tally, 2.0)
    assert result["requests_ok"] == 100 and result["per_s"] == 50.0
    assert result["errors"] == {"409": 1, "timeout": 1}
    assert result["p50_ms"] == 51.0 and result["p99_ms"] == 100.0


async def _answer_forever(stream: trio.SocketStream) -> None:
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        buffer = rest[length:]
        await trio.sleep(0.02)  # slower than the rate: needs several connections at once
        await stream.send_all(_answer(201, b"{}"))


async def test_open_loop_sends_every_due_request_over_real_sockets() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, _answer_forever, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        ids = iter(range(1000))

        def next_request() -> bytes:
            return payment_request("127.0.0.1", port, "k", f"c{next(ids)}")

        tally = await open_loop("127.0.0.1", port, next_request, 200.0, 0.5)
        assert len(tally.latencies_s) == 100 and tally.errors == {}
        tally = await closed_loop("127.0.0.1", port, next_request, 4, 0.2)
        assert len(tally.latencies_s) >= 4 and tally.errors == {}
        nursery.cancel_scope.cancel()
