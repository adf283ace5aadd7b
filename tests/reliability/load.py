"""HTTP load from several clients, each a thread paying checkouts the way a storefront does.

A client creates a payment (`POST /v1/payments` with an Idempotency-Key), retrying the same
request through connection errors, 503s and 409s (another attempt in flight) until it gets its
201/200: that answer is the acknowledgement. Then the buyer pays on the fake PSP's hosted page.
A client always finishes the payment it started, so every acknowledged payment was paid.

What a client measures: acknowledged payments (with their orders), the longest time a retry was
blocked by an in-flight claim (409 after 409), and any answer it should never get (a 500, a
422 for a valid request): `surprises`.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import attrs
import httpx

#: The sellers the load spreads its orders over.
SELLERS = tuple(f"seller-{i}" for i in range(8))
#: How long one client keeps retrying one request before giving up on it.
REQUEST_DEADLINE_S = 180.0
#: The longest pause between retries (a Retry-After is honoured up to this).
RETRY_PAUSE_S_MAX = 0.5
HTTP_TIMEOUT_S = 15.0
CARD = "4242 4242 4242 4242"


@attrs.define
class Acknowledged:
    payment_id: str
    checkout_id: str
    #: seller -> amount in minor units
    orders: dict[str, int]


@attrs.define
class LoadStats:
    lock: threading.Lock = attrs.Factory(threading.Lock)
    acknowledged: list[Acknowledged] = attrs.Factory(list)
    blocked_s_max: float = 0.0
    blocked_retries: int = 0
    retries: int = 0
    given_up: int = 0
    surprises: list[str] = attrs.Factory(list)
    #: (monotonic time, payments acknowledged so far): the throughput's trace.
    acked_at: list[float] = attrs.Factory(list)


class Load:
    def __init__(self, base_url: str, storefront_key: str, clients: int, seed: int) -> None:
        self.base_url = base_url
        self.key = storefront_key
        self.stats = LoadStats()
        self.stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(f"c{n}", seed * 1000 + n), daemon=True)
            for n in range(clients)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def finish(self, timeout_s: float = REQUEST_DEADLINE_S + 60) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        assert not any(t.is_alive() for t in self._threads), "a client is stuck"

    def _client(self, name: str, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.base_url, timeout=HTTP_TIMEOUT_S) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    self._one_payment(http, rng, f"{name}-{n}")
                except Exception as exc:  # a client's bug is a finding, not a hang
                    with self.stats.lock:
                        self.stats.surprises.append(f"{name}-{n}: {exc!r}")
                    time.sleep(0.5)

    def _one_payment(self, http: httpx.Client, rng: random.Random, checkout_id: str) -> None:
        sellers = rng.sample(SELLERS, rng.randint(1, 3))
        orders = {s: rng.randint(100, 50_000) for s in sellers}
        body = {
            "checkout_id": checkout_id,
            "buyer": f"buyer-{checkout_id}",
            "currency": "EUR",
            "orders": [
                {"seller_id": s, "amount": f"{m // 100}.{m % 100:02d}"} for s, m in orders.items()
            ],
            "return_url": "https://shop.example/thanks",
        }
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": checkout_id}
        answer = self._until_answered(http, "POST", "/v1/payments", json=body, headers=headers)
        if answer is None:
            return
        payment = answer.json()
        with self.stats.lock:
            self.stats.acknowledged.append(Acknowledged(payment["id"], checkout_id, orders))
            self.stats.acked_at.append(time.monotonic())
        hosted = payment.get("hosted_url")
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        while not hosted and time.monotonic() < deadline:  # the PSP was slow: read it again
            time.sleep(0.2)
            read = self._until_answered(
                http, "GET", f"/v1/payments/{payment['id']}", headers=headers
            )
            hosted = None if read is None else read.json().get("hosted_url")
        assert hosted, f"{payment['id']} never got a hosted page"
        paid = httpx.post(hosted, data={"card_number": CARD}, timeout=HTTP_TIMEOUT_S)
        assert paid.status_code < 400, (paid.status_code, paid.text[:200])

    def _until_answered(
        self, http: httpx.Client, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        """The request's first 2xx answer, retrying what a client retries; None: gave up."""
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        blocked_since: float | None = None
        while time.monotonic() < deadline:
            try:
                answer = http.request(method, path, **kwargs)
            except httpx.HTTPError:
                answer = None
            now = time.monotonic()
            in_flight = answer is not None and answer.status_code == 409
            if blocked_since is not None and not in_flight:
                with self.stats.lock:
                    self.stats.blocked_s_max = max(self.stats.blocked_s_max, now - blocked_since)
                blocked_since = None
            if answer is not None and answer.status_code < 300:
                return answer
            if answer is not None and answer.status_code not in (409, 429, 503):
                with self.stats.lock:
                    self.stats.surprises.append(
                        f"{method} {path}: {answer.status_code} {answer.text[:200]}"
                    )
                if answer.status_code < 500:
                    return None  # a refusal: retrying the same request cannot change it
            if in_flight and blocked_since is None:
                blocked_since = now
                with self.stats.lock:
                    self.stats.blocked_retries += 1
            with self.stats.lock:
                self.stats.retries += 1
            pause = RETRY_PAUSE_S_MAX
            if answer is not None and answer.headers.get("Retry-After", "").isdigit():
                pause = min(pause, float(answer.headers["Retry-After"]))
            time.sleep(max(0.05, pause))
        with self.stats.lock:
            self.stats.given_up += 1
            if blocked_since is not None:
                self.stats.blocked_s_max = max(
                    self.stats.blocked_s_max, time.monotonic() - blocked_since
                )
        return None
