"""`Registry[T]`: built-ins and entry-point plugins, unique names, one-line errors for unknown
names and broken plugins; the experiment registry holds every built-in package."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from icgd.core import registry as registry_module
from icgd.core.errors import InputError
from icgd.core.registry import Registry


def fake_entry_points(points):
    """A stand-in for `importlib.metadata.entry_points` returning `points` for any group."""
    return lambda group: [p for p in points if p.group == group]


def point(name, obj=None, error=None, group="icgd.things"):
    def load():
        if error is not None:
            raise error
        return obj

    return SimpleNamespace(
        name=name,
        value=f"plugin_pkg:{name}",
        group=group,
        load=load,
        dist=SimpleNamespace(name="plugin-pkg"),
    )


def test_builtins_and_plugins_are_registered_once_on_first_lookup(monkeypatch):
    calls = []

    def builtins():
        calls.append(1)
        return [("alpha", "A")]

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points([point("beta", "B")]))
    things = Registry("thing", "icgd.things", builtins=builtins)
    assert calls == []  # nothing is loaded before the first lookup
    assert things.names() == ["alpha", "beta"] and things.get("beta") == "B"
    assert things.origin("alpha") == "icgd" and things.origin("beta") == "plugin-pkg"
    things.names()
    assert calls == [1]


def test_decorator_registration_and_prepare_hook():
    things = Registry("thing", "icgd.none", prepare=lambda name, obj: (name, obj))

    @things.register("toy")
    class Toy:
        pass

    assert things.get("toy") == ("toy", Toy)


def test_names_are_unique_across_builtins_and_plugins(monkeypatch):
    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points([point("alpha", 1)]))
    things = Registry("thing", "icgd.things", builtins=lambda: [("alpha", 0)])
    with pytest.raises(InputError, match="registered twice .by icgd and by plugin-pkg"):
        things.names()


def test_unknown_name_lists_allowed():
    things = Registry("thing", "icgd.none", builtins=lambda: [("zeta", 1), ("alpha", 2)])
    with pytest.raises(InputError) as info:
        things.get("alhpa")
    assert info.value.field == "thing"
    assert "'alhpa'" in info.value.message and info.value.message.endswith("allowed: alpha, zeta")


def test_a_broken_plugin_is_one_line_naming_it(monkeypatch):
    broken = point("gamma", error=ImportError("No module named 'numpyy'"))
    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points([broken]))
    things = Registry("thing", "icgd.things")
    with pytest.raises(InputError) as info:
        things.names()
    assert info.value.field == "icgd.things"
    assert "gamma = plugin_pkg:gamma (plugin-pkg) failed to load" in info.value.message
    assert "numpyy" in info.value.message and "\n" not in info.value.message


def test_real_experiment_registry_holds_every_builtin_package():
    """One experiment per sub-package of `icgd/experiments` whose `__init__` defines EXPERIMENT."""
    from pathlib import Path

    import icgd.experiments
    from icgd.experiments.api import EXPERIMENTS, Experiment

    root = Path(icgd.experiments.__file__).parent
    packages = [p for p in root.iterdir() if "EXPERIMENT =" in _text(p / "__init__.py")]
    builtins = [n for n in EXPERIMENTS.names() if EXPERIMENTS.origin(n) == "icgd"]
    assert len(builtins) == len(packages) >= 14
    assert {"looped-gd", "looped-landscape", "rank-one-heads", "identify"} <= set(builtins)
    for name in builtins:
        experiment = EXPERIMENTS.get(name)
        assert isinstance(experiment, Experiment) and experiment.name == name
        assert experiment.summary and experiment.paper and "smoke" in experiment.presets
    assert EXPERIMENTS.get("looped-gd").Config().seed == 0
    with pytest.raises(InputError, match="looped-gd"):
        EXPERIMENTS.get("looped_gd")


def _text(path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""
