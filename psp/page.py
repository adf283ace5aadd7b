"""The hosted payment page: where the buyer types a card number (at the PSP, never at us).

Test cards, as Stripe's: 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined,
4000 0000 0000 9235 goes to the PSP's manual review. Anything else is declined.
"""

from __future__ import annotations

from html import escape

CARD_SUCCEEDS = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_REVIEW = "4000000000009235"


def page(
    session_id: str, amount: str, currency: str, status: str, return_url: str | None = None
) -> str:
    # The form posts back to this page's own URL (no action), so the page works wherever the
    # PSP is mounted (`payengine demo` serves it under /psp).
    back = (
        f'<p><a id="return" href="{escape(return_url)}">Return to the merchant</a></p>'
        if return_url
        else ""
    )
    form = (
        '<form method="post">'
        '<label>Card number <input name="card_number" value="4242 4242 4242 4242"></label>'
        '<button type="submit">Pay</button></form>'
        if status == "open"
        else f'<p id="outcome">This payment is {escape(status)}.</p>{back}'
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Fake PSP checkout</title></head>"
        f"<body><h1>Pay {escape(amount)} {escape(currency)}</h1>{form}"
        "<p>Test cards: 4242… succeeds, 4000 0000 0000 0002 declines, "
        "4000 0000 0000 9235 goes to review.</p></body></html>"
    )


def outcome_for(card_number: str) -> str:
    digits = "".join(c for c in card_number if c.isdigit())
    return {CARD_SUCCEEDS: "pay", CARD_REVIEW: "review"}.get(digits, "decline")
