"""The HTTP payout client's error mapping (web/http_payout_gateway.py): every unknown outcome
(connection error, timeout, 5xx, 409, 429, authentication, a reused key) is
`GatewayUnavailable`, never a failure; a 400 is the provider refusing at once (FAILED); Stripe's
statuses map to the port's; `query_payout` finds a payout by its metadata tag across pages,
bounded, and by its id once seen. The call shapes are checked against a stub of the library's
client; the timeout against a real socket that never answers."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import stripe
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine.gateway import GatewayUnavailable
from engine.money import Money
from engine.payout_gateway import ProviderPayoutStatus
from web.http_payout_gateway import (
    PAYOUT_METADATA_KEY,
    HttpPayoutGateway,
    open_http_payout_gateway,
    payout_result,
)

EUR10 = Money(1000, "EUR")


class StubPayouts:
    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.answer, self.error = answer, error
        self.calls: list[tuple[str, Any, Any]] = []
        self.pages: list[dict[str, Any]] = []

    async def create_async(self, params: Any, options: Any) -> Any:
        self.calls.append(("create", params, options))
        if self.error is not None:
            raise self.error
        return self.answer

    async def retrieve_async(self, payout_id: str) -> Any:
        self.calls.append(("retrieve", payout_id, None))
        if self.error is not None:
            raise self.error
        return self.answer

    async def list_async(self, params: Any) -> Any:
        self.calls.append(("list", dict(params), None))
        if self.error is not None:
            raise self.error
        return self.pages.pop(0)


class StubClient:
    def __init__(self, payouts: StubPayouts) -> None:
        self.v1 = type("V1", (), {"payouts": payouts})()


def gateway(payouts: StubPayouts, pages_max: int = 10) -> HttpPayoutGateway:
    return HttpPayoutGateway(StubClient(payouts), pages_max)  # type: ignore[arg-type]


def payout(pid: str, status: str = "pending", key: str = "po_1", **extra: Any) -> dict[str, Any]:
    return {"id": pid, "status": status, "metadata": {PAYOUT_METADATA_KEY: key}, **extra}


UNKNOWN = [
    stripe.APIConnectionError("connection refused"),
    stripe.APIError("boom", http_status=500),
    stripe.APIError("unavailable", http_status=503),
    stripe.RateLimitError("slow down", http_status=429),
    stripe.IdempotencyError("key reused", http_status=400),
    stripe.AuthenticationError("bad key", http_status=401),
    stripe.PermissionError("no", http_status=403),
    stripe.InvalidRequestError("in progress", None, "lock_timeout", http_status=409),
    stripe.InvalidRequestError("no such route", None, http_status=404),
]


@pytest.mark.parametrize("error", UNKNOWN, ids=lambda e: type(e).__name__)
async def test_unknown_outcomes_are_gateway_unavailable(error: stripe.StripeError) -> None:
    with pytest.raises(GatewayUnavailable):
        await gateway(StubPayouts(error=error)).submit_payout("po_1", "merchant:s1", EUR10)
    with pytest.raises(GatewayUnavailable):
        await gateway(StubPayouts(error=error)).query_payout("po_1")


async def test_a_400_is_refused_at_once_and_the_call_carries_our_key() -> None:
    refused = stripe.InvalidRequestError("too small", "amount", "amount_too_small", http_status=400)
    stub = StubPayouts(error=refused)
    result = await gateway(stub).submit_payout("po_1", "merchant:s1", EUR10)
    assert (result.status, result.payout_id, result.reason) == (
        ProviderPayoutStatus.FAILED,
        None,
        "amount_too_small",
    )
    [(_, params, options)] = stub.calls
    assert options == {"idempotency_key": "po_1"}
    assert params == {
        "amount": 1000,
        "currency": "eur",
        "destination": "merchant:s1",
        "metadata": {PAYOUT_METADATA_KEY: "po_1"},
    }


@given(
    st.sampled_from(["pending", "in_transit", "paid", "failed", "canceled"]),
    st.booleans(),
    st.one_of(st.none(), st.sampled_from(["no_account", "account_closed"])),
)
def test_statuses_map_to_the_port(status: str, returned: bool, code: str | None) -> None:
    result = payout_result(payout("po_x", status, returned=returned, failure_code=code))
    expected = {
        "pending": ProviderPayoutStatus.PENDING,
        "in_transit": ProviderPayoutStatus.PENDING,
        "paid": ProviderPayoutStatus.PAID,
        "failed": ProviderPayoutStatus.RETURNED if returned else ProviderPayoutStatus.FAILED,
        "canceled": ProviderPayoutStatus.RETURNED if returned else ProviderPayoutStatus.FAILED,
    }[status]
    assert result.status is expected and result.payout_id == "po_x"
    failed = expected in (ProviderPayoutStatus.FAILED, ProviderPayoutStatus.RETURNED)
    assert result.reason == (code if failed else None)


def test_an_unknown_status_is_not_a_failure() -> None:
    with pytest.raises(GatewayUnavailable):
        payout_result(payout("po_x", "teleported"))


async def test_query_scans_pages_for_the_tag_then_retrieves_by_id() -> None:
    stub = StubPayouts()
    stub.pages = [
        {"data": [payout("po_a", key="other"), payout("po_b", key="other2")], "has_more": True},
        {"data": [payout("po_c", "paid", key="po_1")], "has_more": False},
    ]
    gw = gateway(stub)
    found = await gw.query_payout("po_1")
    assert (found.status, found.payout_id) == (ProviderPayoutStatus.PAID, "po_c")
    assert stub.calls[1][1]["starting_after"] == "po_b"
    stub.answer = payout("po_c", "failed", returned=True, failure_code="account_closed")
    again = await gw.query_payout("po_1")
    assert again.status is ProviderPayoutStatus.RETURNED
    assert stub.calls[-1] == ("retrieve", "po_c", None)


async def test_query_gives_up_after_its_page_limit() -> None:
    stub = StubPayouts()
    stub.pages = [{"data": [payout(f"po_{i}", key="x")], "has_more": True} for i in range(5)]
    found = await gateway(stub, pages_max=3).query_payout("po_1")
    assert found.status is ProviderPayoutStatus.NOT_FOUND
    assert len(stub.calls) == 3


async def test_a_provider_that_never_answers_is_a_timeout_not_a_failure() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with open_http_payout_gateway(url, timeout_s=0.3) as gw:
            with trio.fail_after(10), pytest.raises(GatewayUnavailable):
                await gw.submit_payout("po_1", "merchant:s1", EUR10)
