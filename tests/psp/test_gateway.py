"""payengine's Stripe adapter (web/http_gateway.py, the official library's async client) keeps the
engine's Gateway port semantics against the fake PSP over a real socket: sessions map to the
port's statuses, captures and refunds are idempotent on their keys, `query_capture` finds a
capture by key (NOT_FOUND when the PSP never got it), and an unknown outcome (503, lost answer,
hang, connection refused, a wrong API key) is `GatewayUnavailable`, never a decline."""

from __future__ import annotations

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.gateway import (
    CaptureStatus,
    GatewayUnavailable,
    PspRefundStatus,
    RefundRefusal,
    SessionStatus,
)
from engine.money import Money
from tests.psp.running import RunningPsp, running_psp
from tests.web.test_e2e_http import _listening_socket
from web.http_gateway import HttpGateway, open_http_gateway

EUR_50 = Money(5000, "EUR")


async def _authorized(psp: RunningPsp, gateway: HttpGateway, nonce: str) -> str:
    registration = await gateway.register_checkout(nonce, EUR_50, "https://shop.example/ok")
    async with httpx.AsyncClient() as http:
        paid = await http.post(registration.hosted_url, data={"card_number": "4242424242424242"})
    assert paid.status_code == 303
    return registration.session_id


async def test_sessions_map_to_the_ports_statuses() -> None:
    async with running_psp() as psp, open_http_gateway(psp.url) as gateway:
        registration = await gateway.register_checkout("pay_a", EUR_50, None)
        assert registration.hosted_url == f"{psp.url}/pay/{registration.session_id}"
        again = await gateway.register_checkout("pay_a", EUR_50, None)
        assert again == registration
        assert await gateway.session_status(registration.session_id) is SessionStatus.OPEN
        assert await gateway.expire_session(registration.session_id) is SessionStatus.EXPIRED
        assert await gateway.expire_session(registration.session_id) is SessionStatus.EXPIRED

        paid = await _authorized(psp, gateway, "pay_b")
        assert await gateway.expire_session(paid) is SessionStatus.AUTHORIZED  # the PSP's word

        async with httpx.AsyncClient() as http:
            for nonce, card, status in (
                ("pay_c", "4000000000000002", SessionStatus.DECLINED),
                ("pay_d", "4000000000009235", SessionStatus.REVIEW),
            ):
                session = await gateway.register_checkout(nonce, EUR_50, None)
                await http.post(session.hosted_url, data={"card_number": card})
                assert await gateway.session_status(session.session_id) is status
                assert await gateway.expire_session(session.session_id) is status
        psp.face.psp.review_approves(session.session_id)
        assert await gateway.session_status(session.session_id) is SessionStatus.AUTHORIZED


async def test_per_order_captures_query_by_key_and_refund_by_charge() -> None:
    async with running_psp() as psp, open_http_gateway(psp.url) as gateway:
        session_id = await _authorized(psp, gateway, "pay_1")
        assert (await gateway.query_capture("ord_1")).status is CaptureStatus.NOT_FOUND
        first = await gateway.capture("ord_1", session_id, Money(3000, "EUR"))
        second = await gateway.capture("ord_2", session_id, Money(2000, "EUR"))
        assert first.status is second.status is CaptureStatus.CAPTURED
        assert first.capture_id != second.capture_id
        assert await gateway.capture("ord_1", session_id, Money(3000, "EUR")) == first
        assert psp.face.psp.captured_total() == {"EUR": 5000}
        # Each key finds its own capture, though both are captures of one PaymentIntent.
        assert await gateway.query_capture("ord_1") == first
        assert await gateway.query_capture("ord_2") == second
        # Nothing is left to capture: a third order is declined, not an unknown outcome.
        third = await gateway.capture("ord_3", session_id, Money(1, "EUR"))
        assert third.status is CaptureStatus.DECLINED
        assert first.capture_id is not None

        refund = await gateway.refund("rf_1", first.capture_id, Money(1000, "EUR"))
        assert refund.status is PspRefundStatus.SUCCEEDED and refund.refund_id is not None
        assert await gateway.query_refund("rf_1") == refund
        assert (await gateway.query_refund("rf_x")).status is PspRefundStatus.NOT_FOUND
        zero = await gateway.refund("rf_0", first.capture_id, Money(0, "EUR"))
        assert zero.reason == RefundRefusal.AMOUNT_NOT_POSITIVE.value


