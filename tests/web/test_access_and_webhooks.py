"""API keys and scopes, rate limiting, the card-number guard, PSP webhooks, and the operator
endpoints, through the Quart test client on the autojump clock."""

from __future__ import annotations

import json
from typing import Any

import trio
from trio.testing import MockClock

from engine.gateway import PspEventKind, PspNotification
from tests.web.conftest import SECRET, Api, open_api, settings
from tests.web.test_payments_api import body, create, problem_of
from web.psp_wire import encode_event
from web.signature import sign_header


async def deliver_all(api: Api) -> list[str]:
    """Post every webhook the fake PSP has emitted, as its HTTP face would; returns outcomes."""
    outcomes = []
    while True:
        try:
            event = api.psp.webhook_receive.receive_nowait()
        except trio.WouldBlock:
            return outcomes
        r = await api.post_webhook(event)
        assert r.status_code == 200, await r.get_data()
        outcomes.append(json.loads(await r.get_data())["outcome"])


async def paid_payment(api: Api) -> dict[str, Any]:
    payment = json.loads(await (await create(api, body())).get_data())
    stored = await api.runtime.store.get_payment(payment["id"])
    assert stored is not None and stored.psp_session_id is not None
    api.psp.buyer_pays(stored.psp_session_id)
    for _ in range(50):
        await deliver_all(api)
        balance = await api.runtime.store.list_balances("s1")
        if balance and balance[0].available_minor > 0:
            return payment
        await trio.sleep(0.5)
    raise AssertionError("the payment was never booked")


# --- keys and scopes -------------------------------------------------------------------------


async def test_missing_or_wrong_key_is_401(autojump_clock: MockClock, api: Api) -> None:
    await problem_of(await api.client.get("/v1/payments"), 401)
    r = await api.client.get("/v1/payments", headers=api.auth("pek_wrong"))
    problem = await problem_of(r, 401)
    assert "pek_wrong" not in json.dumps(problem)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_scopes_are_enforced(autojump_clock: MockClock, api: Api) -> None:
    seller = await api.merchant_key("s1")
    # storefront: payments only
    r = await api.client.get("/v1/ledger/trial-balance", headers=api.auth(api.storefront))
    await problem_of(r, 403)
    r = await api.client.get("/v1/merchants/s1/balance", headers=api.auth(api.storefront))
    await problem_of(r, 403)
    # merchant: its own balance only
    assert (
        await api.client.get("/v1/merchants/s1/balance", headers=api.auth(seller))
    ).status_code == 200
    await problem_of(
        await api.client.get("/v1/merchants/s2/balance", headers=api.auth(seller)), 403
    )
    await problem_of(await api.client.get("/v1/payments", headers=api.auth(seller)), 403)
    await problem_of(await api.client.get("/v1/dead-letters", headers=api.auth(seller)), 403)
    # admin: ledger and dead letters, but does not create payments
    for path in ("/v1/ledger/trial-balance", "/v1/dead-letters", "/v1/merchants/s2/balance"):
        assert (await api.client.get(path, headers=api.auth(api.admin))).status_code == 200
    r = await api.client.post(
        "/v1/payments", json=body(), headers=api.auth(api.admin, **{"Idempotency-Key": "a"})
    )
    await problem_of(r, 403)


async def test_revoked_key_is_401(autojump_clock: MockClock, api: Api) -> None:
    key = await api.runtime.store.get_api_key(
        __import__("engine.access").access.hash_key(api.admin)
    )
    assert key is not None
    async with api.runtime.store.unit_of_work() as uow:
        await uow.revoke_api_key(key.key_id, api.runtime.clock.now_ms())
    await trio.sleep(10)  # past the key cache
    await problem_of(await api.client.get("/v1/dead-letters", headers=api.auth(api.admin)), 401)


# --- rate limiting ---------------------------------------------------------------------------


