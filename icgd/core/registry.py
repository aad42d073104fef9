"""`Registry[T]`: named objects of one kind — icgd's own and those of installed plugins.

icgd keeps four registries: experiments, tasks, models and baseline algorithms. Each is filled
from two places and from nowhere else:

1. *built-ins*: a `builtins()` callable given at construction imports icgd's own modules, which
   register themselves (`registry.register(name, obj)` or `@registry.register(name)`), or returns
   `(name, obj)` pairs found by scanning a package (experiments: one sub-package each);
2. *plugins*: every entry point of the registry's group (`icgd.experiments`, `icgd.tasks`,
   `icgd.models`, `icgd.algorithms`) in any installed distribution, e.g. in a plugin's
   `pyproject.toml`

       [project.entry-points."icgd.experiments"]
       toy-mean = "icgd_toy.experiment:ToyMean"

   The entry point's name is the registered name; its object is registered as it is, or, when a
   `prepare` hook is given (experiments: instantiate a class and check it against the protocol),
   as `prepare(name, obj)` returns it.

Loading happens once, on first lookup, so `import icgd` stays light. A name registered twice, or an
entry point that fails to import, is an `InputError` naming the registry and the entry point: a
broken plugin is reported on one line, never as a traceback and never silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from icgd.core.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind (module docstring).

    Args:
        kind: what is registered, in messages ("experiment", "task", ...).
        group: the entry-point group of plugins.
        builtins: imports icgd's own registrants; may return `(name, obj)` pairs to register.
        prepare: `(name, obj) -> T`, applied to every registrant (e.g. instantiate, validate);
            raises `InputError` for an object that does not fit.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        builtins: Callable[[], Iterable[tuple[str, Any]] | None] | None = None,
        prepare: Callable[[str, Any], T] | None = None,
    ) -> None:
        self.kind, self.group = kind, group
        self._builtins, self._prepare = builtins, prepare
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}  # name -> "icgd" or the plugin's distribution
        self._loaded = False
        self._loading = False

    def register(self, name: str, obj: Any = None, *, origin: str = "icgd") -> Any:
        """Register `obj` as `name`; without `obj`, a decorator that does so and returns it."""
        if obj is None:

            def deco(target: Any) -> Any:
                self.register(name, target, origin=origin)
                return target

            return deco
        if name in self._items:
            raise InputError(
                self.group,
                f"{self.kind} {name!r} is registered twice "
                f"(by {self._origin[name]} and by {origin})",
            )
        self._items[name] = self._prepare(name, obj) if self._prepare else obj
        self._origin[name] = origin
        return obj

    def load(self) -> None:
        """Register the built-ins, then every plugin of the entry-point group (once)."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            if self._builtins is not None:
                for name, obj in self._builtins() or ():
                    self.register(name, obj)
            for point in entry_points(group=self.group):
                origin = point.dist.name if point.dist is not None else point.value
                try:
                    obj = point.load()
                except Exception as exc:  # a plugin's own bug: report it on one line
                    raise InputError(
                        self.group,
                        f"plugin {point.name} = {point.value} ({origin}) failed to load: "
                        f"{type(exc).__name__}: {exc}",
                    ) from None
                self.register(point.name, obj, origin=origin)
            self._loaded = True
        finally:
            self._loading = False

    def get(self, name: str) -> T:
        """The object registered as `name`; an unknown name is an `InputError` listing them."""
        self.load()
        if name not in self._items:
            raise InputError(
                self.kind, f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        self.load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self.load()
        return sorted(self._items.items())

    def origin(self, name: str) -> str:
        """Who registered `name`: "icgd" or the plugin distribution's name."""
        self.get(name)
        return self._origin[name]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items
