"""Checks that hold for every test: each figure a test saves has labelled axes."""

from __future__ import annotations

import pytest


def unlabelled_axes(fig) -> list[str]:
    """Titles of the plot panels of `fig` (not heat maps, colour bars or hidden axes) that lack an
    x or a y label."""
    missing = []
    for ax in fig.axes:
        if not ax.axison or ax.images or ax.get_label() == "<colorbar>":
            continue
        if not (ax.lines or ax.collections or ax.patches):
            continue  # an empty panel (nothing to read)
        if not ax.get_xlabel().strip() or not ax.get_ylabel().strip():
            missing.append(ax.get_title() or "(untitled panel)")
    return missing


@pytest.fixture(autouse=True)
def figures_have_labelled_axes(monkeypatch):
    """Every figure saved during a test must label both axes of each plot panel (the reports and
    docs show them without the code that drew them)."""
    import matplotlib.figure

    found: list[str] = []
    savefig = matplotlib.figure.Figure.savefig

    def checked(self, *args, **kwargs):
        found.extend(unlabelled_axes(self))
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", checked)
    yield
    assert not found, f"figure panels without axis labels: {sorted(set(found))}"