async def test_rate_limit_runs_before_idempotency(autojump_clock: MockClock) -> None:
    async with open_api(settings(rate_limit_per_s=1.0, rate_limit_burst_max=2)) as api:
        assert (await create(api, body(), key="k1")).status_code == 201
        assert (await create(api, body(checkout_id="co-2"), key="k2")).status_code == 201
        limited = await create(api, body(checkout_id="co-3"), key="k3")
        await problem_of(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
        await trio.sleep(2)
        # The 429 was not stored as k3's answer: the same key now creates the payment.
        assert (await create(api, body(checkout_id="co-3"), key="k3")).status_code == 201


# --- card-number guard -----------------------------------------------------------------------


async def test_card_numbers_are_refused_and_never_stored(
    autojump_clock: MockClock, api: Api
) -> None:
    for pan in ("4242424242424242", "4242 4242 4242 4242", "4000-0000-0000-0002"):
        r = await create(api, body(buyer=f"card {pan}"))
        problem = await problem_of(r, 400)
        assert problem["type"].endswith("card-data-refused")
        assert pan not in json.dumps(problem)
    r = await create(api, json.dumps(body()).replace('"12.34"', "4242424242424242"))
    await problem_of(r, 400)
    assert await api.runtime.store.list_payments(10) == []
    # A 16-digit run that fails Luhn is not a card.
    assert (await create(api, body(buyer="order 4242424242424241"))).status_code == 201


# --- PSP webhooks ----------------------------------------------------------------------------


def _event(reference: str = "pay_unknown", event_id: str = "evt_x1") -> PspNotification:
    return PspNotification(event_id, PspEventKind.SESSION_AUTHORIZED, reference, 1_767_225_600_000)


async def test_webhook_books_the_payment_and_duplicates_change_nothing(
    autojump_clock: MockClock, api: Api
) -> None:
    await paid_payment(api)
    balance = await api.client.get("/v1/merchants/s1/balance", headers=api.auth(api.admin))
    assert json.loads(await balance.get_data())["balances"] == [
        {"currency": "EUR", "available": "11.11", "reserved": "0.00"}
    ]
    first = api.psp.emitted[0]
    again = await api.post_webhook(first)
    assert json.loads(await again.get_data())["outcome"] == "duplicate"
    trial = json.loads(
        await (
            await api.client.get("/v1/ledger/trial-balance", headers=api.auth(api.admin))
        ).get_data()
    )
    assert trial["balanced"] and trial["totals"] == {"EUR": "0.00"}


async def test_forged_stale_and_unsigned_webhooks_are_400(
    autojump_clock: MockClock, api: Api
) -> None:
    payload = encode_event(_event())
    now_s = api.runtime.clock.now_ms() // 1000
    for header in (
        None,
        sign_header(["not-our-secret"], now_s, payload),
        sign_header([SECRET], now_s - 301, payload),
        sign_header([SECRET], now_s + 301, payload),
        "t=abc,v1=00",
    ):
        headers = {} if header is None else {"Stripe-Signature": header}
        r = await api.client.post("/v1/psp/webhooks", data=payload, headers=headers)
        problem = await problem_of(r, 400)
        assert problem["type"].endswith("signature-invalid")
    tampered = payload.replace(b"pay_unknown", b"pay_other00")
    r = await api.client.post(
        "/v1/psp/webhooks",
        data=tampered,
        headers={"Stripe-Signature": sign_header([SECRET], now_s, payload)},
    )
    await problem_of(r, 400)


async def test_webhook_secret_rotation_accepts_any_current_secret(
    autojump_clock: MockClock,
) -> None:
    async with open_api(settings(psp_webhook_secrets=("whsec_new", "whsec_old"))) as api:
        payload = encode_event(_event())
        now_s = api.runtime.clock.now_ms() // 1000
        header = sign_header(["whsec_retired", "whsec_old"], now_s, payload)
        r = await api.client.post(
            "/v1/psp/webhooks", data=payload, headers={"Stripe-Signature": header}
        )
        assert r.status_code == 200
        assert json.loads(await r.get_data())["outcome"] == "unknown_reference"


async def test_unhandled_event_type_is_acknowledged(autojump_clock: MockClock, api: Api) -> None:
    payload = encode_event(_event()).replace(b"session.authorized", b"charge.updated")
    now_s = api.runtime.clock.now_ms() // 1000
    header = sign_header([SECRET], now_s, payload)
    r = await api.client.post(
        "/v1/psp/webhooks", data=payload, headers={"Stripe-Signature": header}
    )
    assert r.status_code == 200


def _stripe_session_event(event_type: str, payment_id: str | None, session_id: str) -> bytes:
    """A webhook as a real Stripe account sends it: Stripe's type, the Checkout Session object."""
    session: dict[str, Any] = {
        "id": session_id,
        "object": "checkout.session",
        "payment_status": "unpaid",
        "status": "complete",
        "client_reference_id": payment_id,
        "payment_intent": "pi_3Qx",
        "metadata": {},
    }
    event = {
        "id": f"evt_stripe_{event_type}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1_767_225_600,
        "livemode": False,
        "type": event_type,
        "data": {"object": session},
    }
    return json.dumps(event).encode()


async def test_stripes_own_checkout_session_events_drive_the_payment(
    autojump_clock: MockClock, api: Api
) -> None:
    """Against a real Stripe account the outcome arrives as `checkout.session.completed`."""
    payment = json.loads(await (await create(api, body())).get_data())
    stored = await api.runtime.store.get_payment(payment["id"])
    assert stored is not None and stored.psp_session_id is not None
    api.psp.buyer_pays(stored.psp_session_id)  # the fake PSP's own event is not delivered here
    now_s = api.runtime.clock.now_ms() // 1000
    for event_type, reference in (
        ("checkout.session.completed", None),  # not one of ours: acknowledged, no effect
        ("checkout.session.completed", payment["id"]),
    ):
        payload = _stripe_session_event(event_type, reference, stored.psp_session_id)
        r = await api.client.post(
            "/v1/psp/webhooks",
            data=payload,
            headers={"Stripe-Signature": sign_header([SECRET], now_s, payload)},
        )
        assert r.status_code == 200
    after = await api.runtime.store.get_payment(payment["id"])
    assert after is not None and after.status.value in ("AUTHORIZED", "COMPLETED")
    again = await api.client.post(
        "/v1/psp/webhooks",
        data=payload,
        headers={"Stripe-Signature": sign_header([SECRET], now_s, payload)},
    )
    assert json.loads(await again.get_data())["outcome"] == "duplicate"


# --- operator endpoints ----------------------------------------------------------------------


async def test_ledger_endpoints_show_the_booked_capture(
    autojump_clock: MockClock, api: Api
) -> None:
    await paid_payment(api)
    admin = api.auth(api.admin)
    r = await api.client.get("/v1/ledger/accounts/merchant_payable:s1/entries", headers=admin)
    page = json.loads(await r.get_data())
    assert [(e["amount"], e["direction"]) for e in page["data"]] == [("-11.11", "credit")]
    txn = await api.client.get(
        f"/v1/ledger/transactions/{page['data'][0]['transaction_id']}", headers=admin
    )
    entries = json.loads(await txn.get_data())["entries"]
    assert (
        sum(
            int(e["amount"].replace(".", "").replace("-", ""))
            * (1 if e["direction"] == "debit" else -1)
            for e in entries
        )
        == 0
    )
    entry = page["data"][0]
    assert entry["id"] == f"{entry['transaction_id']}:1"  # leg 0 is the Dr psp_clearing
    entries_url = "/v1/ledger/accounts/merchant_payable:s1/entries"
    for cursor in (entry["id"], entry["transaction_id"]):  # an entry id, or a whole transaction
        after = await api.client.get(f"{entries_url}?starting_after={cursor}", headers=admin)
        assert json.loads(await after.get_data())["data"] == []
    for bad in ("txn_x:one", ":3", "txn_x:99999"):
        await problem_of(
            await api.client.get(f"{entries_url}?starting_after={bad}", headers=admin), 422
        )
    await problem_of(
        await api.client.get("/v1/ledger/accounts/nonsense/entries", headers=admin), 422
    )
    await problem_of(await api.client.get("/v1/ledger/transactions/txn_none", headers=admin), 404)


async def test_dead_letter_is_listed_and_replayed_once(autojump_clock: MockClock) -> None:
    async def refuse(message: Any) -> None:
        raise RuntimeError("merchant endpoint down")

    async with open_api(make_notifier=lambda store, clock: refuse) as api:
        await create(api, body())
        await trio.sleep(4 * 24 * 3600)  # virtual: the notifications schedule spans ~3 days
        admin = api.auth(api.admin)
        listed = json.loads(
            await (await api.client.get("/v1/dead-letters", headers=admin)).get_data()
        )
        letter = next(d for d in listed["data"] if d["subscriber"] == "notifications")
        assert letter["last_error"] and letter["attempts"] >= 1
        path = f"/v1/dead-letters/{letter['id']}/replay"
        r = await api.client.post(path, headers=admin)
        assert json.loads(await r.get_data()) == {"id": letter["id"], "replayed": True}
        await problem_of(await api.client.post(path, headers=admin), 404)
        await problem_of(await api.client.post(path, headers=api.auth(api.storefront)), 403)


async def test_health_ready_metrics_and_openapi(autojump_clock: MockClock, api: Api) -> None:
    assert (await api.client.get("/healthz")).status_code == 200
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, await ready.get_data()
    await create(api, body())
    text = (await (await api.client.get("/metrics")).get_data()).decode()
    assert 'http_requests_total{method="POST",route="/v1/payments",status="201"} 1' in text
    assert "pay_" not in text  # no ids as labels
    spec = json.loads(await (await api.client.get("/openapi.json")).get_data())
    assert "/v1/payments" in spec["paths"]
    assert (await api.client.get("/docs")).status_code == 200
