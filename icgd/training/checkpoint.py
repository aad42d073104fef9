"""Checkpoints of a training run: weights in safetensors, the rest of the training state in torch.

A run folder holds

- `checkpoint.safetensors`: the model's `state_dict`, with metadata `step`, `model_class`
  (`module:qualname`) and, when the model has a pydantic `config`, `model_config` (the
  architecture as JSON), `model_config_class` and `model_init` (JSON of the model's `init_args`,
  constructor arguments besides the config, e.g. a stack's `n_layers`), so a reader can rebuild
  the model before loading its weights (`build_from_checkpoint`), as nanoGPT does;
- `training_state.pt`: optimizer and scheduler state, the training generator's state, what is needed
  to re-derive the batch in use, the step and the metric records so far. It holds only tensors,
  numbers, strings, lists and dicts, so it loads with `torch.load(weights_only=True)` (no pickle of
  arbitrary code);
- `metrics.jsonl`: one JSON record a line (written by the loop).

Both checkpoint files carry the step; `load_training_state` checks they agree, since they are
written one after the other and a hard kill between the two writes would otherwise go unnoticed.
Every failure to read (missing, truncated, garbage, wrong keys or shapes) is an `InputError` naming
the file, on one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from icgd.core.errors import InputError
from icgd.core.io import atomic_save_safetensors, atomic_torch_save

CHECKPOINT_FILE = "checkpoint.safetensors"
STATE_FILE = "training_state.pt"
METRICS_FILE = "metrics.jsonl"


def _checkpoint_path(path: str | Path) -> Path:
    """`path` itself if it names a file, else `path / checkpoint.safetensors`."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / CHECKPOINT_FILE


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _unreadable(exc: BaseException) -> str:
    return f"not a readable safetensors checkpoint ({_one_line(exc)})"


def _names(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def save_checkpoint(
    run_dir: str | Path, model: nn.Module, step: int, training_state: dict[str, Any] | None = None
) -> Path:
    """Write `model`'s weights (and, if given, `training_state`) into `run_dir`, atomically.

    The weights go first, then the training state; `training_state["step"]` is set to `step` so
    the two files can be checked against each other on load. Returns the checkpoint path.
    """
    run_dir = Path(run_dir)
    metadata = {"step": str(int(step)), "model_class": _qualified(type(model))}
    config = getattr(model, "config", None)
    if isinstance(config, BaseModel):
        metadata["model_config"] = config.model_dump_json()
        metadata["model_config_class"] = _qualified(type(config))
        metadata["model_init"] = json.dumps(getattr(model, "init_args", {}))
    # Clone so that tied (shared-storage) tensors are saved as separate tensors: safetensors
    # refuses shared storage, and load_state_dict restores the tie by copying into both names.
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path = atomic_save_safetensors(run_dir / CHECKPOINT_FILE, tensors, metadata=metadata)
    if training_state is not None:
        atomic_torch_save(run_dir / STATE_FILE, {**training_state, "step": int(step)})
    return path


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(path: str, file: Path) -> Any:
    """The object named `module:qualname`."""
    import importlib

    module, _, name = path.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise InputError(str(file), f"cannot import {path} (is its package installed?)") from None
    return obj


def build_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A new model rebuilt from a checkpoint's metadata (class, config, init arguments) with its
    weights loaded, in the checkpoint's floating-point type, on `device`, in eval mode."""
    file = _checkpoint_path(path)
    metadata = read_checkpoint_metadata(file)
    if "model_class" not in metadata or "model_config" not in metadata:
        raise InputError(
            str(file),
            "checkpoint does not record its model's class and config (written before "
            "icgd 0.2); build the model yourself and use load_checkpoint",
        )
    model_cls = _import(metadata["model_class"], file)
    config_cls = _import(metadata["model_config_class"], file)
    config = config_cls.model_validate_json(metadata["model_config"])
    init = json.loads(metadata.get("model_init", "{}"))
    model = model_cls(config, **init)
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        dtypes = {handle.get_slice(k).get_dtype() for k in handle.keys()}
    if "F64" in dtypes:
        model = model.double()
    load_checkpoint(file, model)
    return model.to(device).eval()


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata (`step`, `model_config`, ...) of a run folder's checkpoint."""
    from safetensors import safe_open

    file = _checkpoint_path(path)
    if not file.is_file():
        raise InputError(str(file), "checkpoint not found")
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise InputError(str(file), _unreadable(exc)) from None
    return metadata


def load_checkpoint(path: str | Path, model: nn.Module) -> int:
    """Load weights from `path` (a run folder or a `.safetensors` file) into `model`; return step.

    The keys and shapes must match `model.state_dict()` exactly; tensors are copied into the
    model's existing parameters, so they land on the model's device and dtype.
    """
    from safetensors.torch import load_file

    file = _checkpoint_path(path)
    metadata = read_checkpoint_metadata(file)
    try:
        tensors = load_file(str(file))
    except Exception as exc:
        raise InputError(str(file), _unreadable(exc)) from None
    try:
        step = int(metadata["step"])
    except (KeyError, ValueError):
        raise InputError(str(file), "checkpoint metadata has no integer 'step'") from None

    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_names(unexpected)}")
        raise InputError(str(file), f"checkpoint does not match the model: {'; '.join(parts)}")
    for key, value in expected.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise InputError(
                str(file),
                f"checkpoint does not match the model: {key} has shape "
                f"{tuple(tensors[key].shape)}, model expects {tuple(value.shape)}",
            )
    with torch.no_grad():
        model.load_state_dict(tensors, strict=True)
    return step


def load_training_state(run_dir: str | Path, expected_step: int | None = None) -> dict[str, Any]:
    """Read `training_state.pt` with `weights_only=True`; check its step equals `expected_step`."""
    file = Path(run_dir) / STATE_FILE
    if not file.is_file():
        raise InputError(str(file), "training state not found (cannot resume without it)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of a truncated or foreign file
        raise InputError(str(file), f"not a readable training state ({_one_line(exc)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise InputError(str(file), "not an icgd training state (no integer 'step')")
    if expected_step is not None and state["step"] != expected_step:
        raise InputError(
            str(file),
            f"training state is at step {state['step']} but {CHECKPOINT_FILE} is at step "
            f"{expected_step} (the run was killed between the two writes); restart the run",
        )
    return state


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `run_dir/metrics.jsonl` (an `InputError` names the file and line if bad)."""
    file = Path(run_dir) / METRICS_FILE
    try:
        lines = file.read_text().splitlines()
    except OSError as exc:
        raise InputError(str(file), f"cannot read file ({exc.strerror or exc})") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(f"{file}:{number}", "not a JSON record") from None
    return records
