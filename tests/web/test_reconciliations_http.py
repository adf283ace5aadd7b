"""Reconciliation over real HTTP (Hypercorn, our API and the fake PSP's face): an admin uploads
the PSP's Stripe report, the capture it proves is settled once, a re-upload returns the earlier
run, a differing amount is an open item a person resolves, an unusable file is a located
problem+json that writes nothing, and only admin keys may do any of it."""

from __future__ import annotations

import attrs
import httpx

from engine.ledger import BANK_CASH, PSP_CLEARING
from engine.money import Money
from engine.reconciliation import write_stripe
from simulator.psp_reports import psp_lines
from tests.web.test_e2e_http import running_world
from tests.web.test_refunds_http import _paid_order
from web.keys import create_api_key

DAY_MS = 86_400_000


async def test_an_admin_reconciles_a_report_over_http() -> None:
    async with running_world() as (api_url, _psp_url, runtime, face), httpx.AsyncClient() as http:
        admin, _, _ = await _paid_order(api_url, runtime, face)
        _, storefront = await create_api_key(
            runtime.store, runtime.ids, runtime.clock, "storefront"
        )
        auth = {"Authorization": f"Bearer {admin}", "Content-Type": "text/csv"}
        admin_only = {"Authorization": f"Bearer {admin}"}
        now = runtime.clock.now_ms()
        lines = psp_lines(face.psp, now - DAY_MS, now + 1, "20260101")
        (line,) = lines
        report = write_stripe(lines)
        url = f"{api_url}/v1/reconciliations"

        refused = await http.post(url, content=report, headers={"Authorization": "Bearer x"})
        assert refused.status_code == 401
        forbidden = await http.post(
            url, content=report, headers={"Authorization": f"Bearer {storefront}"}
        )
        assert forbidden.status_code == 403

        dry = await http.post(url, content=report, headers=auth, params={"dry_run": "true"})
        assert dry.status_code == 200 and dry.json()["dry_run"] is True
        assert (await runtime.store.trial_balance()).get((BANK_CASH, "EUR"), 0) == 0

        created = await http.post(url, content=report, headers=auth)
        assert created.status_code == 201, created.text
        run = created.json()
        assert (run["status"], run["lines"], run["counts"]["matched"]) == ("clean", 1, 1)
        assert run["money"]["matched"] == {"EUR": "40.00"}
        assert created.headers["Location"] == f"/v1/reconciliations/{run['id']}"
        trial = await runtime.store.trial_balance()
        assert trial.get((PSP_CLEARING, "EUR"), 0) == 0
        assert trial[(BANK_CASH, "EUR")] == 4000 - 141  # 2.9% + 0.25

        again = await http.post(url, content=report, headers=auth)
        assert again.status_code == 200 and again.json()["repeated"] is True
        assert again.json()["id"] == run["id"]
        assert (await runtime.store.trial_balance())[(BANK_CASH, "EUR")] == 4000 - 141
        got = await http.get(f"{url}/{run['id']}", headers=auth)
        assert got.status_code == 200 and got.json()["id"] == run["id"]
        missing = await http.get(f"{url}/recon_nope", headers=auth)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/problem+json"

        gross = Money(4100, "EUR")
        other = attrs.evolve(line, psp_reference="txn_other", gross=gross, net=gross - line.fee)
        differs = await http.post(url, content=write_stripe([other]), headers=auth)
        assert differs.status_code == 201, differs.text
        (item,) = differs.json()["items"]
        assert (item["item_class"], item["reason"], item["status"]) == (
            "investigate",
            "already_settled",
            "open",
        )
        listed = await http.get(
            f"{api_url}/v1/reconciliation-items", headers=auth, params={"status": "investigate"}
        )
        assert [i["id"] for i in listed.json()["data"]] == [item["id"]]
        bad_status = await http.get(
            f"{api_url}/v1/reconciliation-items", headers=auth, params={"status": "nope"}
        )
        assert bad_status.status_code == 422
        resolve_url = f"{api_url}/v1/reconciliation-items/{item['id']}/resolve"
        resolved = await http.post(
            resolve_url, json={"note": "PSP error, ticket 42"}, headers=admin_only
        )
        assert resolved.status_code == 200, resolved.text
        assert (resolved.json()["status"], resolved.json()["resolution_note"]) == (
            "resolved",
            "PSP error, ticket 42",
        )
        empty_note = await http.post(resolve_url, json={"note": ""}, headers=admin_only)
        assert empty_note.status_code == 422
        open_now = await http.get(
            f"{api_url}/v1/reconciliation-items", headers=auth, params={"status": "open"}
        )
        assert open_now.json()["data"] == []

        damaged = report.replace(b"charge", b"chorge")
        unusable = await http.post(url, content=damaged, headers=auth)
        assert unusable.status_code == 422
        assert unusable.headers["Content-Type"] == "application/problem+json"
        problem = unusable.json()
        assert problem["type"].endswith("/reconciliation-file-unusable")
        assert problem["detail"].startswith("line 2, column 8:")
        runs_kept = await http.get(f"{api_url}/v1/reconciliation-items", headers=auth)
        assert len(runs_kept.json()["data"]) == 1
