"""The guided tour: short steps through the concepts of a payment back end, each pointing at
something on screen (a page and an element id the tour highlights)."""

from __future__ import annotations

#: (title, text, page to open, element id on that page)
STEPS = (
    (
        "The hosted page keeps card data away",
        "Pick items in the Shop and pay. The card number is typed on the PSP's page (under /psp),"
        " never on ours: payengine only ever holds the PSP's session id, which keeps it out of"
        " most of PCI DSS's scope. The API even refuses a request body holding a card number.",
        "/",
        "shop-form",
    ),
    (
        "Webhooks, not redirects, say what happened",
        "After paying, the browser comes back to the shop. That redirect proves nothing: anyone"
        " can type the URL. The order page waits for the PSP's signed webhook, verified with a"
        " shared secret, and shows the state the engine committed.",
        "/inside",
        "timeline",
    ),
    (
        "Each payment is a state machine",
        "A payment and each seller's order move only along the arrows of their transition"
        " tables (engine/states.py). The pictures are drawn from those tables; the lit box is"
        " the state in the database.",
        "/inside",
        "payments",
    ),
    (
        "Idempotency keys make retries safe",
        "Every call to the PSP carries a key: the payment id to register, the order id to"
        " capture. Press 'Time out the next capture' and buy again: the PSP captured but the"
        " answer was lost; the engine retries with the same key and the PSP answers from its"
        " idempotency store. One capture, never two.",
        "/inside",
        "chaos",
    ),
    (
        "Duplicates are recorded once",
        "PSPs deliver webhooks at least once. Press 'Duplicate the next webhook' and buy: the"
        " second copy arrives, its event id is already recorded, and the timeline shows"
        " 'duplicate': nothing changes.",
        "/inside",
        "chaos",
    ),
    (
        "Retries with backoff, then dead letters",
        "Every fact others must hear (payment.completed, order.succeeded) is written to the"
        " outbox in the same transaction as the change. Each subscriber has its own cursor;"
        " a failed delivery is retried with exponential backoff and, after its last attempt,"
        " parked as a dead letter that an operator can replay.",
        "/inside",
        "outbox",
    ),
    (
        "Double entry: money is never created or destroyed",
        "Every capture and refund is a ledger transaction whose debits equal its credits. The"
        " T-accounts show each entry linked to its payment; the trial balance sums every"
        " account to zero, per currency. A seller's wallet is the ledger's projection, kept in"
        " the same commit.",
        "/money",
        "trial-balance",
    ),
    (
        "Crashes lose nothing committed",
        "Press 'Crash and restart the engine' while a payment is in flight. Every actor stops;"
        " an unfinished unit of work is rolled back. On restart, recovery hands each unfinished"
        " payment to its actor, which asks the PSP what happened before acting again.",
        "/inside",
        "chaos",
    ),
    (
        "Reconciliation checks the books against the world",
        "Every night the PSP and the bank send settlement files; each line is matched against"
        " the ledger and every mismatch is classified. `payengine scenario run` runs a simulated"
        " day with faults and checks every invariant; its --html report is listed under Reports.",
        "/reports",
        "reports",
    ),
)
