"""The fake PSP's payouts API as a Stripe client sees it (the official library, real sockets):
create with Idempotency-Key (same key and body: the same payout, replayed; same key and another
body: Stripe's idempotency error), retrieve, list newest first with a status filter, refusals
before anything is made; and the signed `payout.paid` / `payout.failed` webhooks, whose return
is Stripe's `payout.failed` of a paid payout (with the fake's `returned: true`)."""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from actors.clock import TrioClock
from engine.money import Money
from psp.faults import PspFaultPlan
from psp.payout_desk import DeskPayout, PayoutDesk, PayoutEvent, PayoutKnobs, payout_json
from psp.payout_events import encode_payout_event
from scenarios import load_scenario
from tests.psp.running import SECRET, running_psp
from tests.psp.test_no_500 import HEADERS, ODD, _assert_stripe_shaped, face_client
from web.cardguard import contains_card_number

KNOBS = PayoutKnobs(paid_after_s=0.1, returned_after_s=0.1)


async def test_a_payout_is_created_once_per_key_and_paid_with_a_signed_webhook() -> None:
    async with running_psp(payout_knobs=KNOBS) as psp:
        client = psp.client()
        params = {
            "amount": 1234,
            "currency": "eur",
            "destination": "merchant:s1",
            "metadata": {"payengine_payout": "po_ours_1"},
        }
        first = await client.v1.payouts.create_async(params, {"idempotency_key": "po_ours_1"})
        again = await client.v1.payouts.create_async(params, {"idempotency_key": "po_ours_1"})
        assert first["id"] == again["id"] and first["status"] == "pending"
        assert (first["amount"], first["currency"], first["object"]) == (1234, "eur", "payout")
        assert first["metadata"] == {"payengine_payout": "po_ours_1"}
        assert len(psp.face.payouts.payouts) == 1
        other = dict(params, amount=99)
        with pytest.raises(stripe.IdempotencyError):
            await client.v1.payouts.create_async(other, {"idempotency_key": "po_ours_1"})
        assert len(psp.face.payouts.payouts) == 1

        [(body, header)] = await psp.wait_for_webhooks(1)
        event = stripe.Webhook.construct_event(body.decode(), header, SECRET)
        assert event["type"] == "payout.paid"
        assert event["data"]["object"]["id"] == first["id"]
        assert event["data"]["object"]["status"] == "paid"
        got = await client.v1.payouts.retrieve_async(first["id"])
        assert got["status"] == "paid" and got["returned"] is False


async def test_failed_and_returned_payouts_are_announced_as_stripe_does() -> None:
    async with running_psp(payout_knobs=KNOBS) as psp:
        client = psp.client()
        psp.face.payouts.script_fate("failed", "returned")
        failed = await client.v1.payouts.create_async(
            {"amount": 100, "currency": "usd"}, {"idempotency_key": "k-failed"}
        )
        returned = await client.v1.payouts.create_async(
            {"amount": 200, "currency": "usd"}, {"idempotency_key": "k-returned"}
        )
        received = await psp.wait_for_webhooks(3)
        events = [json.loads(body) for body, _ in received]
        seen = sorted((e["data"]["object"]["id"], e["type"]) for e in events)
        assert seen == sorted(
            [
                (failed["id"], "payout.failed"),
                (returned["id"], "payout.paid"),
                (returned["id"], "payout.failed"),
            ]
        )
        last = {e["data"]["object"]["id"]: e["data"]["object"] for e in events}
        assert (last[failed["id"]]["failure_code"], last[failed["id"]]["returned"]) == (
            "no_account",
            False,
        )
        assert (last[returned["id"]]["failure_code"], last[returned["id"]]["returned"]) == (
            "account_closed",
            True,
        )
        listed = await client.v1.payouts.list_async({"limit": 1})
        assert [p["id"] for p in listed["data"]] == [returned["id"]] and listed["has_more"]
        by_status = await client.v1.payouts.list_async({"status": "failed", "limit": 10})
        assert {p["id"] for p in by_status["data"]} == {failed["id"], returned["id"]}


