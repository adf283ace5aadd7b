"""`python -m mutation`: run a session (`mutation.session`) and print its score.

`--sample N` runs a deterministic sample, `--jobs J` that many workers (default: the cores),
`--paths` a subset of the targets, `--work-dir` elsewhere than `.mutation/`.

Bad arguments print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mutation.report import read_session, render
from mutation.session import WORK_DIR, run_session
from mutation.targets import TARGETS, Target


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"mutation: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _target_paths(text: str) -> tuple[Target, ...]:
    by_path = {t.path: t for t in TARGETS}
    unknown = [p for p in text.split(",") if p not in by_path]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"not a target: {', '.join(unknown)} (targets: {', '.join(by_path)})"
        )
    return tuple(by_path[p] for p in text.split(","))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m mutation", description=__doc__)
    parser.add_argument("--sample", type=_positive, help="run a deterministic sample of N")
    parser.add_argument(
        "--jobs", type=_positive, default=os.cpu_count() or 1, help="workers (default: cores)"
    )
    parser.add_argument(
        "--paths",
        type=_target_paths,
        default=TARGETS,
        help="comma-separated target files to mutate (default: every target)",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path(WORK_DIR), help=f"session directory ({WORK_DIR})"
    )
    parser.add_argument(
        "--report-only", action="store_true", help=f"print the score of the last {WORK_DIR} run"
    )
    args = parser.parse_args(argv)
    root = Path.cwd()
    work = root / args.work_dir
    db_path = work / "session.sqlite"
    if args.report_only:
        if not db_path.is_file():
            print(f"mutation: no session at {db_path}; run `make mutation` first", file=sys.stderr)
            return 2
    else:
        db_path = run_session(
            root, jobs=args.jobs, sample=args.sample, work=work, targets=args.paths
        )
    print(render(read_session(db_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
