"""The layout's import rule for the fake PSP (docs/architecture.md): `web/` is payengine's API
alone and imports neither the simulator nor `psp/`; `psp/` imports nothing from `web/`. The
check walks each module's syntax tree, so imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from psp.app import DEFAULT_API_KEY
from web.http_gateway import FAKE_PSP_API_KEY

ROOT = Path(__file__).resolve().parents[2]


def imported(path: Path) -> set[str]:
    """The top-level packages `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("web", {"simulator", "psp", "scenarios"}), ("psp", {"web", "payengine"})],
)
def test_imports_point_the_way_the_layout_says(package: str, forbidden: set[str]) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported(path) & forbidden)
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported(path) & forbidden
    }
    assert wrong == {}


def test_the_adapter_and_the_in_process_fake_psp_agree_on_its_api_key() -> None:
    assert FAKE_PSP_API_KEY == DEFAULT_API_KEY
