"""No keep-alive connection hangs (issue 13): 300 requests on one connection, each sending its
headers and then, in a second TCP segment after the app could already have answered, a body
the app does not read (a GET with a body, a 405, an OPTIONS, an unknown route, a refused key,
a NUL in the path); every one is answered, on the same connection.

Real Hypercorn over a raw socket (TCP_NODELAY, two sends, a pause between), the responses
parsed by h11 as a client; before web/keepalive.py about one try in ten hung here for good.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import h11
import pytest

from tests.web.liveserver import LiveServer, running_server

REQUESTS = 300
#: Long enough for the app to answer before the body arrives; short enough for 300 tries.
BODY_DELAY_S = 0.004
ANSWER_TIMEOUT_S = 5.0

#: (method, target, expected status): none of these handlers reads the body.
UNREAD = (
    ("GET", "/healthz", 200),
    ("PUT", "/v1/payments", 405),
    ("OPTIONS", "/v1/payments", 200),
    ("DELETE", "/nowhere", 404),
    ("GET", "/v1/payments/%00", 404),
    ("POST", "/v1/payments", 401),
)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with running_server() as live:
        yield live


def _answer(conn: h11.Connection, sock: socket.socket) -> int:
    status = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            assert status is not None
            return status
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError("the server closed the keep-alive connection")


def test_every_request_on_one_connection_is_answered_when_the_body_comes_late(
    server: LiveServer,
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(ANSWER_TIMEOUT_S)
        conn = h11.Connection(h11.CLIENT)
        statuses = []
        for number in range(REQUESTS):
            method, target, expected = UNREAD[number % len(UNREAD)]
            body = b'{"n": %d}' % number
            headers = [
                ("Host", host),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ]
            sock.sendall(conn.send(h11.Request(method=method, target=target, headers=headers)))
            time.sleep(BODY_DELAY_S)
            sock.sendall(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            status = _answer(conn, sock)  # a hang is a socket timeout here
            assert status == expected, (number, method, target, status)
            statuses.append(status)
            conn.start_next_cycle()
    assert len(statuses) == REQUESTS
