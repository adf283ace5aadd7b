"""A cosmic-ray session over `TARGETS`, killed by `mutation.check`, on scratch copies of the tree.

cosmic-ray plants each mutant in the file on disk and puts it back afterwards, so it never runs
in the working tree: `prepare` copies the packages the check imports into `WORK_DIR/tree-<n>`,
one copy per worker. With one job the tool's local distributor runs the mutants in tree-0;
with more, one `cosmic-ray http-worker` per copy and the tool's http distributor spread them.

Steps: copy, `cosmic-ray init` (every mutant of every target), mark the noise skipped
(`targets.skip_reason`), keep a deterministic sample when asked (`SAMPLE_SEED`), run the check
once on the unmutated copy (a check that fails there would kill every mutant), `cosmic-ray exec`.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mutation.check import EXIT_HELD
from mutation.targets import TARGETS, Target, skip_reason

#: Where the copies, the config and the session database live (git-ignored).
WORK_DIR = ".mutation"
#: What the check imports: copied into each worker's tree.
TREE_PACKAGES = ("engine", "actors", "simulator", "scenarios", "mutation")
#: A mutant whose check runs longer than this is killed as a timeout. The check takes about
#: 10 s when every run holds; the margin covers a busy machine.
MUTANT_TIMEOUT_S = 90.0
#: The seed of `--sample`'s choice, so a sample of N is the same N mutants every time.
SAMPLE_SEED = 10
#: How long a started http-worker may take to listen.
WORKER_START_TIMEOUT_S = 30.0


def prepare(root: Path, work: Path, jobs: int) -> list[Path]:
    """Fresh copies of the tree for `jobs` workers; returns their directories."""
    if work.exists():
        shutil.rmtree(work)
    trees = []
    for n in range(jobs):
        tree = work / f"tree-{n}"
        for package in TREE_PACKAGES:
            shutil.copytree(
                root / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
            )
        trees.append(tree)
    return trees


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(work: Path, ports: list[int], targets: tuple[Target, ...]) -> Path:
    """The cosmic-ray config: targets, the check as the test command, timeout, distributor."""
    modules = ", ".join(f'"{t.path}"' for t in targets)
    if ports:
        urls = ", ".join(f'"http://127.0.0.1:{p}"' for p in ports)
        distributor = f'name = "http"\n\n[cosmic-ray.distributor.http]\nworker-urls = [{urls}]\n'
    else:
        distributor = 'name = "local"\n'
    config = work / "cosmic-ray.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = [{modules}]\n"
        f"timeout = {MUTANT_TIMEOUT_S}\n"
        "excluded-modules = []\n"
        f'test-command = "{sys.executable} -m mutation.check"\n\n'
        f"[cosmic-ray.distributor]\n{distributor}",
        encoding="utf-8",
    )
    return config


def _cosmic_ray(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "cosmic_ray.cli", *args], cwd=cwd, check=True)


def select(db_path: Path, tree: Path, sample: int | None) -> tuple[int, dict[str, int]]:
    """Skip the noise and, with `sample`, all but `sample` mutants; returns (kept, skipped)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    by_path = {t.path: t for t in TARGETS}
    skipped: dict[str, int] = {}
    with use_db(str(db_path), mode=WorkDB.Mode.open) as db:
        kept = []
        for item in db.pending_work_items:
            (spec,) = item.mutations
            target = by_path[str(spec.module_path)]
            reason = skip_reason(tree, target, spec.operator_name, spec.start_pos, spec.end_pos)
            if reason is None:
                kept.append(item)
                continue
            skipped[reason] = skipped.get(reason, 0) + 1
            db.set_result(
                item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=reason)
            )
        kept.sort(
            key=lambda i: (
                str(i.mutations[0].module_path),
                i.mutations[0].operator_name,
                i.mutations[0].occurrence,
            )
        )
        if sample is not None and sample < len(kept):
            # A seeded shuffle, then the first `sample`: a smaller sample is a prefix of a
            # larger one, so SAMPLE=150 runs the first 150 mutants of SAMPLE=250.
            random.Random(SAMPLE_SEED).shuffle(kept)
            chosen = {i.job_id for i in kept[:sample]}
            left_out = [i.job_id for i in kept if i.job_id not in chosen]
            db.set_multiple_results(
                left_out,
                WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not in the sample"),
            )
            skipped["not in the sample"] = len(left_out)
            kept = kept[:sample]
    return len(kept), skipped


def baseline(tree: Path) -> None:
    """The check must pass on the unmutated tree, or every mutant would look killed."""
    done = subprocess.run(
        [sys.executable, "-m", "mutation.check"], cwd=tree, capture_output=True, text=True
    )
    if done.returncode != EXIT_HELD:
        raise SystemExit(f"the kill check fails on the unmutated tree:\n{done.stdout}{done.stderr}")


@contextmanager
def http_workers(trees: list[Path], ports: list[int]) -> Iterator[None]:
    """One `cosmic-ray http-worker` per tree copy, stopped (by their own pids) on exit."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cosmic_ray.cli", "http-worker", "--port", str(port)],
            cwd=tree,
        )
        for tree, port in zip(trees, ports, strict=True)
    ]
    try:
        for port in ports:
            deadline = time.monotonic() + WORKER_START_TIMEOUT_S
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"http-worker on port {port} did not start") from None
                    time.sleep(0.2)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def run_session(
    root: Path,
    *,
    jobs: int,
    sample: int | None,
    work: Path | None = None,
    targets: tuple[Target, ...] = TARGETS,
) -> Path:
    """Run the session in `work`; returns the session database for `report.read_session`."""
    work = root / WORK_DIR if work is None else work
    trees = prepare(root, work, jobs)
    ports = [_free_port() for _ in trees] if jobs > 1 else []
    config = write_config(work, ports, targets)
    db_path = work / "session.sqlite"
    _cosmic_ray("init", str(config), str(db_path), cwd=trees[0])
    kept, skipped = select(db_path, trees[0], sample)
    noise = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    print(f"mutation: {kept} mutants to run (skipped: {noise or 'none'})", flush=True)
    for tree in trees:  # also compiles each copy's bytecode before mutants run
        baseline(tree)
    if ports:
        with http_workers(trees, ports):
            _cosmic_ray("exec", str(config), str(db_path), cwd=trees[0])
    else:
        _cosmic_ray("exec", str(config), str(db_path), cwd=trees[0])
    return db_path
