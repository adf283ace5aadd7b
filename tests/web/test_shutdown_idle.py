"""SIGTERM does not wait for idle keep-alive connections (issue 13).

`payengine serve` as a real process over real sockets: clients hold idle keep-alive connections
(one plain, one left after a GET whose body the app did not need), the engine holds its own to
the fake PSP's face after a checkout was paid; SIGTERM must still stop the process within
`STOP_TIME_S_MAX`, far below Hypercorn's graceful timeout (GRACEFUL_TIMEOUT_S, 10 s), which is
only for requests actually in flight.
"""

from __future__ import annotations

import socket
import time

import httpx

from payengine.serve import GRACEFUL_TIMEOUT_S
from tests.web.test_serve_process import (
    EXIT_TIMEOUT_S,
    Process,
    _free_port,
    _keys,
    _payment_body,
    database_url,
)

__all__ = ["database_url"]  # the fixture, used by name

#: An idle connection must cost a stop nothing; what remains is the engine's own shutdown.
STOP_TIME_S_MAX = 4.0


def _idle_after_body_request(port: int) -> socket.socket:
    """A keep-alive connection left idle after a GET whose body arrived in a second segment."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n")
    time.sleep(0.05)
    sock.sendall(b"{}")
    sock.settimeout(EXIT_TIMEOUT_S)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def test_sigterm_does_not_wait_for_idle_keep_alive_connections(database_url: str) -> None:
    port, psp_port = _free_port(), _free_port()
    argv = ["serve", "--port", str(port), "--psp-port", str(psp_port), "--print-keys"]
    process = Process(argv, database_url)
    try:
        keys = _keys(process)
        process.wait_for(f"payengine API on http://127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}"
        storefront = {"Authorization": f"Bearer {keys['storefront']}"}
        with httpx.Client(base_url=base, timeout=EXIT_TIMEOUT_S) as client:
            created = client.post(
                "/v1/payments",
                json=_payment_body("idle-1"),
                headers={**storefront, "Idempotency-Key": "idle-1"},
            )
            assert created.status_code == 201, created.text
            card = {"card_number": "4242424242424242"}
            paid = client.post(created.json()["hosted_url"], data=card)
            assert paid.status_code < 400, paid.text
            deadline = time.monotonic() + EXIT_TIMEOUT_S
            payment_url = f"/v1/payments/{created.json()['id']}"
            while client.get(payment_url, headers=storefront).json()["status"] != "completed":
                assert time.monotonic() < deadline, "the payment never completed"
                time.sleep(0.1)
            raw = _idle_after_body_request(port)
            time.sleep(0.2)  # every connection is idle now
            started_s = time.monotonic()
            code = process.stop()
            stopped_s = time.monotonic() - started_s
        raw.close()
        assert code == 0, "\n".join(process.lines)
        assert stopped_s < STOP_TIME_S_MAX < GRACEFUL_TIMEOUT_S, stopped_s
    finally:
        process.kill()
