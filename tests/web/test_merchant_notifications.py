"""Merchant notifications: Standard Webhooks signatures, endpoint registration, signed
delivery to a real local HTTP receiver, and the 3-day retry schedule ending in a dead letter
(memory store, autojump clock, in-process httpx.MockTransport)."""

from __future__ import annotations

import functools
import itertools
import json
from typing import Any

import h11
import httpx
import pytest
import trio
from trio.testing import MockClock

from engine.limits import EngineConfig
from engine.records import OutboxMessage
from tests.web.conftest import Api, open_api
from tests.web.test_payments_api import body, create, problem_of
from web.merchant_signing import SignatureError, new_secret, sign, signed_headers, verify
from web.notifier import WebhookNotifier

# --- signing ---------------------------------------------------------------------------------


def test_standard_webhooks_reference_vector() -> None:
    # The sign test of the standard-webhooks reference library (libraries/python).
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_round_trip_and_rejections() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    body_bytes = b'{"type":"order.succeeded"}'
    headers = signed_headers(secret, "msg_1", 1_700_000_000, body_bytes)
    verify(secret, headers, body_bytes, 1_700_000_100)
    rotated = {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"]}
    verify(secret, rotated, body_bytes, 1_700_000_000)
    with pytest.raises(SignatureError):
        verify(secret, headers, body_bytes + b" ", 1_700_000_000)  # tampered body
    with pytest.raises(SignatureError):
        verify(new_secret(), headers, body_bytes, 1_700_000_000)  # another secret
    with pytest.raises(SignatureError):
        verify(secret, {**headers, "webhook-id": "msg_2"}, body_bytes, 1_700_000_000)
    with pytest.raises(SignatureError):
        verify(secret, headers, body_bytes, 1_700_000_301)  # too old
    with pytest.raises(SignatureError):
        verify(secret, {**headers, "webhook-signature": ""}, body_bytes, 1_700_000_000)


# --- registration ----------------------------------------------------------------------------


async def register(api: Api, merchant_id: str, url: str, key: str = "wh-1") -> Any:
    headers = api.auth(api.admin, **{"Idempotency-Key": key})
    return await api.client.post(
        f"/v1/merchants/{merchant_id}/webhook-endpoints", json={"url": url}, headers=headers
    )


async def test_register_endpoint_shows_secret_once(autojump_clock: MockClock, api: Api) -> None:
    path = "/v1/merchants/s1/webhook-endpoints"
    seller = await api.merchant_key("s1")
    other = await api.merchant_key("s2")
    url = {"url": "https://s1.example/hooks"}
    await problem_of(await api.client.post(path, json=url, headers=api.auth(seller)), 400)
    await problem_of(
        await api.client.post(path, json=url, headers=api.auth(other, **{"Idempotency-Key": "x"})),
        403,
    )
    await problem_of(
        await api.client.post(
            path, json=url, headers=api.auth(api.storefront, **{"Idempotency-Key": "x"})
        ),
        403,
    )
    await problem_of(
        await api.client.post(
            path, json={"url": "ftp://x"}, headers=api.auth(seller, **{"Idempotency-Key": "y"})
        ),
        422,
    )
    headers = api.auth(seller, **{"Idempotency-Key": "k"})
    first = await api.client.post(path, json=url, headers=headers)
    assert first.status_code == 201, await first.get_data()
    created = json.loads(await first.get_data())
    assert created["secret"].startswith("whsec_") and created["url"] == url["url"]
    again = await api.client.post(path, json=url, headers=headers)
    assert await again.get_data() == await first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    listed = json.loads(await (await api.client.get(path, headers=api.auth(seller))).get_data())
    assert [e["url"] for e in listed["data"]] == [url["url"]]
    assert "secret" not in listed["data"][0]
    await problem_of(await api.client.get(path, headers=api.auth(other)), 403)
    stored = await api.runtime.store.get_webhook_endpoint("s1")
    assert stored is not None and stored.secret == created["secret"]


# --- delivery over a real socket -------------------------------------------------------------


async def _receiver(stream: trio.SocketStream, received: trio.MemorySendChannel[Any]) -> None:
    conn = h11.Connection(h11.SERVER)
    headers: dict[str, str] = {}
    content = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            content = b""
        elif isinstance(event, h11.Data):
            content += event.data
        elif isinstance(event, h11.EndOfMessage):
            await received.send((headers, content))
            response = h11.Response(status_code=200, headers=[("content-length", "0")])
            await stream.send_all(conn.send(response) + conn.send(h11.EndOfMessage()))
            return
        else:
            return


async def test_signed_delivery_to_a_real_receiver() -> None:
    send, receive = trio.open_memory_channel[Any](100)

    async def handler(stream: trio.SocketStream) -> None:
        await _receiver(stream, send)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        async with open_api() as api:
            r = await register(api, "s1", f"http://127.0.0.1:{port}/hooks")
            secret = json.loads(await r.get_data())["secret"]
            payment = json.loads(await (await create(api, body())).get_data())
            with trio.fail_after(10):
                headers, content = await receive.receive()
            verify(secret, headers, content, api.runtime.clock.now_ms() // 1000)
            event = json.loads(content)
            assert event["type"].startswith("payment.")
            data = event["data"]
            assert data["payment_id"] == payment["id"]
            # s1 sees its own order only, never s2's amount nor the checkout's total
            assert [o["amount"] for o in data["orders"]] == ["12.34"]
            assert "amount" not in data
            assert headers["webhook-id"].startswith("msg_")
        nursery.cancel_scope.cancel()


# --- retries, dead letter, replay ------------------------------------------------------------


async def test_failing_receiver_is_retried_for_3_days_then_dead_lettered(
    autojump_clock: MockClock,
) -> None:
    attempts: dict[str, list[int]] = {}
    status = {"code": 503}
    holder: dict[str, Any] = {}

    def respond(request: httpx.Request) -> httpx.Response:
        msg_id = request.headers["webhook-id"]
        attempts.setdefault(msg_id, []).append(holder["clock"].now_ms())
        return httpx.Response(status["code"])

    def make_notifier(store: Any, clock: Any) -> WebhookNotifier:
        holder["clock"] = clock
        return WebhookNotifier(store, clock, transport=httpx.MockTransport(respond))

    config = EngineConfig()
    async with open_api(make_notifier=make_notifier) as api:
        await register(api, "s1", "https://s1.example/hooks")
        assert (await create(api, body())).status_code == 201
        await trio.sleep(4 * 24 * 3600)
        first = min(attempts, key=lambda m: attempts[m][0])
        times = attempts[first]
        assert len(times) == config.notification_attempts_max
        gaps_s = [(b - a) / 1000 for a, b in itertools.pairwise(times)]
        assert 45 <= gaps_s[0] <= 75  # 60 s ± 20 % jitter
        assert max(gaps_s) <= config.notification_delay_s_max * 1.2
        span_days = (times[-1] - times[0]) / 1000 / 86400
        assert 2.5 <= span_days <= 3.6, span_days

        r = await api.client.get("/v1/dead-letters", headers=api.auth(api.admin))
        letters = {d["id"]: d for d in json.loads(await r.get_data())["data"]}
        letter = letters[f"notifications:{first}"]
        assert letter["attempts"] == config.notification_attempts_max
        assert "HTTP 503" in letter["last_error"]

        status["code"] = 204
        r = await api.client.post(
            f"/v1/dead-letters/notifications:{first}/replay", headers=api.auth(api.admin)
        )
        assert r.status_code == 200
        await trio.sleep(5)
        assert len(attempts[first]) == config.notification_attempts_max + 1
        r = await api.client.get("/v1/dead-letters", headers=api.auth(api.admin))
        ids = {d["id"] for d in json.loads(await r.get_data())["data"]}
        assert f"notifications:{first}" not in ids


async def test_no_endpoint_means_nothing_to_deliver(autojump_clock: MockClock) -> None:
    calls: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    def make_notifier(store: Any, clock: Any) -> WebhookNotifier:
        return WebhookNotifier(store, clock, transport=httpx.MockTransport(respond))

    async with open_api(make_notifier=make_notifier) as api:
        assert (await create(api, body())).status_code == 201
        await trio.sleep(120)
        assert calls == []
        assert await api.runtime.store.list_dead_letters(10) == []
        assert await api.runtime.store.count_pending_deliveries("notifications") == 0


async def test_order_events_go_to_the_orders_seller(autojump_clock: MockClock, api: Api) -> None:
    payment = json.loads(await (await create(api, body())).get_data())
    orders = await api.runtime.store.get_orders(payment["id"])
    s2 = next(o for o in orders if o.seller_id == "s2")
    notifier = WebhookNotifier(api.runtime.store, api.runtime.clock)
    succeeded = OutboxMessage(
        "msg_a",
        "order.succeeded",
        s2.order_id,
        {
            "order_id": s2.order_id,
            "payment_id": payment["id"],
            "seller_id": "s2",
            "amount_minor": 500,
            "currency": "EUR",
            "capture_id": "cap_1",
        },
        0,
    )
    targets = await notifier.recipients(succeeded)
    assert list(targets) == ["s2"] and targets["s2"]["amount"] == "5.00"
    assert "amount_minor" not in targets["s2"]
    conflicting = OutboxMessage(
        "msg_b",
        "order.conflicting_psp_event",
        s2.order_id,
        {"order_id": s2.order_id, "event_id": "evt_1", "status": "SUCCESS", "event_kind": "x"},
        0,
    )
    targets = await notifier.recipients(conflicting)
    assert list(targets) == ["s2"] and targets["s2"]["payment_id"] == payment["id"]


async def test_refund_events_go_to_the_refunded_orders_seller(
    autojump_clock: MockClock, api: Api
) -> None:
    notifier = WebhookNotifier(api.runtime.store, api.runtime.clock)
    succeeded = OutboxMessage(
        "msg_r",
        "refund.succeeded",
        "ref_1",
        {
            "refund_id": "ref_1",
            "order_id": "ord_1",
            "seller_id": "s2",
            "amount_minor": 250,
            "currency": "EUR",
            "status": "SUCCEEDED",
            "psp_refund_id": "re_1",
            "failure_reason": None,
        },
        0,
    )
    targets = await notifier.recipients(succeeded)
    assert list(targets) == ["s2"]
    assert targets["s2"]["object"] == "refund" and targets["s2"]["amount"] == "2.50"
    assert "amount_minor" not in targets["s2"]
