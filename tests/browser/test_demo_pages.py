"""The demo's pages in headless Chromium: a purchase through the PSP's hosted page to its
ledger lines, a declined card, a chaos button's effect on the live timeline, a crash and
restart of the engine, and every page at two sizes with no request to another host."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, PHONE, UI_TIMEOUT_MS, Pages, screenshot

CARD_SUCCEEDS = "4242 4242 4242 4242"
CARD_DECLINED = "4000 0000 0000 0002"


def buy(page: Page, card: str = CARD_SUCCEEDS, items: tuple[str, ...] = ()) -> str:
    """Check out from the Shop and pay on the hosted page; returns the payment id."""
    page.goto("/")
    for item in items:
        page.check(f"input[value={item}]")
    page.click("#pay")
    expect(page).to_have_url(re.compile(r"/psp/pay/cs_"))
    expect(page.locator("h1")).to_contain_text("Pay")
    page.fill("input[name=card_number]", card)
    page.click("button[type=submit]")
    if card == CARD_SUCCEEDS:  # the PSP sends the browser back to the shop
        expect(page).to_have_url(re.compile(r"/orders/pay_\w+\?via=redirect"))
    else:  # the PSP's page says so, and links back
        expect(page.locator("#outcome")).to_contain_text("declined")
        page.click("#return")
        expect(page).to_have_url(re.compile(r"/orders/pay_\w+"))
    found = re.search(r"/orders/(pay_\w+)", page.url)
    assert found is not None, page.url
    return found.group(1)


def test_a_purchase_through_the_hosted_page_ends_in_the_ledger(pages: Pages) -> None:
    page = pages.new_page()
    payment_id = buy(page, items=("apron", "matcha"))
    expect(page.locator("#redirect-note")).to_contain_text("redirect says nothing we can trust")
    # The page updates itself as webhooks arrive: the payment completes, each order captured.
    expect(page.locator("#payment-status")).to_have_attribute("data-status", "COMPLETED")
    expect(page.locator("td.status[data-status=SUCCESS]")).to_have_count(3)
    # The state machine drawn from engine/states.py has the current state lit.
    lit = page.locator("svg.machine[data-machine=payment] g.state.lit")
    expect(lit).to_have_count(1)
    expect(lit).to_have_attribute("data-state", "COMPLETED")
    screenshot(page, "order-completed")

    page.goto("/money")
    entries = page.locator(f"a.entry[data-payment={payment_id}]")
    # One capture per seller: a debit of psp_clearing, credits to the seller and commission.
    expect(entries.first).to_be_visible()
    assert entries.count() >= 3 * 2
    seller = page.locator("[data-account='merchant_payable:linen-works'] ul.cr a.entry")
    expect(seller.filter(has_text="EUR").first).to_be_visible()
    total = page.locator(".trial-sum[data-currency=EUR]")
    expect(total).to_have_attribute("data-zero", "true")
    expect(total).to_contain_text("0.00 EUR")
    expect(page.locator("#wallets tr[data-merchant=linen-works]")).to_be_visible()
    screenshot(page, "money-after-purchase")


def test_a_declined_card_fails_the_payment_and_books_nothing(pages: Pages) -> None:
    page = pages.new_page()
    payment_id = buy(page, card=CARD_DECLINED)
    expect(page.locator("#payment-status")).to_have_attribute("data-status", "FAILED")
    page.goto("/money")
    expect(page.locator(f"a.entry[data-payment={payment_id}]")).to_have_count(0)


def test_a_duplicated_webhook_shows_on_the_timeline_and_changes_nothing(pages: Pages) -> None:
    inside = pages.new_page()
    inside.goto("/inside")
    timeline = inside.locator("#timeline")
    inside.click("#chaos-duplicate_webhook")
    expect(inside.locator("#chaos-said")).to_contain_text("armed: duplicate the next webhook")
    expect(timeline.locator("li.lane-chaos", has_text="armed: duplicate")).to_have_count(
        1, timeout=UI_TIMEOUT_MS
    )
    shopper = pages.new_page()
    payment_id = buy(shopper)
    expect(shopper.locator("#payment-status")).to_have_attribute("data-status", "COMPLETED")
    # Over server-sent events, without reloading: the PSP sent it twice, the engine recorded
    # its event id once and answered the second copy "duplicate".
    expect(timeline.locator("li", has_text="webhook sent twice (chaos)").first).to_be_visible()
    expect(timeline.locator("li.lane-actor", has_text="→ duplicate").first).to_be_visible()
    screenshot(inside, "inside-duplicate-webhook")
    shopper.goto("/money")
    # Still one capture per order, and the books balance.
    expect(shopper.locator(".trial-sum[data-currency=EUR]")).to_have_attribute("data-zero", "true")
    assert payment_id


def test_a_corrupted_settlement_file_shows_its_item_on_the_timeline_and_money_page(
    pages: Pages,
) -> None:
    shopper = pages.new_page()
    buy(shopper)
    expect(shopper.locator("#payment-status")).to_have_attribute("data-status", "COMPLETED")
    inside = pages.new_page()
    inside.goto("/inside")
    timeline = inside.locator("#timeline")
    inside.click("#chaos-corrupt_settlement")
    # The PSP's report altered one amount: reconciliation holds it for a person to look at.
    expect(inside.locator("#chaos-said")).to_contain_text("manual_review amount_differs")
    expect(
        timeline.locator("li.lane-recon", has_text="manual_review: amount_differs").first
    ).to_be_visible()
    expect(timeline.locator("li.lane-chaos", has_text="amount altered").first).to_be_visible()
    screenshot(inside, "inside-corrupt-settlement")
    inside.click("#chaos-reconcile_settlement")
    # Nothing new was booked since: the PSP has no file to send.
    expect(inside.locator("#chaos-said")).to_contain_text("buy something first")
    shopper.goto("/money")
    expect(shopper.locator("body")).to_contain_text("amount_differs")


def test_a_clean_settlement_file_matches_line_for_line(pages: Pages) -> None:
    shopper = pages.new_page()
    buy(shopper)
    expect(shopper.locator("#payment-status")).to_have_attribute("data-status", "COMPLETED")
    inside = pages.new_page()
    inside.goto("/inside")
    inside.click("#chaos-reconcile_settlement")
    expect(inside.locator("#chaos-said")).to_contain_text("every one matched")
    expect(inside.locator("#timeline li.lane-recon", has_text="reconciled").first).to_be_visible()


def test_a_crash_and_restart_of_the_engine_loses_nothing(pages: Pages) -> None:
    inside = pages.new_page()
    inside.goto("/inside")
    inside.click("#chaos-crash_engine")
    expect(inside.locator("#chaos-said")).to_contain_text("crashed and restarted")
    expect(
        inside.locator("#timeline li.lane-engine", has_text="engine restarted").first
    ).to_be_visible()
    shopper = pages.new_page()
    buy(shopper)
    expect(shopper.locator("#payment-status")).to_have_attribute("data-status", "COMPLETED")


def test_every_page_at_desktop_and_phone_width_requests_only_the_demo(
    browser: object, pages: Pages
) -> None:
    payment_id = buy(pages.new_page())
    paths = {
        "shop": "/",
        "order": f"/orders/{payment_id}",
        "inside": "/inside",
        "money": "/money",
        "tour": "/tour",
        "reports": "/reports",
        "machines": "/machines",
    }
    for size_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        sized = Pages(browser, pages.demo, viewport)
        try:
            page = sized.new_page()
            for name, path in paths.items():
                answer = page.goto(path)
                assert answer is not None and answer.status == 200, (path, answer)
                expect(page.locator("h1").first).to_be_visible()
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], f"{path} is {width} px wide at {size_name}"
                screenshot(page, f"{name}-{size_name}")
        finally:
            sized.close()


def test_the_reports_page_runs_a_scenario_and_lists_its_report(pages: Pages) -> None:
    page = pages.new_page()
    page.goto("/reports")
    page.fill("input[name=scenario]", "happy_path")
    page.click("form.run-form button")
    expect(page).to_have_url(re.compile(r"/reports/\d{8}-\d{6}-happy_path-seed1\.html"))
    expect(page.locator("h1")).to_contain_text("Scenario happy_path, seed 1")
    expect(page.locator(".verdict")).to_contain_text("every invariant held")
    page.goto("/reports")
    expect(page.locator("a", has_text="happy_path-seed1.html").first).to_be_visible()


def test_a_capture_answer_lost_after_the_psp_captured_is_retried_with_the_same_key(
    pages: Pages,
) -> None:
    inside = pages.new_page()
    inside.goto("/inside")
    inside.click("#chaos-timeout_capture")
    expect(inside.locator("#chaos-said")).to_contain_text("armed: time out the next capture")
    shopper = pages.new_page()
    payment_id = buy(shopper)
    expect(shopper.locator("#payment-status")).to_have_attribute("data-status", "COMPLETED")
    orders = shopper.locator("tr[data-order]")
    expect(orders).to_have_count(3)
    order_ids = [orders.nth(i).get_attribute("data-order") for i in range(3)]
    timeline = inside.locator("#timeline")
    expect(
        timeline.locator("li", has_text="capture done, answer lost (chaos)").first
    ).to_be_visible()
    lost = timeline.locator("li.lane-psp", has_text="capture → outcome unknown")
    expect(lost.first).to_be_visible()
    order_id = next(o for o in order_ids if o and o in lost.first.inner_text())
    # The order stays EXECUTING (a timeout is not a failure) until the PSP's word arrives:
    # its capture webhook, or its answer to a retry with the same idempotency key.
    learned = re.compile(
        rf"(capture → captured {order_id}|order:{order_id} ApplyPspEvent → applied"
        rf"|query_capture → captured {order_id})"
    )
    expect(timeline.locator("li", has_text=learned).first).to_be_visible()
    shopper.goto("/money")
    expect(shopper.locator(".trial-sum[data-currency=EUR]")).to_have_attribute("data-zero", "true")
    # Captured and booked once per order: one psp_clearing debit for each of the three.
    clearing = shopper.locator(f"[data-account=psp_clearing] ul.dr a[data-payment={payment_id}]")
    expect(clearing).to_have_count(3)


def test_a_refund_from_the_order_page_is_new_ledger_entries(pages: Pages) -> None:
    page = pages.new_page()
    buy(page)
    expect(page.locator("#payment-status")).to_have_attribute("data-status", "COMPLETED")
    order_id = page.locator("tr[data-order]").first.get_attribute("data-order")
    page.locator(f"tr[data-order={order_id}] button", has_text="Refund").click()
    refund = page.locator("li.refund", has_text=str(order_id))
    expect(refund).to_have_attribute("data-status", "SUCCEEDED")
    page.goto("/money")
    expect(page.locator("#refunds tr", has_text=str(order_id))).to_contain_text("SUCCEEDED")
    expect(page.locator("[data-account=refunds_clearing]")).to_be_visible()
    expect(page.locator(".trial-sum[data-currency=EUR]")).to_have_attribute("data-zero", "true")
