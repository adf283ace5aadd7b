"""`payengine psp serve` as a real process, driven by the official `stripe` library: it checks
the API key, serves the Stripe flow, posts webhooks `stripe.Webhook.construct_event` accepts to
`--webhook-url`, injects a named scenario's faults, and stops on SIGTERM with exit 0. Bad
arguments are one line on stderr and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import stripe

from tests.psp.test_stripe_library import session_params
from tests.web.test_serve_process import Process, _free_port

API_KEY = "sk_test_process"
SECRET = "whsec_process"
#: Each call's deadline; a scenario's hangs last longer, and a retry follows.
CALL_TIMEOUT_S = 3.0


class Receiver:
    """A webhook endpoint on a thread: records (body, Stripe-Signature) and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.arrived:
                    outer.received.append((body, self.headers["Stripe-Signature"]))
                    outer.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[tuple[bytes, str]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout_s)
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def _serve(*extra: str) -> tuple[Process, str]:
    port = _free_port()
    argv = ["psp", "serve", "--port", str(port), "--api-key", API_KEY, *extra]
    process = Process(argv, database_url="postgresql://unused.invalid/none")
    url = f"http://127.0.0.1:{port}"
    process.wait_for(f"fake PSP (Stripe API) on {url}")
    return process, url


def _client(url: str, api_key: str = API_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": url},
        http_client=stripe.HTTPXClient(timeout=CALL_TIMEOUT_S, allow_sync_methods=True),
        max_network_retries=0,
    )


def test_psp_serve_speaks_stripe_to_the_stripe_library(receiver: Receiver) -> None:
    process, url = _serve("--webhook-url", receiver.url, "--webhook-secret", SECRET)
    try:
        with pytest.raises(stripe.AuthenticationError):
            _client(url, "sk_test_not_this_one").v1.checkout.sessions.create(session_params())
        v1 = _client(url).v1
        session = v1.checkout.sessions.create(session_params(), {"idempotency_key": "pay_p1"})
        paid = httpx.post(session.url, data={"card_number": "4242 4242 4242 4242"})
        assert paid.status_code == 303
        intent = v1.payment_intents.retrieve(session.payment_intent)
        assert intent.status == "requires_capture"
        captured = v1.payment_intents.capture(
            intent.id, {"amount_to_capture": 5000}, {"idempotency_key": "ord_p1"}
        )
        assert captured.status == "succeeded"
        refund = v1.refunds.create({"charge": captured.latest_charge, "amount": 700})
        assert refund.status == "succeeded"
        delivered = receiver.wait_for(3)
        types = [stripe.Webhook.construct_event(b, h, SECRET).type for b, h in delivered]
        assert types == ["session.authorized", "capture.succeeded", "refund.succeeded"]
    finally:
        code = process.stop()
        process.kill()
    assert code == 0


def test_psp_serve_injects_a_named_scenarios_faults() -> None:
    process, url = _serve("--faults", "psp_timeouts", "--seed", "7")
    try:
        process.wait_for("faults: psp_timeouts")
        v1 = _client(url).v1
        session = None
        for _ in range(20):  # a client retries with the same key until it gets an answer
            try:
                session = v1.checkout.sessions.create(
                    session_params(), {"idempotency_key": "pay_f1"}
                )
                break
            except (stripe.APIError, stripe.APIConnectionError):
                continue
        assert session is not None
        outcomes: dict[str, int] = {}
        for _ in range(20):
            try:
                assert v1.checkout.sessions.retrieve(session.id).id == session.id
                outcome = "ok"
            except stripe.APIError as exc:  # a 503 (before or after the PSP acted)
                assert exc.http_status == 503 and exc.error.type == "api_error"
                outcome = "503"
            except stripe.APIConnectionError:  # a hang: our deadline fired
                outcome = "timeout"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert outcomes.get("ok", 0) > 0 and len(outcomes) > 1, outcomes
    finally:
        code = process.stop()
        process.kill()
    assert code == 0
    assert any(line.startswith("faults fired: ") for line in process.lines), process.lines


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--faults", "no_such"], "unknown scenario 'no_such'"),
        (["--api-key", "sk_live_real"], "--api-key must be a test-mode secret key"),
        (["--port", "70000"], "--port must be 1..65535"),
        (["--webhook-url", "ftp://x"], "--webhook-url must be an http(s) URL"),
    ],
)
def test_psp_serve_refuses_bad_arguments_in_one_line(argv: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "payengine", "psp", "serve", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PAYENGINE_CONFIG"},
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr
