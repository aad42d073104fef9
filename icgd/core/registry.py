"""A registry of experiments by name, filled by `@register` at import of `icgd.experiments`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from icgd.core.errors import InputError

T = TypeVar("T")
_EXPERIMENTS: dict[str, object] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator: register an experiment under `name` (names are unique)."""

    def deco(obj: T) -> T:
        if name in _EXPERIMENTS:
            raise ValueError(f"experiment {name!r} registered twice")
        _EXPERIMENTS[name] = obj
        obj.name = name  # type: ignore[attr-defined]
        return obj

    return deco


def get(name: str) -> object:
    """The experiment registered as `name`; an unknown name is an `InputError` listing the names."""
    if name not in _EXPERIMENTS:
        raise InputError(
            "experiment", f"unknown experiment {name!r}; allowed: {', '.join(sorted(_EXPERIMENTS))}"
        )
    return _EXPERIMENTS[name]


def names() -> list[str]:
    return sorted(_EXPERIMENTS)
