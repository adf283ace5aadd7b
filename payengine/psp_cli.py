"""`payengine psp serve`: the fake PSP on its own, for any Stripe integration to test against.

    payengine psp serve [--host H] [--port N] [--faults SCENARIO] [--seed N]
                        [--api-key sk_test_...] [--webhook-url URL] [--webhook-secret whsec_...]

It serves the Stripe-compatible face (psp/app.py) on Hypercorn until SIGINT or SIGTERM, posting
signed webhooks to `--webhook-url` when given. `--faults` names a shipped scenario (or a TOML
file) whose `[faults]` table the PSP's calls draw from (psp/faults.py). Bad input (a port out of
range, an unknown scenario, a key that is not `sk_test_...`) is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any
from urllib.parse import urlsplit

import trio

from payengine.cli_base import EXIT_OK, UsageError, sole_leaf
from payengine.config import Config

DEFAULT_PORT = 12111  # stripe-mock's port, so tools that know it find this one too
#: How long in-flight requests (and idle keep-alive connections) may hold a stop: a test PSP
#: stops quickly; a hung call (a fault) is cut.
PSP_GRACEFUL_TIMEOUT_S = 2.0


def register(sub: Any) -> None:
    psp = sub.add_parser("psp", help="the fake PSP (Stripe-compatible) on its own")
    actions = psp.add_subparsers(dest="psp_action", required=True)
    serve = actions.add_parser("serve", help="serve the fake PSP's Stripe API and hosted page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--faults", metavar="SCENARIO", help="a scenario's [faults], by name")
    serve.add_argument("--seed", type=int, default=None, help="default: the scenario's seed")
    serve.add_argument("--api-key", default=None, help="the accepted key (default: printed)")
    serve.add_argument("--webhook-url", default=None, help="where to POST signed webhooks")
    serve.add_argument("--webhook-secret", default=None, help="signing secret (default: random)")
    serve.set_defaults(fn=cmd_psp_serve)


def _check(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise UsageError("--port must be 1..65535")
    if args.api_key is not None and (
        not args.api_key.startswith("sk_test_") or len(args.api_key) <= len("sk_test_")
    ):
        raise UsageError("--api-key must be a test-mode secret key (sk_test_...)")
    if args.webhook_url is not None:
        url = urlsplit(args.webhook_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise UsageError(f"--webhook-url must be an http(s) URL, got {args.webhook_url!r}")


def cmd_psp_serve(args: argparse.Namespace, config: Config) -> int:
    from payengine.serve import hypercorn_config, wait_for_signal
    from psp.app import PspFaceSettings, create_psp_app
    from psp.faults import PspFaultPlan
    from scenarios import ScenarioError, load_scenario

    _check(args)
    plan = None
    if args.faults is not None:
        try:
            scenario = load_scenario(args.faults)
        except ScenarioError as exc:
            raise UsageError(str(exc)) from None
        seed = scenario.seed if args.seed is None else args.seed
        plan = PspFaultPlan.of(scenario.faults, seed)
    api_key = args.api_key or "sk_test_" + secrets.token_urlsafe(18)
    secret = args.webhook_secret or "whsec_" + secrets.token_urlsafe(24)
    public_url = f"http://{args.host}:{args.port}"
    settings = PspFaceSettings(
        public_url,
        args.webhook_url,
        (secret,),
        api_keys=(api_key,),
        configure=None if plan is None else plan.apply,
        webhook_plan=None if plan is None else plan.deliveries,
        background=None if plan is None else plan.disputes,
        payout_knobs=None if plan is None else plan.payout_knobs(),
        payout_webhook_plan=None if plan is None else plan.payout_deliveries,
    )
    app = create_psp_app(settings)

    async def go() -> None:
        from hypercorn.trio import serve

        stop = trio.Event()

        async def trigger() -> None:
            await stop.wait()

        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve(
                    app,
                    hypercorn_config(
                        [f"{args.host}:{args.port}"], graceful_timeout_s=PSP_GRACEFUL_TIMEOUT_S
                    ),
                    shutdown_trigger=trigger,
                    task_status=task_status,
                )
            )
            print(f"fake PSP (Stripe API) on {public_url}", flush=True)
            print(f"api key: {api_key}", flush=True)
            print(f"webhook secret: {secret}", flush=True)
            print(f"webhooks to: {args.webhook_url or '(none)'}", flush=True)
            print(f"faults: {args.faults or '(none)'}", flush=True)
            await wait_for_signal()
            stop.set()
        if plan is not None:
            print(f"faults fired: {plan.fired}", flush=True)

    try:
        trio.run(go)
    except BaseException as exc:  # re-raised unless the port cannot be bound
        leaf = sole_leaf(exc)
        if isinstance(leaf, OSError):
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {leaf}") from exc
        raise
    return EXIT_OK
