"""The documentation is whole: a docs page per registered experiment, and every image or file
link of the README and the docs pages points to a file in the repository."""

from __future__ import annotations

import re
from pathlib import Path

from icgd.experiments.api import EXPERIMENTS

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)\)")  # [text](target) and ![alt](target)


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_experiment_has_a_docs_page():
    builtins = [n for n in EXPERIMENTS.names() if EXPERIMENTS.origin(n) == "icgd"]
    missing = [n for n in builtins if not (REPO / "docs" / f"{n}.md").is_file()]
    assert not missing


def test_every_local_link_resolves():
    broken = []
    for page in pages():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} → {target}")
    assert not broken
    assert any("docs/figures/" in t for t in LINK.findall((REPO / "README.md").read_text()))
