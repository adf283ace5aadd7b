"""`payengine payouts list|show` and `payengine refunds create`: money going out, from the shell.

    payengine payouts list MERCHANT [--limit N]     the merchant's payouts, oldest first
    payengine payouts show ID                       one payout
    payengine refunds create ORDER [--amount 1.23]  refund (part of) a captured order

Reads go to the store, as `payengine payments show` does. Creating a refund needs the running
engine (its refund actor calls the PSP), so it goes over HTTP to the API (`--api-url`, default
$PAYENGINE_API_URL or http://127.0.0.1:8000) with a storefront or admin key (`--key`, default
$PAYENGINE_API_KEY), exactly as a merchant's system would, with an Idempotency-Key of its own
(`--idempotency-key`, so a retried command refunds once). A refusal prints the problem's
detail on one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

import msgspec

from engine.store.port import Store
from payengine.cli_base import EXIT_FAILED, EXIT_OK, UsageError
from payengine.config import Config
from web.payouts import payout_out

DEFAULT_API_URL = "http://127.0.0.1:8000"
#: How long `refunds create` waits for the API.
HTTP_TIMEOUT_S = 30.0
PAGE_LIMIT_MAX = 1000


def cmd_payouts(args: argparse.Namespace, config: Config) -> int:
    from payengine.serve import _with_store

    if args.action == "list" and not 1 <= args.limit <= PAGE_LIMIT_MAX:
        raise UsageError(f"--limit must be within 1..{PAGE_LIMIT_MAX}")

    async def go(store: Store) -> int:
        if args.action == "list":
            payouts = await store.list_payouts(args.id, args.limit)
            print(json.dumps([msgspec.to_builtins(payout_out(p)) for p in payouts], indent=2))
            return EXIT_OK
        payout = await store.get_payout(args.id)
        if payout is None:
            print(f"payengine: no payout {args.id}", file=sys.stderr)
            return EXIT_FAILED
        print(json.dumps(msgspec.to_builtins(payout_out(payout)), indent=2))
        return EXIT_OK

    return _with_store(config, go)


def cmd_refunds(args: argparse.Namespace, config: Config) -> int:
    import httpx

    key = args.key or os.environ.get("PAYENGINE_API_KEY")
    if not key:
        raise UsageError("refunds create needs an API key: --key or PAYENGINE_API_KEY")
    body: dict[str, Any] = {"order_id": args.order}
    if args.amount is not None:
        body["amount"] = args.amount
    headers = {
        "Authorization": f"Bearer {key}",
        "Idempotency-Key": args.idempotency_key or f"cli-{uuid.uuid4()}",
    }
    try:
        response = httpx.post(
            f"{args.api_url.rstrip('/')}/v1/refunds",
            json=body,
            headers=headers,
            timeout=HTTP_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach the API at {args.api_url}: {exc}") from None
    if response.status_code == 201:
        print(json.dumps(response.json(), indent=2))
        return EXIT_OK
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise UsageError(f"refund refused ({response.status_code}): {detail}")


def register(sub: Any) -> None:
    payouts = sub.add_parser("payouts", help="seller payouts: list MERCHANT, show ID")
    payouts.add_argument("action", choices=["list", "show"])
    payouts.add_argument("id", help="the merchant id (list) or the payout id (show)")
    payouts.add_argument("--limit", type=int, default=100)
    payouts.set_defaults(fn=cmd_payouts)

    refunds = sub.add_parser("refunds", help="refunds: create ORDER [--amount]")
    refunds_sub = refunds.add_subparsers(dest="action", required=True)
    create = refunds_sub.add_parser("create", help="refund (part of) a captured order")
    create.add_argument("order")
    create.add_argument("--amount", help="a decimal string in major units; default: all left")
    create.add_argument("--api-url", default=os.environ.get("PAYENGINE_API_URL", DEFAULT_API_URL))
    create.add_argument("--key", help="an API key (default: $PAYENGINE_API_KEY)")
    create.add_argument("--idempotency-key", help="default: a new one per command")
    refunds.set_defaults(fn=cmd_refunds)
