"""`payengine demo`: a narrated checkout in the terminal, then the teaching pages in the browser.

    payengine demo [--host H] [--port P] [--reset] [--traffic 5/s] [--faults NAME]
                   [--no-narration] [--no-serve]

It starts the embedded PostgreSQL (or uses DATABASE_URL), narrates one checkout on the real
engine (payengine/demo.py), then serves payengine's API, the fake PSP and the pages (teach/) on
one port, prints the URL and runs until Ctrl-C: a clean shutdown, the data kept for next time
(`--reset` starts from an empty embedded database). `--no-serve` narrates and exits (tests and
CI use it); `--traffic` adds background purchases; `--faults` names a scenario whose PSP faults
apply to every call and webhook. Bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
from functools import partial
from pathlib import Path
from typing import Any

import trio

from payengine.cli_base import EXIT_OK, UsageError, run, where
from payengine.config import Config


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo", help="a narrated checkout, then the teaching pages in the browser"
    )
    demo.add_argument("--host", default="127.0.0.1", help="where the pages listen")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--no-serve", action="store_true", help="narrate, then exit (tests, CI)")
    demo.add_argument("--no-narration", action="store_true", help="serve the pages at once")
    demo.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the default now
    demo.add_argument("--reset", action="store_true", help="start from an empty embedded database")
    demo.add_argument("--traffic", metavar="RATE", help="background purchases, e.g. 5/s")
    demo.add_argument("--faults", metavar="SCENARIO", help="a scenario's PSP faults, by name")
    demo.add_argument("--seed", type=int, default=None, help="seed of --faults' draws")
    demo.set_defaults(fn=cmd_demo)


def _options(args: argparse.Namespace, config: Config) -> Any:
    from psp.faults import PspFaultPlan
    from scenarios import ScenarioError, load_scenario
    from teach.server import DemoOptions
    from teach.traffic import parse_rate

    if not 0 < args.port < 65536:
        raise UsageError("--port must be 1..65535")
    try:
        rate = 0.0 if args.traffic is None else parse_rate(args.traffic)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    plan = None
    if args.faults is not None:
        try:
            scenario = load_scenario(args.faults)
        except ScenarioError as exc:
            raise UsageError(str(exc)) from None
        plan = PspFaultPlan.of(scenario.faults, scenario.seed if args.seed is None else args.seed)
    return DemoOptions(
        host=args.host,
        port=args.port,
        traffic_per_s=rate,
        fault_plan=plan,
        reports_dir=Path(config.data_dir) / "reports",
    )


def _check_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _reset(config: Config) -> None:
    from payengine import database

    if config.database_url:
        raise UsageError("--reset empties the embedded database only; DATABASE_URL is set")
    database.stop_embedded(config.data_dir)
    shutil.rmtree(Path(config.data_dir) / "pg", ignore_errors=True)
    print(f"reset: the embedded database in {config.data_dir / 'pg'} starts empty", flush=True)


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from engine.store.postgres import open_postgres_store
    from payengine.demo import run_demo
    from payengine.serve import mint_keys, wait_for_signal

    options = None if args.no_serve else _options(args, config)
    if options is not None:
        _check_free(options.host, options.port)
    if args.reset:
        _reset(config)
    dsn, described = where(config)

    async def go() -> int:
        async with open_postgres_store(dsn) as store:
            if not args.no_narration:
                keys = await mint_keys(store, ("storefront", "admin"), "payengine demo")
                api_url = None if options is None else options.base_url
                code = await run_demo(store, described, keys=keys, api_url=api_url)
                if code != EXIT_OK or options is None:
                    return code
            assert options is not None
            return await _serve(store, config, options, described, wait_for_signal, args.verbose)

    return run(go)


async def _serve(
    store: Any,
    config: Config,
    options: Any,
    described: str,
    wait_for_signal: Any,
    verbose: bool = False,
) -> int:
    from teach.reports import scenario_runner
    from teach.server import build, serve_demo
    from web.logs import configure_logging

    # The pages show what happens; the request log (JSON lines) only with -v.
    configure_logging(logging.INFO if verbose else logging.WARNING)

    server = build(store, config.engine, options, run_scenario=scenario_runner(options.reports_dir))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve_demo, server, options, stop=stop))
        print(f"payengine demo on {url} ({described})", flush=True)
        print(f"   open {url}/ in a browser: Shop, Inside, Money, Tour, Reports", flush=True)
        print(f"   API docs at {url}/docs; the fake PSP at {url}/psp", flush=True)
        if options.traffic_per_s:
            print(f"   background traffic: {options.traffic_per_s:g} purchases/s", flush=True)
        print("   Ctrl-C stops it; the data stays for next time (--reset starts fresh)", flush=True)
        await wait_for_signal()
        print("shutting down", flush=True)
        stop.set()
    return EXIT_OK
