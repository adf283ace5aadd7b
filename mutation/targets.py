"""What `make mutation` mutates, and which mutants are noise the score should not count.

Targets are actors/ and the parts of engine/ that move money *and that the engine runs*: the
simulator can only judge code the engine calls, so posting rules with no caller yet (refunds,
payouts, chargebacks, settlement: docs/scenarios.md "Gaps") are left out by name, not counted
as survivors. `EXCLUDED` says why each other file is out.

Noise, skipped before any mutant runs (`skip_reason`): mutants inside type annotations (never
evaluated: every module has `from __future__ import annotations`), docstrings, logging calls,
an assert's message, `if TYPE_CHECKING:` blocks, code that runs only when a test-only seam is on
(`"seam" in self.ctx.faults and ...`: the seam's own test stays a target, since flipping it
plants the bug), and cosmic-ray's binary-operator mutants of a `*` or `**` that is not an
operator (`def f(a, *, b)`, `f(**kw)`): they do not compile, so they say nothing.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import attrs

Position = tuple[int, int]  # (line from 1, column from 0), as cosmic-ray (parso) reports it
Span = tuple[Position, Position]


@attrs.frozen
class Target:
    path: str
    #: Top-level functions and classes mutated; empty means the whole file.
    only: tuple[str, ...] = ()


TARGETS: tuple[Target, ...] = (
    Target("actors/checkout.py"),
    Target("actors/order.py"),
    Target("actors/service.py"),
    Target("actors/engine.py"),
    # Backoff and delayed retries; the Doorbell only wakes outbox consumers (plumbing).
    Target("actors/context.py", only=("Context",)),
    Target(
        "engine/ledger.py",
        only=(
            "merchant_payable",
            "account_type",
            "wallet_of",
            "_check_account",
            "_check_entry_amount",
            "_check_currency",
            "Entry",
            "imbalance",
            "_check_entries",
            "Transaction",
            "capture_entries",
        ),
    ),
    Target(
        "engine/money.py",
        only=(
            "currency_exponent",
            "_check_minor",
            "_validate_currency",
            "_validate_minor",
            "Money",
            "round_half_even",
            "split_bps",
        ),
    ),
    Target("engine/states.py"),
    Target("engine/limits.py", only=("backoff_delay_s",)),
)

#: Files of actors/ and money-related engine/ files left out, and why.
EXCLUDED: dict[str, str] = {
    "actors/clock.py": "the Clock port on trio's clock: time, not money",
    "actors/messages.py": "message records only: no logic",
    "actors/runtime.py": "actor plumbing (mailboxes, supervision, passivation): its mutants "
    "show as crashes or timeouts, which say nothing about the oracle",
    "actors/timers.py": "the timer heap: plumbing, as runtime.py",
    "actors/outbox.py": "merchant notifications and analytics: no money moves",
    "engine/store/*": "the memory store is the simulator's double of PostgreSQL; the postgres "
    "store moves money in production but the simulator never runs it "
    "(tests/store's conformance suite does)",
    "engine/records.py, engine/gateway.py": "records and wire shapes: validators only",
}

#: Logging method names: a mutant in a log call's arguments changes only what is logged.
_LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})


def _span(node: ast.AST) -> Span:
    end_line = node.end_lineno if node.end_lineno is not None else node.lineno  # type: ignore[attr-defined]
    end_col = node.end_col_offset if node.end_col_offset is not None else node.col_offset  # type: ignore[attr-defined]
    return (node.lineno, node.col_offset), (end_line, end_col)  # type: ignore[attr-defined]


@attrs.frozen
class FileIndex:
    """The spans of one file that are noise, and the spans of its targeted definitions."""

    noise: tuple[tuple[str, Span], ...]
    targeted: tuple[Span, ...] | None  # None: the whole file
    #: The spans of the binary operations of each operator (cosmic-ray's names: Add, Mul, ...).
    binops: dict[str, tuple[Span, ...]]


#: ast's operator class names where cosmic-ray's differ.
_CR_OPERATOR = {"Mult": "Mul", "MatMult": "MatMul"}


def _binop_spans(tree: ast.Module) -> dict[str, tuple[Span, ...]]:
    spans: dict[str, list[Span]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp | ast.AugAssign):
            name = type(node.op).__name__
            spans.setdefault(_CR_OPERATOR.get(name, name), []).append(_span(node))
    return {name: tuple(found) for name, found in spans.items()}


def _is_seam_test(node: ast.AST) -> bool:
    """`"seam" in <...>.faults`: true only when a test switched the seam on."""
    return (
        isinstance(node, ast.Compare)
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In)
        and isinstance(node.comparators[0], ast.Attribute)
        and node.comparators[0].attr == "faults"
    )


def _has_seam_test(node: ast.AST) -> bool:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return any(_is_seam_test(value) for value in node.values)
    return _is_seam_test(node)


def _seam_spans(node: ast.AST) -> list[Span]:
    """What runs, or matters, only when a seam is on."""
    if isinstance(node, ast.BoolOp) and _has_seam_test(node):
        return [_span(v) for v in node.values if not _is_seam_test(v)]
    if isinstance(node, ast.If) and _has_seam_test(node.test):
        return [_span(stmt) for stmt in node.body]
    if isinstance(node, ast.IfExp) and _has_seam_test(node.test):
        return [_span(node.body)]
    return []


def _noise_spans(tree: ast.Module) -> list[tuple[str, Span]]:
    found: list[tuple[str, Span]] = []
    for node in ast.walk(tree):
        found += [("test-only seam", span) for span in _seam_spans(node)]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "_planted_"
        ):  # a planted bug's own code, called only from inside a seam's test
            found.append(("test-only seam", _span(node)))
        if isinstance(node, ast.arg) and node.annotation is not None:
            found.append(("annotation", _span(node.annotation)))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(("annotation", _span(node.returns)))
        elif isinstance(node, ast.AnnAssign):
            found.append(("annotation", _span(node.annotation)))
        elif isinstance(node, ast.Assert) and node.msg is not None:
            found.append(("assert message", _span(node.msg)))
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found.append(("docstring", _span(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _LOG_METHODS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"log", "logger", "_log", "_logger", "logging"}
        ):
            found.append(("logging call", _span(node)))
        elif (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            found.append(("TYPE_CHECKING block", _span(node)))
    return found


@functools.cache
def index(root: Path, target: Target) -> FileIndex:
    tree = ast.parse((root / target.path).read_text(encoding="utf-8"))
    targeted: tuple[Span, ...] | None = None
    if target.only:
        # A definition's span starts at its first decorator (RemoveDecorator mutates that line).
        defs: dict[str, Span] = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                defs[node.name] = ((first, 0), _span(node)[1])
        missing = set(target.only) - defs.keys()
        assert not missing, f"{target.path} has no {sorted(missing)}: update mutation/targets.py"
        targeted = tuple(defs[name] for name in target.only)
    return FileIndex(tuple(_noise_spans(tree)), targeted, _binop_spans(tree))


def _within(inner: Span, outer: Span) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def skip_reason(
    root: Path, target: Target, operator: str, start: Position, end: Position
) -> str | None:
    """Why `operator`'s mutant at `start`-`end` of `target` is not counted, or None when it is."""
    idx = index(root, target)
    span = (start, end)
    if idx.targeted is not None and not any(_within(span, t) for t in idx.targeted):
        return "outside the targeted definitions"
    prefix = "core/ReplaceBinaryOperator_"
    if operator.startswith(prefix):
        replaced = operator.removeprefix(prefix).split("_")[0]
        if not any(_within(span, op) for op in idx.binops.get(replaced, ())):
            return "not an operator"
    for reason, noise in idx.noise:
        if _within(span, noise):
            return reason
    return None
