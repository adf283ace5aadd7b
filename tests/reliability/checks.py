"""The checks after a nemesis run, against the engine's database, its API and the PSP's books.

- every acknowledged payment exists, with the orders the client asked for, and ends COMPLETED
  (every one was paid) within `SETTLE_TIMEOUT_S` of the last fault: otherwise it is *lost*;
- one capture per order: exactly one charge tagged with the order at the PSP, of the order's
  amount, and exactly one capture transaction in the ledger: more is *doubled*;
- the trial balance (through the API) is zero in every currency;
- every wallet equals its ledger accounts (available: `merchant_payable:<m>`, reserved:
  `merchant_reserved:<m>`; both are liabilities, so a credit balance).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import attrs
import httpx
import stripe

from tests.reliability.load import Acknowledged
from tests.reliability.stack import PSP_API_KEY, Sql

#: How long the acknowledged payments may take to end after the last fault.
SETTLE_TIMEOUT_S = 180.0
FINAL = ("COMPLETED", "FAILED", "EXPIRED", "REJECTED_BY_RISK")


@attrs.define
class Verdict:
    acknowledged: int = 0
    completed: int = 0
    lost: list[str] = attrs.Factory(list)
    doubled: list[str] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)
    settle_s: float = 0.0


def _statuses(db: Sql, ids: list[str]) -> dict[str, str]:
    rows = db.fetch("SELECT payment_id, status FROM payments WHERE payment_id = ANY($1)", ids)
    return {r["payment_id"]: r["status"] for r in rows}


def wait_settled(db: Sql, acked: Sequence[Acknowledged], verdict: Verdict) -> dict[str, str]:
    ids = [a.payment_id for a in acked]
    started = time.monotonic()
    statuses = _statuses(db, ids)
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        statuses = _statuses(db, ids)
        if all(statuses.get(i) in FINAL for i in ids):
            break
        time.sleep(0.5)
    verdict.settle_s = time.monotonic() - started
    return statuses


def check_all(
    db: Sql, api_url: str, admin_key: str, psp_url: str, acked: Sequence[Acknowledged]
) -> Verdict:
    verdict = Verdict(acknowledged=len(acked))
    statuses = wait_settled(db, acked, verdict)
    for a in acked:
        status = statuses.get(a.payment_id)
        if status != "COMPLETED":
            verdict.lost.append(f"{a.payment_id} ({a.checkout_id}): {status}")
        else:
            verdict.completed += 1
    orders = db.fetch(
        "SELECT o.order_id, o.payment_id, o.seller_id, o.amount_minor, o.status, p.psp_session_id"
        " FROM payment_orders o JOIN payments p USING (payment_id)"
        " WHERE o.payment_id = ANY($1)",
        [a.payment_id for a in acked],
    )
    by_payment: dict[str, dict[str, int]] = {}
    for o in orders:
        by_payment.setdefault(o["payment_id"], {})[o["seller_id"]] = o["amount_minor"]
    for a in acked:
        if a.payment_id in by_payment and by_payment[a.payment_id] != a.orders:
            verdict.problems.append(f"{a.payment_id}: orders {by_payment[a.payment_id]} != asked")
    captures = Counter(
        r["reference"]
        for r in db.fetch("SELECT reference FROM ledger_transactions WHERE kind = 'capture'")
    )
    psp = stripe.StripeClient(
        PSP_API_KEY,
        base_addresses={"api": psp_url},
        http_client=stripe.HTTPXClient(timeout=30, allow_sync_methods=True),
        max_network_retries=3,
    )
    charges: dict[str, list[int]] = {}
    for session in {o["psp_session_id"] for o in orders if o["psp_session_id"]}:
        pi = "pi_" + session.removeprefix("cs_")
        for charge in psp.v1.charges.list({"payment_intent": pi, "limit": 100}).auto_paging_iter():
            for tag in list(charge.metadata.keys()):
                charges.setdefault(tag, []).append(charge.amount)
    for o in orders:
        at_psp = charges.get(o["order_id"], [])
        in_ledger = captures[o["order_id"]]
        if len(at_psp) > 1 or in_ledger > 1:
            verdict.doubled.append(f"{o['order_id']}: {len(at_psp)} charges, {in_ledger} captures")
        elif o["status"] == "SUCCESS" and (at_psp != [o["amount_minor"]] or in_ledger != 1):
            verdict.problems.append(f"{o['order_id']}: charges {at_psp}, {in_ledger} captures")
    trial = httpx.get(
        f"{api_url}/v1/ledger/trial-balance",
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    if trial.status_code != 200 or not trial.json()["balanced"]:
        verdict.problems.append(f"trial balance: {trial.status_code} {trial.text[:300]}")
    verdict.problems += wallet_mismatches(db)
    return verdict


def wallet_mismatches(db: Sql) -> list[str]:
    ledger: dict[tuple[str, str, str], int] = {}
    for r in db.fetch(
        "SELECT account, currency, sum(amount_minor) AS total FROM ledger_entries"
        " WHERE account LIKE 'merchant_payable:%' OR account LIKE 'merchant_reserved:%'"
        " GROUP BY account, currency"
    ):
        kind, merchant = r["account"].split(":", 1)
        ledger[(merchant, r["currency"], kind)] = -int(r["total"])
    found = []
    wallets = db.fetch("SELECT merchant_id, currency, available_minor, reserved_minor FROM wallets")
    for w in wallets:
        available = ledger.pop((w["merchant_id"], w["currency"], "merchant_payable"), 0)
        reserved = ledger.pop((w["merchant_id"], w["currency"], "merchant_reserved"), 0)
        if (w["available_minor"], w["reserved_minor"]) != (available, reserved):
            found.append(
                f"wallet {w['merchant_id']} {w['currency']}: "
                f"{w['available_minor']}/{w['reserved_minor']} != ledger {available}/{reserved}"
            )
    found += [f"no wallet for {k}: ledger {v}" for k, v in ledger.items() if v]
    return found
