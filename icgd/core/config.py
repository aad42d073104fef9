"""Typed, closed, frozen configs (pydantic v2) with dotted overrides and YAML IO.

Every experiment's config derives from `Config`. Unknown keys are rejected (`extra="forbid"`),
instances are immutable, and every validation failure becomes an `InputError` that names the
dotted field and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from icgd.core.errors import InputError

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    """Base of every config: closed (`extra="forbid"`), frozen, validated at construction."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _allowed_fields(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the (nested) model at `loc`, to tell the user what is allowed."""
    model: Any = cls
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return sorted(fields) if fields else None
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return sorted(model.model_fields) if model is not None else None


def input_error_from(exc: ValidationError, cls: type[BaseModel], prefix: str = "") -> InputError:
    """Turn pydantic's first validation error into a one-line `InputError`."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # Drop discriminator tags pydantic puts in the location of a tagged union member.
    loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
    field = ".".join(str(p) for p in loc) or "config"
    if prefix:
        field = f"{prefix}.{field}" if loc else prefix
    if err["type"] == "extra_forbidden":
        allowed = _allowed_fields(cls, loc[:-1])
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return InputError(field, f"unknown key{hint}")
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if not loc and ": " in message and message.split(": ", 1)[0].replace(".", "").isidentifier():
        # A model-level validator names its field as "field: message" (it has no location).
        sub, message = message.split(": ", 1)
        field = f"{prefix}.{sub}" if prefix else sub
    if err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], dict):
        message = f"{message} (got {err['input']!r})"
    return InputError(field, message)


def validate_config(cls: type[C], data: Any, prefix: str = "") -> C:
    """`cls.model_validate(data)` with errors turned into `InputError`."""
    if not isinstance(data, dict):
        raise InputError(prefix or "config", f"expected a mapping of keys to values, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise input_error_from(exc, cls, prefix) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value``; the value is read as YAML (so `3`, `1e-3`, `[1, 2]`, `true` work)."""
    if "=" not in text:
        raise InputError("--set", f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in path):
        raise InputError("--set", f"expected key=value with a dotted key, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(config: C, overrides: list[str] | tuple[str, ...]) -> C:
    """A new config with dotted ``key=value`` overrides applied, then validated again.

    >>> cfg = apply_overrides(cfg, ["train.lr=0.01", "d=10"])
    """
    data = config.model_dump(mode="python")
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            if not isinstance(node, dict) or part not in node:
                allowed = sorted(node) if isinstance(node, dict) else []
                raise InputError(".".join(path[: i + 1]), f"unknown key; allowed keys: {', '.join(allowed)}")
            if node[part] is None:
                node[part] = {}
            node = node[part]
        if not isinstance(node, dict):
            raise InputError(".".join(path), "cannot set a sub-key of a value that is not a mapping")
        node[path[-1]] = value
    return validate_config(type(config), data)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing or malformed file is an `InputError` naming the path."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(str(path), f"cannot read file ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(str(path), f"not valid YAML{where}") from None


def load_config(cls: type[C], path: str | Path) -> C:
    """Load and validate a YAML config file of type `cls` (an empty file gives the defaults)."""
    data = load_yaml(path)
    return validate_config(cls, {} if data is None else data, prefix="")


def config_to_yaml(config: Config) -> str:
    """The fully resolved config as YAML (round-trips through `load_config`)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
