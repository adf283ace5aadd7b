"""API requests forwarded to the owner of their entity (issue 14, web/forward_api.py).

Two `payengine serve --leases` processes on one embedded PostgreSQL, the fake PSP in its own
process. A payment is paid; then a payout schedule, a refund and a payout are each sent to the
process that does NOT own the entity's partition: each is forwarded to the owner, created
exactly once, and replaying the same Idempotency-Key at either process gives the same answer
(the non-owner released its claim before forwarding, so the owner's claim won).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from engine.leases import partition_of
from tests.reliability.load import CARD
from tests.reliability.multi import LeasedEngine
from tests.reliability.stack import Database
from tests.reliability.test_leases import _wait_balanced, stack

pytestmark = [pytest.mark.postgres]

#: How long a step may take (a lease moving, the PSP's webhooks) before the test fails.
STEP_TIMEOUT_S = 60.0
SELLER = "seller-fwd"


def _owner_and_other(
    db: Database, engines: list[LeasedEngine], family: str
) -> tuple[LeasedEngine, LeasedEngine]:
    rows = db.fetch(
        "SELECT m.url FROM partition_leases l JOIN lease_members m ON m.incarnation = l.owner"
        " WHERE l.partition = $1 AND l.expires_at > now()",
        partition_of(family),
    )
    assert rows, f"nobody owns {family}'s partition"
    owner = next(e for e in engines if rows[0]["url"].rstrip("/") == e.url)
    return owner, next(e for e in engines if e is not owner)


def _send(
    engine: LeasedEngine, method: str, path: str, key: str, body: dict[str, Any], idem: str = ""
) -> httpx.Response:
    """The first answer that is not a 503 (a partition moving meanwhile is retried)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idem:
        headers["Idempotency-Key"] = idem
    content = json.dumps(body, sort_keys=True).encode()
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        answer = httpx.request(
            method, engine.url + path, content=content, headers=headers, timeout=30
        )
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def _forwarded(engine: LeasedEngine, status: str) -> int:
    """Requests `engine` forwarded to their owner, which answered `status`."""
    text = httpx.get(f"{engine.url}/metrics", timeout=30).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith(f'requests_forwarded_total{{status="{status}"}}')
    )


def _replays_agree(
    engines: list[LeasedEngine],
    path: str,
    key: str,
    body: dict[str, Any],
    idem: str,
    first: httpx.Response,
) -> None:
    for engine in engines:
        again = _send(engine, "POST", path, key, body, idem)
        assert again.status_code == first.status_code, (engine.name, again.text)
        assert again.content == first.content, engine.name
        assert again.headers.get("Idempotent-Replayed") == "true", engine.name


def _paid_order(db: Database, engine: LeasedEngine, key: str) -> str:
    body = {
        "checkout_id": "fwd-1",
        "buyer": "buyer-fwd",
        "currency": "EUR",
        "orders": [{"seller_id": SELLER, "amount": "50.00"}],
        "return_url": "https://shop.example/thanks",
    }
    created = _send(engine, "POST", "/v1/payments", key, body, "fwd-1")
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    deadline = time.monotonic() + STEP_TIMEOUT_S
    hosted = created.json().get("hosted_url")
    while not hosted and time.monotonic() < deadline:
        time.sleep(0.2)
        read = httpx.get(
            f"{engine.url}/v1/payments/{payment_id}", headers={"Authorization": f"Bearer {key}"}
        )
        hosted = read.json().get("hosted_url")
    assert hosted, "no hosted page"
    paid = httpx.post(hosted, data={"card_number": CARD}, timeout=30)
    assert paid.status_code < 400, paid.text[:200]
    while time.monotonic() < deadline:
        rows = db.fetch("SELECT status FROM payments WHERE payment_id = $1", payment_id)
        if rows and rows[0]["status"] == "COMPLETED":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"{payment_id} did not complete")
    return payment_id


def test_refund_payout_and_schedule_sent_to_the_non_owner_are_forwarded() -> None:
    with stack(2) as (db, _psp, engines, _calls):
        _wait_balanced(db, 2)
        admin, storefront = engines[0].keys["admin"], engines[0].keys["storefront"]

        # A payout schedule is recorded by any process (an unfenced write, like a checkout).
        _, other = _owner_and_other(db, engines, f"merchant:{SELLER}")
        schedule = {"interval": "manual", "delay_days": 0, "minimum_amounts": {}}
        put = _send(other, "PUT", f"/v1/merchants/{SELLER}/payout-schedule", admin, schedule)
        assert put.status_code == 200, put.text

        payment_id = _paid_order(db, engines[0], storefront)
        (order_id,) = [
            r["order_id"]
            for r in db.fetch(
                "SELECT order_id FROM payment_orders WHERE payment_id = $1", payment_id
            )
        ]

        # A refund at the order's non-owner.
        owner, other = _owner_and_other(db, engines, payment_id)
        refund_body = {"order_id": order_id, "amount": "5.00"}
        refund = _send(other, "POST", "/v1/refunds", storefront, refund_body, "fwd-refund-1")
        assert refund.status_code == 201, refund.text
        assert _forwarded(other, "201") == 1, "the refund was not forwarded to its owner"
        assert _forwarded(owner, "201") == 0
        assert refund.headers["Location"] == f"/v1/refunds/{refund.json()['id']}"
        _replays_agree(engines, "/v1/refunds", storefront, refund_body, "fwd-refund-1", refund)
        refunds = db.fetch("SELECT refund_id FROM refunds WHERE order_id = $1", order_id)
        assert [r["refund_id"] for r in refunds] == [refund.json()["id"]]

        # A payout at the merchant's non-owner (fresh keys until the capture is available:
        # an answer that refuses is stored for its key, as any 4xx).
        owner, other = _owner_and_other(db, engines, f"merchant:{SELLER}")
        created_before = _forwarded(other, "201")
        payout_body = {"merchant_id": SELLER, "amount": "10.00", "currency": "EUR"}
        deadline = time.monotonic() + STEP_TIMEOUT_S
        attempt = 0
        while True:
            attempt += 1
            idem = f"fwd-payout-{attempt}"
            payout = _send(other, "POST", "/v1/payouts", admin, payout_body, idem)
            if payout.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert payout.status_code == 201, payout.text
        assert _forwarded(other, "201") == created_before + 1, "the payout was not forwarded"
        _replays_agree(engines, "/v1/payouts", admin, payout_body, idem, payout)
        payouts = db.fetch("SELECT payout_id FROM payouts WHERE merchant_id = $1", SELLER)
        assert [r["payout_id"] for r in payouts] == [payout.json()["id"]]

        print(f"\nforwarding: payout created at attempt {attempt} (409 until available)")
