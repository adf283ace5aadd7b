"""`payengine serve` and the operator commands over the same service layer.

    payengine serve [--host H] [--port P] [--certfile F --keyfile F] [--print-keys]
                    [--psp-port P | --no-fake-psp --psp-url URL]
    payengine keys create --scope storefront|merchant:ID|admin [--label TEXT]
    payengine payments show ID
    payengine dlq list | dlq replay ID
    payengine ledger trial-balance

`serve` runs the API on Hypercorn's trio worker (TLS when given a certificate and key) and, by
default, the fake PSP's HTTP face on a second port, wired to each other over real HTTP: the
engine reaches the PSP through the HTTP Gateway, the PSP posts signed webhooks back. SIGINT or
SIGTERM starts a graceful shutdown: the listeners close, in-flight requests finish (within
`GRACEFUL_TIMEOUT_S`), then the engine stops.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import msgspec
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve as hypercorn_serve

from actors.clock import TrioClock
from actors.service import PaymentView
from engine.ids import Ids
from engine.ports import Clock
from engine.store.port import Store
from payengine.cli_base import EXIT_FAILED, EXIT_OK, UsageError, run, where
from payengine.config import Config
from web.gctune import tune_for_serving
from web.http_gateway import open_http_gateway
from web.keepalive import keep_alive_safe
from web.keys import create_api_key
from web.wire import dead_letter_out, payment_out, trial_balance_out

#: How long in-flight requests may run on after a shutdown signal.
GRACEFUL_TIMEOUT_S = 10.0


def hypercorn_config(
    binds: list[str],
    certfile: str | None = None,
    keyfile: str | None = None,
    graceful_timeout_s: float = GRACEFUL_TIMEOUT_S,
) -> HyperConfig:
    """Idle keep-alive connections (the PSP's to us, ours to the PSP) also hold a graceful
    shutdown open until the timeout: that bounds a stop to `graceful_timeout_s`."""
    config = HyperConfig()
    config.bind = binds
    config.graceful_timeout = graceful_timeout_s
    config.accesslog = None  # the app logs each request as JSON (web/logs.py)
    if certfile and keyfile:
        config.certfile = certfile
        config.keyfile = keyfile
    return config


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


@asynccontextmanager
async def _opened(store: Store) -> AsyncIterator[Store]:
    yield store


def _keys_env(store: Store) -> tuple[Ids, Clock]:
    clock = TrioClock(int(time.time() * 1000))
    return Ids(clock, random.SystemRandom()), clock


# --- serve ------------------------------------------------------------------------------------


@attrs.frozen
class ServeOptions:
    """Where and how `serve` (and `demo --serve`) listen."""

    host: str = "127.0.0.1"
    port: int = 8000
    psp_port: int = 8001
    psp_url: str | None = None  # None: start the fake PSP's HTTP face on psp_port
    certfile: str | None = None
    keyfile: str | None = None
    webhook_secret: str | None = None
    #: The PSP's API key (Stripe's secret key); None: the in-process fake PSP's.
    psp_api_key: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        if bool(args.certfile) != bool(args.keyfile):
            raise UsageError("--certfile and --keyfile go together")
        for name in ("port", "psp_port"):
            if not 0 < getattr(args, name) < 65536:
                raise UsageError(f"--{name.replace('_', '-')} must be 1..65535")
        return cls(
            host=args.host,
            port=args.port,
            psp_port=args.psp_port,
            psp_url=args.psp_url,
            certfile=args.certfile,
            keyfile=args.keyfile,
            webhook_secret=args.webhook_secret,
            psp_api_key=args.psp_api_key or os.environ.get("PAYENGINE_PSP_API_KEY"),
        )

    @property
    def api_url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"


def add_serve_arguments(parser: Any) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--certfile", help="TLS certificate (PEM); TLS is on when given")
    parser.add_argument("--keyfile", help="TLS private key (PEM)")
    parser.add_argument("--psp-port", type=int, default=8001, help="port of the fake PSP")
    parser.add_argument("--psp-url", help="use this PSP instead of starting the fake one")
    parser.add_argument("--webhook-secret", help="PSP webhook signing secret (default: random)")
    parser.add_argument(
        "--psp-api-key",
        help="the PSP's secret key, with --psp-url (default: $PAYENGINE_PSP_API_KEY)",
    )


async def mint_keys(store: Store, scopes: tuple[str, ...], label: str) -> dict[str, str]:
    """New API keys for `scopes`, by scope; the texts are returned once and stored hashed."""
    ids, clock = _keys_env(store)
    made = {}
    for scope in scopes:
        _, made[scope] = await create_api_key(store, ids, clock, scope, label)
    return made


async def serve_api(store: Store, config: Config, options: ServeOptions, where: str) -> int:
    """Serve the API (and the fake PSP's face) on `store` until SIGINT/SIGTERM, then stop
    gracefully: listeners close, in-flight requests finish, the engine stops; EXIT_OK.

    If the engine is gone (web/liveness.py: it ended with an error while serving), stop the
    same way and return EXIT_FAILED, so that a supervisor restarts the process. A database
    outage does not end the engine (docs/operations.md)."""
    from psp.app import PspFaceSettings, create_psp_app
    from web.app import create_app
    from web.liveness import LIVENESS_EXTENSION, Liveness
    from web.runtime import Wiring
    from web.settings import WebSettings

    api_url = options.api_url
    secret = options.webhook_secret or "whsec_" + secrets.token_urlsafe(24)
    fake_psp = options.psp_url is None
    psp_url = options.psp_url or f"http://{options.host}:{options.psp_port}"
    wiring = Wiring(
        open_store=lambda: _opened(store),
        open_gateway=lambda clock: (
            open_http_gateway(psp_url, options.psp_api_key)
            if options.psp_api_key
            else open_http_gateway(psp_url)
        ),
        engine_config=config.engine,
    )
    settings = WebSettings(psp_webhook_secrets=(secret,), public_base_url=api_url)
    api = create_app(wiring, settings)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()

        async def trigger() -> None:
            await stop.wait()

        if fake_psp:
            face = create_psp_app(PspFaceSettings(psp_url, f"{api_url}/v1/psp/webhooks", (secret,)))
            psp_config = hypercorn_config([f"{options.host}:{options.psp_port}"])
            await nursery.start(
                lambda task_status: hypercorn_serve(
                    keep_alive_safe(face),
                    psp_config,
                    shutdown_trigger=trigger,
                    task_status=task_status,
                )
            )
            print(f"fake PSP on {psp_url} (hosted pages at {psp_url}/pay/...)", flush=True)
        api_config = hypercorn_config(
            [f"{options.host}:{options.port}"], options.certfile, options.keyfile
        )
        await nursery.start(
            lambda task_status: hypercorn_serve(
                api, api_config, shutdown_trigger=trigger, task_status=task_status
            )
        )
        tune_for_serving()  # started: what is alive now lives as long as the process
        print(f"payengine API on {api_url} ({where}); docs at {api_url}/docs", flush=True)
        liveness: Liveness = api.extensions[LIVENESS_EXTENSION]
        async with trio.open_nursery() as waiting:  # the first of a signal or the engine gone

            async def signalled() -> None:
                await wait_for_signal()
                waiting.cancel_scope.cancel()

            async def engine_gone() -> None:
                await liveness.gone.wait()
                waiting.cancel_scope.cancel()

            waiting.start_soon(signalled)
            waiting.start_soon(engine_gone)
        if liveness.reason is not None:
            print(f"{liveness.reason}; stopping (exit {EXIT_FAILED})", flush=True)
        print("shutting down: finishing in-flight requests", flush=True)
        stop.set()
    return EXIT_OK if liveness.reason is None else EXIT_FAILED


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from engine.store.postgres import open_postgres_store
    from web.logs import configure_logging

    options = ServeOptions.from_args(args)
    dsn, described = where(config)
    configure_logging()

    async def go() -> int:
        async with open_postgres_store(dsn) as store:
            if args.print_keys:
                made = await mint_keys(store, ("storefront", "admin"), "serve --print-keys")
                for scope, text in made.items():
                    print(f"{scope} key: {text}", flush=True)
            return await serve_api(store, config, options, described)

    return run(go)


# --- operator commands --------------------------------------------------------------------------


def _with_store(config: Config, fn: Callable[[Store], Awaitable[int]]) -> int:
    from engine.store.postgres import open_postgres_store

    dsn, _ = where(config)

    async def go() -> int:
        async with open_postgres_store(dsn) as store:
            return await fn(store)

    return run(go)


def _print(model: Any) -> None:
    print(json.dumps(msgspec.to_builtins(model), indent=2))


def cmd_keys(args: argparse.Namespace, config: Config) -> int:
    async def go(store: Store) -> int:
        ids, clock = _keys_env(store)
        try:
            key, text = await create_api_key(store, ids, clock, args.scope, args.label)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"{key.key_id} ({key.scope}): {text}")
        print("This key is shown once; payengine keeps only its hash.", file=sys.stderr)
        return EXIT_OK

    return _with_store(config, go)


def cmd_payments(args: argparse.Namespace, config: Config) -> int:
    async def go(store: Store) -> int:
        payment = await store.get_payment(args.id)
        if payment is None:
            print(f"payengine: no payment {args.id}", file=sys.stderr)
            return EXIT_FAILED
        _print(payment_out(PaymentView(payment, tuple(await store.get_orders(args.id)))))
        return EXIT_OK

    return _with_store(config, go)


def cmd_dlq(args: argparse.Namespace, config: Config) -> int:
    async def go(store: Store) -> int:
        if args.action == "list":
            letters = await store.list_dead_letters(args.limit)
            _print([dead_letter_out(d) for d in letters])
            return EXIT_OK
        if not args.id:
            raise UsageError("dlq replay needs the dead letter's id (subscriber:message_id)")
        subscriber, _, message_id = args.id.rpartition(":")
        async with store.unit_of_work() as uow:
            replayed = await uow.replay_dead_letter(subscriber, message_id, int(time.time() * 1000))
        print("replayed" if replayed else f"no dead letter {args.id}")
        return EXIT_OK if replayed else EXIT_FAILED

    return _with_store(config, go)


def cmd_ledger(args: argparse.Namespace, config: Config) -> int:
    async def go(store: Store) -> int:
        report = trial_balance_out(await store.trial_balance())
        _print(report)
        return EXIT_OK if report.balanced else EXIT_FAILED

    return _with_store(config, go)


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the HTTP API (and the fake PSP) on Hypercorn")
    add_serve_arguments(serve)
    serve.add_argument("--print-keys", action="store_true", help="mint and print two keys")
    serve.set_defaults(fn=cmd_serve)

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="mint a key and print it once")
    create.add_argument("--scope", required=True, help="storefront | merchant:ID | admin")
    create.add_argument("--label", default="")
    keys.set_defaults(fn=cmd_keys)

    payments = sub.add_parser("payments", help="payments")
    payments_sub = payments.add_subparsers(dest="action", required=True)
    payments_sub.add_parser("show", help="one payment with its orders").add_argument("id")
    payments.set_defaults(fn=cmd_payments)

    dlq = sub.add_parser("dlq", help="dead letters: list, replay ID")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("id", nargs="?")
    dlq.add_argument("--limit", type=int, default=100)
    dlq.set_defaults(fn=cmd_dlq)

    ledger = sub.add_parser("ledger", help="the ledger")
    ledger.add_argument("action", choices=["trial-balance"])
    ledger.set_defaults(fn=cmd_ledger)

