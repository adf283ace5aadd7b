"""engine/ and actors/ never reach for the real clock, randomness or uuid4 directly.

They must use the injected Clock, Ids and Rng ports, so a seeded simulation replays exactly.
The check walks the syntax tree (not text), so aliases such as `from time import time` or
`import random as r` are caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_CALLS = {
    ("time", "time"),
    ("time", "time_ns"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("uuid", "uuid4"),
    ("uuid", "uuid1"),
    ("os", "urandom"),
}
FORBIDDEN_MODULES = {"random", "secrets"}


def violations(source: str) -> list[str]:
    tree = ast.parse(source)
    found: list[str] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                base = alias.name.split(".")[0]
                if base in FORBIDDEN_MODULES:
                    found.append(f"line {node.lineno}: import {alias.name}")
                aliases[alias.asname or base] = base
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module.split(".")[0]
            for alias in node.names:
                if base in FORBIDDEN_MODULES or (
                    (node.module.split(".")[-1], alias.name) in FORBIDDEN_CALLS
                ):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = (
                owner.id
                if isinstance(owner, ast.Name)
                else (owner.attr if isinstance(owner, ast.Attribute) else None)
            )
            if name is None:
                continue
            resolved = aliases.get(name, name)
            if (resolved, node.func.attr) in FORBIDDEN_CALLS:
                found.append(f"line {node.lineno}: {name}.{node.func.attr}()")
    return found


def _sources() -> list[Path]:
    return sorted(p for d in ("engine", "actors") for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_uses_injected_clock_ids_and_rng(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import time\ntime.time()",
        "from time import time\ntime()",
        "import datetime\ndatetime.datetime.now()",
        "from datetime import datetime\ndatetime.now()",
        "from datetime import datetime as dt\ndt.utcnow()",
        "import random\nrandom.random()",
        "import random as r",
        "from random import choice",
        "import uuid\nuuid.uuid4()",
        "from uuid import uuid4",
    ],
)
def test_checker_catches_each_forbidden_form(snippet: str) -> None:
    assert violations(snippet)


def test_checker_allows_injected_ports() -> None:
    assert violations("def f(clock, rng):\n    return clock.now_ms(), rng.random()") == []