async def test_declines_are_declines() -> None:
    async with running_psp() as psp, open_http_gateway(psp.url) as gateway:
        unpaid = await gateway.register_checkout("pay_u", EUR_50, None)
        early = await gateway.capture("ord_u", unpaid.session_id, EUR_50)
        assert early.status is CaptureStatus.DECLINED
        session_id = await _authorized(psp, gateway, "pay_1")
        psp.face.psp.script("capture", "decline")
        declined = await gateway.capture("ord_1", session_id, EUR_50)
        assert (declined.status, declined.reason) == (CaptureStatus.DECLINED, "card_declined")
        # A declined capture leaves nothing to find; its key answers the decline again.
        assert (await gateway.query_capture("ord_1")).status is CaptureStatus.NOT_FOUND
        assert (await gateway.capture("ord_1", session_id, EUR_50)).status is (
            CaptureStatus.DECLINED
        )
        assert psp.face.psp.captured_total() == {}


async def test_unknown_outcomes_raise_gateway_unavailable_never_a_decline() -> None:
    async with running_psp() as psp, open_http_gateway(psp.url, timeout_s=1.0) as gateway:
        session_id = await _authorized(psp, gateway, "pay_1")
        fake = psp.face.psp
        fake.hang_s = 2.0
        for action in ("unavailable", "failed_attempt", "hang", "timeout_after"):
            fake.script("capture", action)
            with pytest.raises(GatewayUnavailable):
                await gateway.capture("ord_1", session_id, Money(1000, "EUR"))
        # The one capture that went through (timeout_after) is the one the retry finds.
        result = await gateway.capture("ord_1", session_id, Money(1000, "EUR"))
        assert result.status is CaptureStatus.CAPTURED
        assert fake.captured_total() == {"EUR": 1000}
        assert await gateway.query_capture("ord_1") == result
        fake.script("query", "unavailable")
        with pytest.raises(GatewayUnavailable):
            await gateway.query_capture("ord_1")
        fake.script("session_status", "unavailable")
        with pytest.raises(GatewayUnavailable):
            await gateway.session_status(session_id)
        fake.script("register", "timeout_after")
        with pytest.raises(GatewayUnavailable):
            await gateway.register_checkout("pay_2", EUR_50, None)
        assert len(fake.by_nonce) == 2  # it registered; the retry finds the same session
        await gateway.register_checkout("pay_2", EUR_50, None)
        assert len(fake.by_nonce) == 2

    async with running_psp() as psp, open_http_gateway(psp.url, "sk_test_wrong") as stranger:
        with pytest.raises(GatewayUnavailable):
            await stranger.capture("ord_1", "cs_x", EUR_50)
    closed = _listening_socket()
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    async with open_http_gateway(url) as nowhere:
        with pytest.raises(GatewayUnavailable):
            await nowhere.register_checkout("pay_1", EUR_50, None)
        with pytest.raises(GatewayUnavailable):
            await nowhere.refund("rf_1", "cap_1", EUR_50)


#: What a capture call may meet at the PSP.
ACTIONS = st.sampled_from(["ok", "unavailable", "timeout_after", "failed_attempt", "decline"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts=st.lists(st.lists(ACTIONS, min_size=1, max_size=4), min_size=1, max_size=3))
async def test_retrying_a_capture_with_its_key_never_captures_twice(
    scripts: list[list[str]],
) -> None:
    """Whatever the PSP does to each order's calls, retrying with the order's key until an
    answer captures each order at most once, and a DECLINED answer means nothing was captured."""
    async with running_psp() as psp, open_http_gateway(psp.url) as gateway:
        session_id = await _authorized(psp, gateway, "pay_1")
        fake = psp.face.psp
        for index, script in enumerate(scripts):
            key = f"ord_{index}"
            fake.script("capture", *script)
            with trio.fail_after(30):
                while True:
                    try:
                        result = await gateway.capture(key, session_id, Money(1000, "EUR"))
                        break
                    except GatewayUnavailable:
                        continue
            capture = fake.captures.get(key)
            if result.status is CaptureStatus.DECLINED:
                assert capture is None or capture.status is CaptureStatus.DECLINED
            else:
                assert capture is not None and capture.capture_id == result.capture_id
                assert await gateway.query_capture(key) == result
        captured = [c for c in fake.captures.values() if c.status is CaptureStatus.CAPTURED]
        assert fake.captured_total() == ({"EUR": 1000 * len(captured)} if captured else {})
        assert len({c.key for c in captured}) == len(captured)
