"""Typed, closed, frozen configs (pydantic v2) with dotted overrides and YAML IO.

Every experiment's config derives from `Config`. Unknown keys are rejected (`extra="forbid"`),
instances are immutable, and every validation failure becomes an `InputError` that names the
dotted field and what is allowed.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from icgd.core.errors import InputError

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    """Base of every config: closed (`extra="forbid"`), frozen, validated at construction."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_as_number(cls, data: Any) -> Any:
        """Reject `true`/`false` given for a number (pydantic would read them as 1/0)."""
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                value = data.get(name)
                if isinstance(value, bool) and _number_only(info.annotation):
                    raise ValueError(f"{name}: expected a number, got a boolean ({value})")
        return data


def _number_only(annotation: Any) -> bool:
    """Whether `annotation` is int or float (maybe constrained or optional), not admitting bool."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _number_only(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_number_only(a) for a in args)
    return annotation in (int, float)


def _allowed_fields(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the (nested) model at `loc`, to tell the user what is allowed."""
    model: Any = cls
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return sorted(fields) if fields else None
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
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
    head = message.split(": ", 1)[0] if ": " in message else ""
    if head.split(".")[0] in (_allowed_fields(cls, loc) or ()):
        # A model-level validator (of the top model or a nested one) names its field as
        # "field: message", since pydantic locates its error at the model, not the field.
        message = message.split(": ", 1)[1]
        field = ".".join([*(str(p) for p in loc), head])
        field = f"{prefix}.{field}" if prefix else field
    if err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], dict):
        message = f"{message} (got {err['input']!r})"
    return InputError(field, message)


def validate_config(cls: type[C], data: Any, prefix: str = "") -> C:
    """`cls.model_validate(data)` with errors turned into `InputError`."""
    if not isinstance(data, dict):
        raise InputError(
            prefix or "config", f"expected a mapping of keys to values, got {type(data).__name__}"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise input_error_from(exc, cls, prefix) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value``; the value is YAML (`3`, `1e-3`, `[1, 2]`, `true`, `null`)."""
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
                raise InputError(
                    ".".join(path[: i + 1]), f"unknown key; allowed keys: {', '.join(allowed)}"
                )
            if node[part] is None:
                node[part] = {}
            node = node[part]
        if not isinstance(node, dict):
            raise InputError(
                ".".join(path), "cannot set a sub-key of a value that is not a mapping"
            )
        node[path[-1]] = value
    return validate_config(type(config), data)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing or malformed file is an `InputError` naming the path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(str(path), "not a text file (not valid UTF-8)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(str(path), f"not valid YAML{where}") from None


def _merged(base: Any, update: Any) -> Any:
    """`update` laid over `base`: mappings are merged key by key, anything else is replaced."""
    if not (isinstance(base, dict) and isinstance(update, dict)):
        return update
    return {**base, **{k: _merged(base.get(k), v) for k, v in update.items()}}


def load_config(cls: type[C], path: str | Path) -> C:
    """Load and validate a YAML config file of type `cls` (an empty file gives the defaults).

    The file is laid over the defaults key by key, as `--set` overrides are: a file holding only
    `train: {steps: 500}` keeps the experiment's default optimizer, schedule and batch size.
    """
    data = load_yaml(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputError(
            str(path), f"expected a mapping of config keys to values, got a {type(data).__name__}"
        )
    try:
        defaults = cls().model_dump(mode="python")
    except ValidationError:  # a config class with required fields has no defaults to merge onto
        defaults = {}
    return validate_config(cls, _merged(defaults, data))


def config_to_yaml(config: Config) -> str:
    """The fully resolved config as YAML (round-trips through `load_config`)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