async def test_bad_payouts_are_refused_and_make_nothing() -> None:
    async with running_psp() as psp:
        client = psp.client()
        for params, param in [
            ({"amount": 0, "currency": "eur"}, "amount"),
            ({"amount": "ten", "currency": "eur"}, "amount"),
            ({"amount": 10}, "currency"),
            ({"amount": 10, "currency": "zzz"}, "currency"),
        ]:
            with pytest.raises(stripe.InvalidRequestError) as refused:
                await client.v1.payouts.create_async(params)
            assert refused.value.http_status == 400 and refused.value.param == param
        with pytest.raises(stripe.InvalidRequestError) as missing:
            await client.v1.payouts.retrieve_async("po_nope")
        assert missing.value.http_status == 404
        assert psp.face.payouts.payouts == {}


async def test_an_answer_lost_after_accepting_is_503_and_the_retry_finds_the_payout() -> None:
    async with running_psp() as psp:
        client = psp.client()
        psp.face.payouts.script_call("timeout_after")
        params = {"amount": 500, "currency": "eur"}
        with pytest.raises(stripe.APIError) as lost:
            await client.v1.payouts.create_async(params, {"idempotency_key": "k1"})
        assert lost.value.http_status == 503
        retried = await client.v1.payouts.create_async(params, {"idempotency_key": "k1"})
        assert [p.payout_id for p in psp.face.payouts.payouts.values()] == [retried["id"]]
        assert psp.face.payouts.creates == {"k1": 2}


def test_a_scenarios_payout_faults_become_the_desks_knobs() -> None:
    scenario = load_scenario("payouts")
    plan = PspFaultPlan.of(scenario.faults, 5)
    before = plan.rng.getstate()
    knobs = plan.payout_knobs()
    f = scenario.faults
    assert (knobs.failed_p, knobs.returned_p, knobs.timeout_after_p) == (
        f.payout_failed_p,
        f.payout_returned_p,
        f.payout_timeout_after_p,
    )
    assert knobs.failed_p + knobs.returned_p > 0  # the shipped scenario has some
    assert plan.rng.getstate() == before  # the other faults' draws are unchanged


PAYOUT_ENDPOINTS = st.sampled_from(
    [("POST", "/v1/payouts"), ("GET", "/v1/payouts"), ("GET", "/v1/payouts/po_x")]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    endpoint=PAYOUT_ENDPOINTS,
    pairs=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=6),
)
async def test_any_form_on_the_payout_endpoints_is_a_stripe_answer(
    endpoint: tuple[str, str], pairs: list[tuple[str, str]]
) -> None:
    method, path = endpoint
    async with face_client() as (client, face):
        encoded = urlencode(pairs)
        if method == "GET":
            answer = await client.get(f"{path}?{encoded}", headers=HEADERS)
        else:
            answer = await client.post(path, data=encoded, headers=HEADERS)
        _assert_stripe_shaped(answer.status_code, await answer.get_json())
        made = 1 if method == "POST" and answer.status_code == 200 else 0
        assert len(face.payouts.payouts) == made


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["amount", "currency", "destination"]), value=ODD, drop=st.booleans())
async def test_a_payout_with_any_field_broken_is_made_or_refused_never_a_500(
    field: str, value: Any, drop: bool
) -> None:
    params: dict[str, Any] = {"amount": 500, "currency": "eur", "destination": "merchant:s1"}
    if drop:
        del params[field]
    else:
        params[field] = value
    async with face_client() as (client, face):
        body = urlencode(list(_api_encode(params)))
        answer = await client.post("/v1/payouts", data=body, headers=HEADERS)
        _assert_stripe_shaped(answer.status_code, await answer.get_json())
        assert len(face.payouts.payouts) == (1 if answer.status_code == 200 else 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**48), st.integers(min_value=1, max_value=10**6))
async def test_no_payout_event_contains_card_number(epoch_ms: int, sequence: int) -> None:
    """The API refuses a body with a Luhn-valid 13+ digit run (web/cardguard.py): the desk's
    ids, amounts and times never make one, whatever the namespace's hex digits are."""
    desk = PayoutDesk(TrioClock(epoch_ms), f"{epoch_ms:x}", PayoutKnobs())
    desk._seq = itertools.count(sequence)
    payout = DeskPayout(
        desk._new_id("po"), "po_key", Money(99_999_999, "EUR"), "merchant:s1", {}, epoch_ms // 1000
    )
    event = PayoutEvent(desk._new_id("evt"), "payout.paid", payout_json(payout), epoch_ms)
    assert not contains_card_number(encode_payout_event(event))
