"""The demo's pages over plain HTTP: what a browser need not be driven for. A form posted from
another site is refused; ids that name nothing are 404 before reaching the database; the
Reports page runs shipped scenarios only; the Content-Security-Policy names no other host."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import Demo


@pytest.fixture
def client(demo: Demo) -> httpx.Client:
    return httpx.Client(base_url=demo.base, timeout=30)


def test_a_form_posted_from_another_site_is_refused(client: httpx.Client, demo: Demo) -> None:
    forged = client.post("/chaos/crash_engine", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    # The same request from the demo's own page gets through the check (and is judged on its
    # merits: no such scenario); it must not arm a fault, other tests share this demo.
    own = client.post("/reports", data={"scenario": "nope"}, headers={"Origin": demo.base})
    assert own.status_code == 422
    assert client.post("/reports", data={"scenario": "nope"}).status_code == 422


@pytest.mark.parametrize("path", ["/orders/pay_%00x", "/orders/" + "p" * 101, "/orders/pay_é"])
def test_ids_that_name_nothing_are_404(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_refund_of_an_order_that_is_not_the_payments_is_404(client: httpx.Client) -> None:
    answer = client.post("/orders/pay_nope/refund", data={"order_id": "ord_\x00"})
    assert answer.status_code == 404


def test_reports_run_shipped_scenarios_only(client: httpx.Client) -> None:
    answer = client.post("/reports", data={"scenario": "/etc/passwd"})
    assert answer.status_code == 422 and "No shipped scenario" in answer.text


def test_every_page_allows_only_its_own_host(client: httpx.Client) -> None:
    for path in ("/", "/inside", "/money", "/tour", "/reports", "/machines"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "http" not in policy, policy
