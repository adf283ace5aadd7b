"""`payengine scenario list|run|fuzz`: the deterministic simulator as a command.

`run` prints a progress bar on stderr while the scenario runs, then the report on stdout; exit
0 when every invariant held, 1 when one was violated (the report ends with the replay command),
2 for bad input (unknown scenario, bad TOML: one line naming the field), 3 when a postgres run
could not be judged (the database stopped answering; what waited where is printed). `fuzz` is
swarm testing over many seeds and stops at the first violation, shrinks it, and saves the shrunk
scenario.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from payengine.config import Config

EXIT_OK = 0
EXIT_VIOLATED = 1
#: A postgres-tier run that stopped before it could be judged (simulator/stall.py).
EXIT_INCONCLUSIVE = 3
#: The fewest wall seconds between two redraws of the progress bar.
PROGRESS_REDRAW_S_MIN = 0.2
PROGRESS_BAR_WIDTH = 30


def register(sub: Any) -> None:
    scenario = sub.add_parser("scenario", help="deterministic simulation: list, run, fuzz")
    actions = scenario.add_subparsers(dest="scenario_action", required=True)
    actions.add_parser("list", help="the shipped scenarios").set_defaults(fn=cmd_list)
    run = actions.add_parser("run", help="run one scenario with a seed and judge it")
    run.add_argument("scenario", metavar="FILE_OR_NAME")
    run.add_argument("--seed", type=int, default=None, help="default: the scenario's seed")
    run.add_argument("--store", choices=["memory", "postgres"], default="memory")
    run.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    run.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report")
    run.add_argument("--settlement-dir", metavar="DIR", help="write the settlement files here")
    run.add_argument(
        "--scale",
        type=float,
        default=None,
        help="multiply the traffic time (and expectations) by this factor, e.g. 0.1",
    )
    run.add_argument(
        "--time-scale",
        type=float,
        default=None,
        metavar="R",
        help="postgres only: virtual seconds per wall second (default: chosen per scenario)",
    )
    run.set_defaults(fn=cmd_run)
    fuzz = actions.add_parser("fuzz", help="swarm testing over many seeds")
    fuzz.add_argument("--runs", type=int, default=100)
    fuzz.add_argument("--seed-start", type=int, default=1)
    fuzz.add_argument("--scenario", default="swarm", help="base scenario (default: swarm)")
    fuzz.add_argument("--no-shrink", action="store_true", help="report the failure unshrunk")
    fuzz.add_argument("--out", default=".", help="where a shrunk failing scenario is saved")
    fuzz.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes running seeds in parallel (default: the CPUs this process may use)",
    )
    fuzz.set_defaults(fn=cmd_fuzz)


def _load(name: str) -> Any:
    from payengine.cli_base import UsageError
    from scenarios import ScenarioError, load_scenario

    try:
        return load_scenario(name)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    from scenarios import shipped

    for s in shipped():
        print(f"{s.name:<20} seed {s.seed:<4} {s.duration_s:>7.0f} s  {s.description}")
    return EXIT_OK


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most every PROGRESS_REDRAW_S_MIN."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self._last = 0.0
        self._drawn = False

    def __call__(self, world: Any) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_REDRAW_S_MIN:
            return
        self._last = now
        duration_s = world.scenario.duration_s
        elapsed_s = world.now_ms() / 1000
        fraction = min(1.0, elapsed_s / duration_s)
        filled = int(fraction * PROGRESS_BAR_WIDTH)
        phase = "traffic" if world.faults_on else "liveness"
        line = (
            f"\r[{'#' * filled}{'.' * (PROGRESS_BAR_WIDTH - filled)}] {fraction:4.0%} {phase} "
            f"virtual {elapsed_s:,.0f} s, {world.store.payments_count():,} payments, "
            f"{sum(world.faults.values()):,} faults"
        )
        self.out.write(line)
        self.out.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._drawn = False
            self.out.write("\n")
            self.out.flush()


def report(result: Any) -> str:
    """The human report of one run."""
    s = result.summary
    lines = [
        f"scenario {result.scenario.name}, seed {result.seed}: "
        + ("every invariant held" if result.ok else f"VIOLATED {result.violation.invariant}"),
        "",
        "payments   " + ", ".join(f"{k} {v}" for k, v in s["payments"].items()),
        "orders     " + ", ".join(f"{k} {v}" for k, v in s["orders"].items()),
        f"captures   {s['psp_captures']} at the PSP, dead letters {s['dead_letters']}",
        "money (minor units: captured at the PSP / booked to sellers / commission)",
    ]
    for currency, money in s["money_minor"].items():
        lines.append(
            f"  {currency}  {money['captured']:>14,} / {money['sellers']:>14,} / "
            f"{money['commission']:>12,}"
        )
    lines.append("faults fired")
    if not result.faults:
        lines.append("  none")
    for name, count in result.faults.items():
        lines.append(f"  {name:<30} {count:>7,}")
    stats = result.stats
    lines.append(
        f"clients    {stats['checkouts']} checkouts, {stats['client_retries']} retries, "
        + ", ".join(f"{k} {v}" for k, v in stats["buyer_outcomes"].items())
    )
    if "settlement" in stats:
        st = stats["settlement"]
        lines.append(
            f"settlement {st['files']} file(s) reconciled, {st['rows']} row(s), "
            f"{st['refused']} refused; injected: "
            + (", ".join(f"{k} {v}" for k, v in st["corruptions"].items()) or "none")
            + "; items: "
            + (", ".join(f"{k} {v}" for k, v in st["items"].items()) or "none")
        )
    if "refunds" in stats:
        rf = stats["refunds"]
        lines.append(
            f"refunds    {rf['requests']} request(s), {rf['created']} created, rejected: "
            + (", ".join(f"{k} {v}" for k, v in rf["rejected"].items()) or "none")
            + "; at the PSP: "
            + (", ".join(f"{k} {v}" for k, v in rf["psp"].items()) or "none")
        )
    if "disputes" in stats:
        dp = stats["disputes"]
        lines.append(
            f"disputes   {dp['disputed']} opened at the PSP: "
            + (", ".join(f"{k} {v}" for k, v in dp["psp"].items()) or "none")
            + f"; {dp['redelivered']} event(s) delivered again once the faults stopped"
        )
    if "crash_sweep" in stats:
        sw = stats["crash_sweep"]
        lines.append(
            f"crash sweep {sw['flows_swept']} flow(s) swept, {sw['crashes']} crash(es) at "
            f"{sw['points_covered']} of {sw['points']} commit boundaries, {sw['missed']} flow(s) "
            "shorter than their point"
        )
    lines.append("invariants")
    for name, verdict in result.invariants.items():
        lines.append(f"  {name:<36} {verdict}")
    per_s = result.payments / result.wall_s if result.wall_s else 0.0
    lines += [
        f"time       virtual {result.virtual_s:,.0f} s ({result.virtual_s / 3600:.1f} h), "
        f"wall {result.wall_s:.1f} s, {per_s:,.{0 if per_s >= 10 else 2}f} payments per wall "
        "second",
    ]
    tier = result.tier
    if tier:
        lines += [
            f"store      {tier['store']}: {tier['database']}",
            f"mode       real time at {tier['time_scale']:g} virtual s per wall s; not "
            "deterministic (trio scheduler seeding off): the trace hash is not reproducible",
        ]
        lines += [f"scaled     {note}" for note in tier["notes"]]
        if "write_behind" in tier:  # simulator/pg_batched.py
            batched = tier["write_behind"].items()
            counts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in batched)
            lines.append(f"write-behind units: {counts}")
    lines += [
        f"trace      {result.trace_events:,} events, sha256 {result.trace_hash}",
        f"replay     {result.replay}",
    ]
    if not result.ok:
        lines += ["", f"violation  {result.violation}", "last trace events:"]
        lines += [f"  {line}" for line in result.trace_recent[-15:]]
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from payengine.cli_base import UsageError
    from simulator.runner import run_scenario, scaled

    if args.time_scale is not None:
        from simulator.pg_runner import TIME_SCALE_MAX

        if args.store != "postgres":
            raise UsageError("--time-scale needs --store postgres (memory runs in virtual time)")
        if not 0 < args.time_scale <= TIME_SCALE_MAX:
            raise UsageError(f"--time-scale must be within (0, {TIME_SCALE_MAX:g}]")
    if args.scale is not None and not 0 < args.scale <= 100:
        raise UsageError("--scale must be within (0, 100]")
    scenario = _load(args.scenario)
    options = ""
    if args.scale is not None:
        scenario = scaled(scenario, args.scale)
        options = f" --scale {args.scale:g}"
    if args.settlement_dir:
        try:
            Path(args.settlement_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--settlement-dir {args.settlement_dir}: {exc.strerror}") from None
    from simulator.stall import RunInconclusive

    bar = ProgressBar()
    sampler = None
    if args.html:
        from teach.report_html import Sampler

        sampler = Sampler(bar)
    progress: Any = bar if sampler is None else sampler
    try:
        if args.store == "postgres":
            result = _run_postgres(args, config, scenario, progress, options)
        else:
            result = run_scenario(
                scenario, args.seed, progress=progress, verbose=args.verbose, replay_options=options
            )
    except RunInconclusive as exc:
        bar.close()
        print(f"payengine: the run could not be judged: {exc}", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    finally:
        bar.close()
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if sampler is not None:
        from teach.report_html import render

        sampler.finish(result)
        Path(args.html).write_text(render(result, sampler.samples))
    if args.settlement_dir:
        from simulator.world_recon import write_settlement_files

        write_settlement_files(result.settlement_files, Path(args.settlement_dir))
    return EXIT_OK if result.ok else EXIT_VIOLATED


def _run_postgres(
    args: argparse.Namespace, config: Config, scenario: Any, bar: Any, options: str
) -> Any:
    from engine.errors import StoreUnavailable
    from payengine.cli_base import UsageError, where
    from simulator.pg_runner import run_scenario_postgres

    server_dsn, where_ = where(config)
    try:
        return run_scenario_postgres(
            scenario,
            args.seed,
            server_dsn=server_dsn,
            where=where_,
            time_scale=args.time_scale,
            progress=bar,
            verbose=args.verbose,
            replay_options=options,
        )
    except (OSError, TimeoutError, StoreUnavailable) as exc:
        raise UsageError(f"cannot reach the database ({where_}): {exc}") from exc


def cmd_fuzz(args: argparse.Namespace, config: Config) -> int:
    from payengine.cli_base import UsageError
    from simulator.parallel_fuzz import default_jobs, fuzz_parallel

    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    jobs = min(args.runs, default_jobs() if args.jobs is None else args.jobs)
    base = _load(args.scenario)
    payments = 0

    done = 0

    def on_run(result: Any) -> None:
        nonlocal payments, done
        payments += result.payments
        done += 1
        mark = "ok" if result.ok else f"VIOLATED {result.violation.invariant}"
        sys.stderr.write(
            f"\r[{done}/{args.runs}, {jobs} job(s)] seed {result.seed}: {mark}; "
            f"{payments:,} payments so far".ljust(70)
        )
        sys.stderr.flush()

    outcome = fuzz_parallel(
        base,
        args.runs,
        args.seed_start,
        jobs=jobs,
        on_run=on_run,
        shrink_failure=not args.no_shrink,
    )
    sys.stderr.write("\n")
    if outcome.failure is None:
        last = args.seed_start + args.runs - 1
        print(
            f"fuzz: {outcome.runs} runs (seeds {args.seed_start}..{last}),"
            f" {payments:,} payments, no violation, {outcome.wall_s:.0f} s wall, {jobs} job(s)"
        )
        return EXIT_OK
    failure = outcome.failure
    print(report(failure))
    if outcome.shrunk is not None:
        path = Path(args.out) / f"fuzz_seed_{failure.seed}.toml"
        path.write_text(outcome.shrunk.to_toml())
        print(f"shrunk     saved to {path}")
        print(f"replay     payengine scenario run {path} --seed {failure.seed}")
    return EXIT_VIOLATED
