"""The layering of DESIGN.md holds: `lint-imports` checks the contracts of pyproject.toml
(`[tool.importlinter]`): the layers from cli down to core, reporting never importing an
experiment's code, and no import circle between sibling modules or packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.fail("lint-imports not installed (pip install -e .[dev])")
        exe = Path(found)
    done = subprocess.run([str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def test_no_private_name_is_imported_across_modules():
    """`from icgd.x import _name` would tie a module to another's internals: what is shared is
    public (a name without a leading underscore)."""
    import ast

    found = []
    for path in sorted((REPO / "icgd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("icgd"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                private = [n for n in private if n not in ("__version__",)]
                if private:
                    found.append(f"{path.relative_to(REPO)}: {node.module} {private}")
    assert not found, found


def test_ruff_finds_nothing():
    """The linter's rules (pyproject.toml `[tool.ruff]`) hold on every tracked Python file; it
    catches what tests may not reach, e.g. a name used before assignment."""
    exe = Path(sys.executable).parent / "ruff"
    if not exe.exists():
        pytest.fail("ruff not installed (pip install -e .[dev])")
    paths = ["icgd", "tests", "benchmarks", "examples"]
    done = subprocess.run([str(exe), "check", *paths], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
