"""`payengine serve` and `payengine demo --serve` as real processes, over real sockets.

- TLS: given a certificate and key, the API speaks HTTPS only (certificates from trustme).
- Graceful shutdown: SIGTERM while a request is in flight (the PSP is slow on purpose) lets
  that request finish with its 201, then the process exits 0.
- The demo prints a storefront and an admin key; those keys work on the API it then serves, on
  one port with the fake PSP (under /psp) and the teaching pages: create a payment, pay it on
  the fake PSP's hosted page, read the ledger; SIGTERM stops it with exit 0.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests import pgfixtures

pytestmark = pytest.mark.postgres

#: Start-up includes migrations on a fresh database; the machine may be loaded.
START_TIMEOUT_S = 60.0
#: How long the slow PSP sits on a session create: long enough to signal mid-request.
PSP_DELAY_S = 2.0
EXIT_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def database_url() -> Iterator[str]:
    dsn, name = pgfixtures.create_database_sync("embedded")
    try:
        yield dsn
    finally:
        pgfixtures.drop_database_sync("embedded", name)


class Process:
    """A payengine child process whose stdout lines are read by a thread into a queue."""

    def __init__(self, argv: list[str], database_url: str) -> None:
        env = {**os.environ, "DATABASE_URL": database_url}
        env.pop("PAYENGINE_CONFIG", None)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "payengine", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout_s: float = START_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in the output:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=EXIT_TIMEOUT_S)
        while (line := self._queue.get(timeout=EXIT_TIMEOUT_S)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


class SlowPsp:
    """A Stripe-shaped PSP that takes PSP_DELAY_S to create a checkout session."""

    def __init__(self) -> None:
        self.session_requested = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.session_requested.set()
                time.sleep(PSP_DELAY_S)
                self._answer({"id": "cs_slow_1", "url": "https://psp.invalid/pay/cs_slow_1"})

            def do_GET(self) -> None:
                self._answer({"id": "cs_slow_1", "status": "open"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _payment_body(checkout_id: str) -> dict[str, Any]:
    return {
        "checkout_id": checkout_id,
        "buyer": "buyer-1",
        "currency": "EUR",
        "orders": [{"seller_id": "seller-1", "amount": "12.50"}],
        "return_url": "https://shop.example/thanks",
    }


def _keys(process: Process) -> dict[str, str]:
    found = {}
    for scope in ("storefront", "admin"):
        line = process.wait_for(f"{scope} key: ")
        found[scope] = line.split(f"{scope} key: ", 1)[1].strip()
    return found


def test_tls_and_graceful_shutdown_finish_the_request_in_flight(
    tmp_path: Path, database_url: str
) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(certfile)
    certificate.private_key_pem.write_to_path(keyfile)
    trust = ssl.create_default_context()
    authority.configure_trust(trust)
    psp = SlowPsp()
    port = _free_port()
    argv = ["serve", "--port", str(port), "--psp-url", psp.url, "--print-keys"]
    process = Process([*argv, "--certfile", str(certfile), "--keyfile", str(keyfile)], database_url)
    try:
        keys = _keys(process)
        process.wait_for(f"payengine API on https://127.0.0.1:{port}")
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(verify=trust, timeout=EXIT_TIMEOUT_S) as client:
            assert client.get(f"{base}/healthz").status_code == 200
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5.0).raise_for_status()

        answers: queue.Queue[httpx.Response | BaseException] = queue.Queue()

        def create() -> None:
            headers = {"Authorization": f"Bearer {keys['storefront']}", "Idempotency-Key": "k1"}
            try:
                with httpx.Client(verify=trust, timeout=EXIT_TIMEOUT_S) as client:
                    answers.put(
                        client.post(
                            f"{base}/v1/payments", json=_payment_body("c-1"), headers=headers
                        )
                    )
            except BaseException as exc:
                answers.put(exc)

        threading.Thread(target=create, daemon=True).start()
        assert psp.session_requested.wait(START_TIMEOUT_S), "the request never reached the PSP"
        assert process.stop() == 0, "\n".join(process.lines)
        answer = answers.get(timeout=EXIT_TIMEOUT_S)
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 201, answer.text
        assert answer.json()["hosted_url"] == "https://psp.invalid/pay/cs_slow_1"
        assert any("shutting down" in line for line in process.lines)
    finally:
        process.kill()
        psp.close()


def test_demo_prints_keys_that_work_on_the_api_it_serves(database_url: str) -> None:
    port = _free_port()
    argv = ["demo", "--port", str(port)]
    process = Process(argv, database_url)
    try:
        keys = {}
        for scope in ("storefront", "admin"):
            line = process.wait_for(f"     {scope} ")
            keys[scope] = line.split()[1]
        process.wait_for("Done: payment COMPLETED")
        process.wait_for(f"payengine demo on http://127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}"
        storefront = {"Authorization": f"Bearer {keys['storefront']}"}
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        with httpx.Client(base_url=base, timeout=EXIT_TIMEOUT_S) as client:
            created = client.post(
                "/v1/payments",
                json=_payment_body("demo-try"),
                headers={**storefront, "Idempotency-Key": "demo-try"},
            )
            assert created.status_code == 201, created.text
            payment = created.json()
            assert payment["hosted_url"].startswith(f"http://127.0.0.1:{port}/psp/pay/")
            paid = client.post(payment["hosted_url"], data={"card_number": "4242424242424242"})
            assert paid.status_code < 400, paid.text
            deadline = time.monotonic() + START_TIMEOUT_S
            status = payment["status"]
            while status != "completed" and time.monotonic() < deadline:
                time.sleep(0.1)
                status = client.get(f"/v1/payments/{payment['id']}", headers=storefront).json()[
                    "status"
                ]
            assert status == "completed"
            assert client.get("/v1/ledger/trial-balance", headers=storefront).status_code == 403
            trial = client.get("/v1/ledger/trial-balance", headers=admin)
            assert trial.status_code == 200
            lines = {(line["account"], line["currency"]) for line in trial.json()["lines"]}
            assert ("merchant_payable:seller-1", "EUR") in lines
        assert process.stop() == 0, "\n".join(process.lines)
    finally:
        process.kill()
