"""The payouts API: created, read, listed and paid; every bad request gets its own problem and
writes nothing; merchant keys see and act only on their own; two payouts racing over real HTTP
for one balance never overdraw it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock

from actors.clock import TrioClock
from engine.states import PayoutStatus
from simulator.payout_provider import FakePayoutProvider, OutcomePlan, PayoutOutcome
from tests.actors.harness import EPOCH_MS
from tests.web.conftest import Api, open_api
from tests.web.test_access_and_webhooks import paid_payment
from tests.web.test_e2e_http import FLOW_TIMEOUT_S, running_world
from tests.web.test_payments_api import problem_of
from web.keys import create_api_key

TYPE = "https://payengine.dev/problems/"


@asynccontextmanager
async def payout_api() -> AsyncIterator[tuple[Api, FakePayoutProvider]]:
    provider = FakePayoutProvider(TrioClock(EPOCH_MS))
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)
        async with open_api(payout_provider=provider) as api:
            yield api, provider
        nursery.cancel_scope.cancel()


async def post_payout(api: Api, payload: Any, key: str | None = "p1", as_key: str = "") -> Any:
    headers = api.auth(as_key or api.admin)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.client.post("/v1/payouts", json=payload, headers=headers)


async def nothing_written(api: Api, trial: dict[tuple[str, str], int]) -> None:
    assert await api.runtime.store.list_payouts("s1", 10) == []
    assert await api.runtime.store.list_unfinished_payouts(10) == []
    assert await api.runtime.store.trial_balance() == trial


async def test_payout_is_created_read_listed_and_paid(autojump_clock: MockClock) -> None:
    async with payout_api() as (api, provider):
        await paid_payment(api)  # s1 has 11.11 EUR (12.34 less 10% commission)
        r = await post_payout(api, {"merchant_id": "s1", "amount": "10.00", "currency": "EUR"})
        assert r.status_code == 201, await r.get_data()
        payout = json.loads(await r.get_data())
        assert (payout["amount"], payout["status"]) == ("10.00", "funds_reserved")
        assert r.headers["Location"] == f"/v1/payouts/{payout['id']}"
        replay = await post_payout(api, {"merchant_id": "s1", "amount": "10.00", "currency": "EUR"})
        assert replay.headers["Idempotent-Replayed"] == "true"
        s1 = await api.merchant_key("s1")
        with trio.fail_after(7200):
            while True:
                notice = await provider.notices_receive.receive()
                await api.runtime.engine.payouts.apply_notice(notice)
                got = await api.client.get(f"/v1/payouts/{payout['id']}", headers=api.auth(s1))
                if json.loads(await got.get_data())["status"] == "paid":
                    break
        listed = await api.client.get("/v1/merchants/s1/payouts?limit=1", headers=api.auth(s1))
        page = json.loads(await listed.get_data())
        assert listed.status_code == 200, page
        assert [p["id"] for p in page["data"]] == [payout["id"]] and page["has_more"] is False
        assert list(provider.payouts) == [payout["id"]]


@pytest.mark.parametrize(
    ("payload", "status", "slug", "pointer"),
    [
        (
            {"merchant_id": "s1", "amount": "11.12", "currency": "EUR"},
            409,
            "payout-exceeds-available",
            None,
        ),
        (
            {"merchant_id": "s1", "amount": "1.00", "currency": "USD"},
            422,
            "payout-currency-mismatch",
            None,
        ),
        (
            {"merchant_id": "nobody", "amount": "1.00", "currency": "EUR"},
            422,
            "payout-merchant-not-found",
            None,
        ),
        (
            {"merchant_id": "s1", "amount": "0", "currency": "EUR"},
            422,
            "payout-amount-not-positive",
            "/amount",
        ),
        (
            {"merchant_id": "s1", "amount": "-1.00", "currency": "EUR"},
            422,
            "payout-amount-not-positive",
            "/amount",
        ),
        (
            {"merchant_id": "s1", "amount": 2.5, "currency": "EUR"},
            422,
            "validation-failed",
            "/amount",
        ),
        (
            {"merchant_id": "s1", "amount": "1.001", "currency": "EUR"},
            422,
            "validation-failed",
            "/amount",
        ),
        ({"amount": "1.00", "currency": "EUR"}, 422, "validation-failed", "/merchant_id"),
        (
            {"merchant_id": "s1", "amount": "1.00", "currency": "EUR", "x": 1},
            422,
            "validation-failed",
            None,
        ),
    ],
)
async def test_bad_payouts_get_their_problem_and_write_nothing(
    autojump_clock: MockClock,
    payload: dict[str, Any],
    status: int,
    slug: str,
    pointer: str | None,
) -> None:
    async with payout_api() as (api, _):
        await paid_payment(api)
        trial = await api.runtime.store.trial_balance()
        problem = await problem_of(await post_payout(api, payload), status)
        assert problem["type"] == TYPE + slug, problem
        if pointer is not None:
            assert [e["pointer"] for e in problem["errors"]] == [pointer]
        await nothing_written(api, trial)
        # The key was not spent on a refusal: a good request with it goes through.
        ok = await post_payout(api, {"merchant_id": "s1", "amount": "1.00", "currency": "EUR"})
        assert ok.status_code == 201


async def test_merchant_keys_act_only_on_their_own(autojump_clock: MockClock) -> None:
    async with payout_api() as (api, _):
        await paid_payment(api)
        trial = await api.runtime.store.trial_balance()
        s1, s2 = await api.merchant_key("s1"), await api.merchant_key("s2")
        other = {"merchant_id": "s1", "amount": "1.00", "currency": "EUR"}
        assert (await problem_of(await post_payout(api, other, as_key=s2), 403))["type"] == (
            TYPE + "forbidden"
        )
        await problem_of(await post_payout(api, other, as_key=api.storefront), 403)
        await nothing_written(api, trial)
        own = await post_payout(api, {"amount": "1.00", "currency": "EUR"}, as_key=s1)
        assert own.status_code == 201
        payout_id = json.loads(await own.get_data())["id"]
        hidden = await api.client.get(f"/v1/payouts/{payout_id}", headers=api.auth(s2))
        await problem_of(hidden, 404)
        await problem_of(
            await api.client.get("/v1/merchants/s1/payouts", headers=api.auth(s2)), 403
        )
        schedule = {"interval": "daily", "delay_days": 2, "minimum_amounts": {"EUR": "10.00"}}
        put = await api.client.put(
            "/v1/merchants/s1/payout-schedule", json=schedule, headers=api.auth(s1)
        )
        assert put.status_code == 200, await put.get_data()
        assert json.loads(await put.get_data())["minimum_amounts"] == {"EUR": "10.00"}
        await problem_of(
            await api.client.put(
                "/v1/merchants/s1/payout-schedule", json=schedule, headers=api.auth(s2)
            ),
            403,
        )
        bad = await api.client.put(
            "/v1/merchants/s1/payout-schedule",
            json={"interval": "hourly"},
            headers=api.auth(s1),
        )
        await problem_of(bad, 422)
        stored = await api.runtime.store.get_payout_schedule("s1")
        assert stored is not None and stored.delay_days == 2


async def test_racing_payouts_over_real_http_never_overdraw() -> None:
    """Over real sockets: two payouts for 30.00 race for a 45.00 balance; one is made (and
    paid by the provider), the other is refused with its problem, and the wallet never goes
    below zero."""
    provider = FakePayoutProvider(TrioClock(0))
    provider.outcome = lambda _: OutcomePlan(PayoutOutcome.PAID, 0.05)
    async with (
        trio.open_nursery() as nursery,
        running_world(payout_gateway=provider) as (api_url, _, runtime, _face),
        httpx.AsyncClient() as http,
    ):
        await nursery.start(provider.run)
        _, storefront = await create_api_key(
            runtime.store, runtime.ids, runtime.clock, "storefront"
        )
        _, s1 = await create_api_key(runtime.store, runtime.ids, runtime.clock, "merchant:s1")
        auth = {"Authorization": f"Bearer {storefront}"}
        body = {
            "checkout_id": "e2e-payout",
            "buyer": "buyer-1",
            "currency": "EUR",
            "orders": [{"seller_id": "s1", "amount": "50.00"}],
            "return_url": "https://shop.example/done",
        }
        created = await http.post(
            f"{api_url}/v1/payments", json=body, headers={**auth, "Idempotency-Key": "p1"}
        )
        payment = created.json()
        await http.post(payment["hosted_url"], data={"card_number": "4242 4242 4242 4242"})
        with trio.fail_after(FLOW_TIMEOUT_S):
            while not await runtime.store.list_balances("s1"):
                await trio.sleep(0.05)
        answers: list[httpx.Response] = []

        async def pay(key: str) -> None:
            answers.append(
                await http.post(
                    f"{api_url}/v1/payouts",
                    json={"amount": "30.00", "currency": "EUR"},
                    headers={"Authorization": f"Bearer {s1}", "Idempotency-Key": key},
                )
            )

        async with trio.open_nursery() as racers:
            racers.start_soon(pay, "race-a")
            racers.start_soon(pay, "race-b")
        assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
        refused = next(a for a in answers if a.status_code == 409)
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.json()["type"] == TYPE + "payout-exceeds-available"
        made = next(a for a in answers if a.status_code == 201).json()
        with trio.fail_after(FLOW_TIMEOUT_S):
            while True:
                try:
                    notice = provider.notices_receive.receive_nowait()
                    await runtime.engine.payouts.apply_notice(notice)
                except trio.WouldBlock:
                    await trio.sleep(0.05)
                payout = await runtime.store.get_payout(made["id"])
                if payout is not None and payout.status is PayoutStatus.PAID:
                    break
        (balance,) = await runtime.store.list_balances("s1")
        assert (balance.available_minor, balance.reserved_minor) == (1_500, 0)
        assert list(provider.payouts) == [made["id"]]
        nursery.cancel_scope.cancel()
