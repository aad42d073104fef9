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
