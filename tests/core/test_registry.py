"""The experiment registry: lookup by name, unique names, and an InputError listing the names."""

from __future__ import annotations

import pytest

from icgd.core import registry
from icgd.core.errors import InputError
from icgd.experiments import load_all


@pytest.fixture
def scratch_registry(monkeypatch):
    """An empty registry for the duration of one test (the real one is left untouched)."""
    monkeypatch.setattr(registry, "_EXPERIMENTS", {})
    return registry


def test_register_and_get(scratch_registry):
    @scratch_registry.register("toy")
    class Toy:
        pass

    assert scratch_registry.get("toy") is Toy
    assert Toy.name == "toy"
    assert scratch_registry.names() == ["toy"]


def test_names_are_unique(scratch_registry):
    scratch_registry.register("toy")(type("A", (), {}))
    with pytest.raises(ValueError, match="registered twice"):
        scratch_registry.register("toy")(type("B", (), {}))


def test_unknown_name_lists_allowed(scratch_registry):
    for name in ("zeta", "alpha"):
        scratch_registry.register(name)(type(name, (), {}))
    with pytest.raises(InputError) as info:
        scratch_registry.get("alhpa")
    assert info.value.field == "experiment"
    assert "'alhpa'" in info.value.message
    assert info.value.message.endswith("allowed: alpha, zeta")


def test_real_registry_has_looped_gd():
    load_all()
    assert "looped-gd" in registry.names()
    experiment = registry.get("looped-gd")
    assert experiment.name == "looped-gd" and experiment.summary
    assert experiment.Config().seed == 0
    with pytest.raises(InputError, match="looped-gd"):
        registry.get("looped_gd")
