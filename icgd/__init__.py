"""icgd: transformers that run learning algorithms in their forward pass.

`import icgd` stays light: it imports no torch-heavy submodule and no matplotlib. The public
Python API is loaded on first use:

- `icgd.run(name, overrides=[...], preset=..., seeds=..., out=...)`: what `icgd run` does;
  returns the run folder as an `icgd.runs.Run` (config, metrics, claims, arrays, models);
- `icgd.sweep(name, grid=["key=v1,v2", ...], ...)`: what `icgd sweep` does;
- `icgd.load_run(folder)`: a saved run folder as a `Run`.
"""

from icgd.core.version import __version__

__all__ = ["__version__", "load_run", "run", "sweep"]


def __getattr__(name: str):
    if name in ("run", "sweep"):
        from icgd.runs import api

        return getattr(api, name)
    if name == "load_run":
        from icgd.runs.loaded import load_run

        return load_run
    raise AttributeError(f"module 'icgd' has no attribute {name!r}")
