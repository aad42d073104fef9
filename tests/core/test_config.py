"""Typed configs: closed, frozen, dotted overrides, YAML IO; an `InputError` for every bad input.

The property-based tests feed random bad overrides to `LoopedGDConfig` (the richest config of the
package: nested training config, literals, a spectrum checked against `d`) and require an
`InputError` naming a field — never another exception, which the CLI would show as a traceback.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import PositiveFloat, PositiveInt, ValidationError

from icgd.core.config import (
    Config,
    apply_overrides,
    config_to_yaml,
    load_config,
    load_yaml,
    parse_override,
    validate_config,
)
from icgd.core.errors import InputError
from icgd.experiments.looped_gd import LoopedGDConfig

TOP_KEYS = sorted(LoopedGDConfig.model_fields)
TRAIN_KEYS = sorted(LoopedGDConfig.model_fields["train"].annotation.model_fields)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Inner(Config):
    lr: PositiveFloat = 0.01
    flag: bool = False


class Outer(Config):
    size: PositiveInt = 3
    scale: float | None = None
    inner: Inner = Inner()


def one_line(exc: InputError) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


# --- closed and frozen -------------------------------------------------------------------------


def test_config_is_frozen():
    cfg = LoopedGDConfig()
    with pytest.raises(ValidationError):
        cfg.d = 7  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.train.steps = 7  # type: ignore[misc]
    assert cfg.d == 5 and cfg.train.steps == LoopedGDConfig().train.steps


def test_config_is_closed():
    with pytest.raises(ValidationError, match="extra"):
        LoopedGDConfig(lopps=3)  # type: ignore[call-arg]
    with pytest.raises(InputError) as info:
        validate_config(LoopedGDConfig, {"train": {"stpes": 3}})
    assert info.value.field == "train.stpes"
    assert "allowed keys" in info.value.message and "steps" in info.value.message


# --- overrides ---------------------------------------------------------------------------------


def test_overrides_parse_yaml_values():
    cfg = apply_overrides(
        LoopedGDConfig(),
        [
            "train.optimizer.lr=0.03",
            "eigenvalues=[1,2,3,4,5]",
            "noise_std=1e-3",
            "train.clip_norm=null",
            "d=5",
            "train.schedule.kind=cosine",
            "dtype=float64",
        ],
    )
    assert cfg.train.optimizer.lr == 0.03
    assert cfg.eigenvalues == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert cfg.noise_std == 1e-3  # YAML 1.1 reads "1e-3" as a string; pydantic parses it
    assert cfg.train.clip_norm is None
    assert cfg.train.schedule.kind == "cosine"
    assert cfg.dtype == "float64"
    # the other nested values are kept, and the original is untouched (a new config is returned)
    assert cfg.train.steps == LoopedGDConfig().train.steps
    assert LoopedGDConfig().train.optimizer.lr != 0.03


def test_overrides_bools_and_later_wins():
    cfg = apply_overrides(Outer(), ["inner.flag=true", "size=4", "size=6", "scale=2.5"])
    assert cfg.inner.flag is True and cfg.size == 6 and cfg.scale == 2.5
    assert apply_overrides(cfg, ["inner.flag=false"]).inner.flag is False


def test_override_can_fill_a_none_subtree():
    class Holder(Config):
        inner: Inner | None = None

    assert apply_overrides(Holder(), ["inner.lr=0.5"]).inner == Inner(lr=0.5)


@pytest.mark.parametrize(
    ("override", "field", "allowed"),
    [
        ("lopps=3", "lopps", "loops"),
        ("train.stpes=3", "train.stpes", "steps"),
        ("train.optimizer.lrr=0.1", "train.optimizer.lrr", "lr"),
        ("trian.steps=3", "trian", "train"),
    ],
)
def test_unknown_key_names_dotted_field_and_lists_allowed(override, field, allowed):
    with pytest.raises(InputError) as info:
        apply_overrides(LoopedGDConfig(), [override])
    assert info.value.field == field
    assert "allowed keys" in info.value.message
    assert allowed in info.value.message.split("allowed keys:")[1].replace(",", " ").split()
    one_line(info.value)


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ("d=abc", "d", "integer"),
        ("d=1.5", "d", "integer"),
        ("d=true", "d", "number"),
        ("train.steps=false", "train.steps", "number"),
        ("d=0", "d", "greater than 0"),
        ("n=-3", "n", "greater than 0"),
        ("loops=-1", "loops", "greater than 0"),
        ("train.batch_size=0", "train.batch_size", "greater than 0"),
        ("train.optimizer.lr=-0.1", "train.optimizer.lr", "greater than 0"),
        ("noise_std=-1", "noise_std", "greater than or equal to 0"),
        ("covariance=banana", "covariance", "'identity', 'eigenvalues' or 'rotated'"),
        ("train.optimizer.kind=lbfgs", "train.optimizer.kind", "'adam'"),
        ("eigenvalues=[1,2]", "eigenvalues", "length d=5"),
        ("eigenvalues=[1,1,0,1,1]", "eigenvalues.2", "greater than 0"),
        ("eigenvalues=[1,1,-2,1,1]", "eigenvalues.2", "greater than 0"),
        ("eigenvalues=abc", "eigenvalues", "tuple"),
        ("train=3", "train", "dictionary"),
        ("test_batch_size=8", "test_batch_size", "greater than or equal to 16"),
    ],
)
def test_bad_value_names_field(override, field, words):
    with pytest.raises(InputError) as info:
        apply_overrides(LoopedGDConfig(), [override])
    assert info.value.field == field, str(info.value)
    assert words in info.value.message, str(info.value)
    one_line(info.value)


def test_empty_spectrum_is_rejected():
    with pytest.raises(InputError) as info:
        apply_overrides(LoopedGDConfig(), ["eigenvalues=[]"])
    assert info.value.field == "eigenvalues"


def test_seed_beyond_torch_range_is_rejected():
    with pytest.raises(InputError) as info:
        apply_overrides(LoopedGDConfig(), [f"seed={2**64}"])
    assert info.value.field == "seed"


def test_model_level_error_is_located_in_nested_config():
    # OptimizerConfig's own validator: momentum is for sgd only.
    with pytest.raises(InputError) as info:
        apply_overrides(LoopedGDConfig(), ["train.optimizer.momentum=0.5"])
    assert info.value.field.startswith("train.optimizer")
    assert "sgd" in info.value.message


@pytest.mark.parametrize(
    ("override", "field"),
    [("d", "--set"), ("=3", "--set"), ("train..steps=3", "--set"), ("d.x=3", "d.x")],
)
def test_malformed_override(override, field):
    with pytest.raises(InputError) as info:
        apply_overrides(LoopedGDConfig(), [override])
    assert info.value.field == field


def test_parse_override_reads_yaml():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("x=true") == (["x"], True)
    assert parse_override("x=a=b") == (["x"], "a=b")
    assert parse_override("x=[unclosed") == (["x"], "[unclosed")  # not YAML: kept as text


# --- YAML files --------------------------------------------------------------------------------


def test_yaml_round_trip(tmp_path: Path):
    cfg = apply_overrides(
        LoopedGDConfig(),
        ["d=3", "eigenvalues=[1, 0.5, 0.25]", "train.optimizer.lr=0.003", "noise_std=0.1"],
    )
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(LoopedGDConfig, path) == cfg
    assert load_config(LoopedGDConfig, path).model_dump() == cfg.model_dump()


def test_default_round_trip_and_empty_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(LoopedGDConfig()))
    assert load_config(LoopedGDConfig, path) == LoopedGDConfig()
    path.write_text("")
    assert load_config(LoopedGDConfig, path) == LoopedGDConfig()
    path.write_text("d: 3\ntrain:\n  steps: 7\n  optimizer: {lr: 0.5}\n")
    partial = load_config(LoopedGDConfig, path)
    assert partial.d == 3 and partial.train.steps == 7 and partial.train.optimizer.lr == 0.5
    # the file is laid over the experiment's defaults, like --set: the recipe is kept
    default = LoopedGDConfig().train
    assert (
        partial.train.schedule == default.schedule and partial.train.clip_norm == default.clip_norm
    )
    assert partial.train.optimizer.kind == default.optimizer.kind
    assert partial == apply_overrides(
        LoopedGDConfig(), ["d=3", "train.steps=7", "train.optimizer.lr=0.5"]
    )


def test_missing_file_names_path(tmp_path: Path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError) as info:
        load_config(LoopedGDConfig, path)
    assert info.value.field == str(path)
    one_line(info.value)


def test_malformed_yaml_names_path_and_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("d: 3\ntrain: [1, 2\n  steps: :\n")
    with pytest.raises(InputError) as info:
        load_yaml(path)
    assert info.value.field == str(path)
    assert "not valid YAML" in info.value.message
    one_line(info.value)


def test_binary_file_is_input_error(tmp_path: Path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(InputError) as info:
        load_config(LoopedGDConfig, path)
    assert info.value.field == str(path)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n"])
def test_yaml_top_level_not_mapping(tmp_path: Path, text: str):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(LoopedGDConfig, path)
    assert info.value.field == str(path)
    assert "mapping" in info.value.message


def test_yaml_unknown_nested_key(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  optimizer:\n    lrr: 0.1\n")
    with pytest.raises(InputError) as info:
        load_config(LoopedGDConfig, path)
    assert info.value.field == "train.optimizer.lrr"
    assert "lr" in info.value.message


# --- property-based: random bad input always gives an InputError naming a field ---------------

_IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
_NOT_A_NUMBER = st.text(alphabet="abcxyz_- ", min_size=1, max_size=8).filter(
    lambda s: (
        s.strip() and s.strip().lower() not in {"y", "n", "yes", "no", "on", "off", "null", "-"}
    )
)
_NON_POSITIVE_INT = st.integers(min_value=-(10**6), max_value=0)


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@st.composite
def bad_override(draw) -> tuple[str, str]:
    """(override text, the field the error must name) with exactly one bad entry."""
    kind = draw(
        st.sampled_from(
            [
                "unknown",
                "unknown_nested",
                "size",
                "size_type",
                "noise",
                "eig_len",
                "eig_sign",
                "literal",
                "float_for_int",
                "train_size",
            ]
        )
    )
    if kind == "unknown":
        key = draw(_IDENT.filter(lambda k: k not in TOP_KEYS))
        return f"{key}={draw(st.integers())}", key
    if kind == "unknown_nested":
        key = draw(_IDENT.filter(lambda k: k not in TRAIN_KEYS))
        return f"train.{key}=1", f"train.{key}"
    if kind == "size":
        key = draw(st.sampled_from(["d", "n", "loops", "n_heads"]))
        return f"{key}={draw(_NON_POSITIVE_INT)}", key
    if kind == "size_type":
        key = draw(st.sampled_from(["d", "n", "loops", "seed"]))
        value = draw(st.one_of(_NOT_A_NUMBER, st.booleans().map(str), st.just("[1, 2]")))
        return f"{key}={value}", key
    if kind == "float_for_int":
        key = draw(st.sampled_from(["d", "n", "loops"]))
        value = draw(st.floats(0.01, 100).filter(lambda x: not x.is_integer()))
        return f"{key}={value!r}", key
    if kind == "noise":
        value = draw(
            st.one_of(
                st.floats(max_value=-1e-12, allow_infinity=True, allow_nan=False),
                st.just(math.nan),
                st.just(math.inf),
                _NOT_A_NUMBER,
            )
        )
        text = value if isinstance(value, str) else _yaml(value)
        return f"noise_std={text}", "noise_std"
    if kind == "eig_len":
        length = draw(st.integers(0, 9).filter(lambda k: k != 5))
        values = draw(st.lists(st.floats(0.1, 10), min_size=length, max_size=length))
        return f"eigenvalues={_yaml(values)}", "eigenvalues"
    if kind == "eig_sign":
        values = draw(st.lists(st.floats(0.1, 10), min_size=5, max_size=5))
        i = draw(st.integers(0, 4))
        values[i] = draw(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False))
        return f"eigenvalues={_yaml(values)}", "eigenvalues"
    if kind == "literal":
        key = draw(
            st.sampled_from(["covariance", "weight_prior", "dtype", "device", "parametrisation"])
        )
        allowed = LoopedGDConfig.model_fields[key].annotation.__args__
        value = draw(_IDENT.filter(lambda v: v not in allowed))
        return f"{key}={value}", key
    key = draw(st.sampled_from(["steps", "batch_size", "eval_every", "checkpoint_every"]))
    return f"train.{key}={draw(_NON_POSITIVE_INT)}", f"train.{key}"


@PROPERTY
@given(bad_override())
def test_random_bad_override_is_input_error(case):
    override, field = case
    with pytest.raises(InputError) as info:
        apply_overrides(LoopedGDConfig(), [override])
    assert info.value.field, override
    assert info.value.field == field or info.value.field.startswith(field + "."), (
        override,
        str(info.value),
    )
    assert info.value.message
    one_line(info.value)


_ANY_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**3), 10**3),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=6),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(_IDENT, inner, max_size=3)
    ),
    max_leaves=8,
)


@PROPERTY
@given(st.dictionaries(st.one_of(st.sampled_from(TOP_KEYS), _IDENT), _ANY_VALUE, max_size=5))
def test_random_mapping_validates_or_is_input_error(data):
    """Whatever the mapping, validation either succeeds or raises InputError naming a field."""
    try:
        cfg = validate_config(LoopedGDConfig, data)
    except InputError as exc:
        assert exc.field and exc.message
        one_line(exc)
    else:
        assert isinstance(cfg, LoopedGDConfig)
        assert set(data) <= set(TOP_KEYS)


@st.composite
def valid_config(draw) -> dict:
    d = draw(st.integers(1, 12))
    covariance = draw(st.sampled_from(["identity", "eigenvalues", "rotated"]))
    data: dict = {
        "d": d,
        "n": draw(st.integers(1, 64)),
        "loops": draw(st.integers(1, 6)),
        "covariance": covariance,
        "weight_prior": draw(
            st.sampled_from(["identity", "inverse_covariance", "scaled_identity"])
        ),
        "noise_std": draw(st.floats(0.0, 10.0)),
        "seed": draw(st.integers(0, 2**31)),
        "train": {
            "steps": draw(st.integers(1, 10**5)),
            "optimizer": {
                "lr": draw(st.floats(1e-6, 1.0)),
                "kind": draw(st.sampled_from(["adam", "sgd"])),
            },
        },
    }
    if covariance != "identity" and draw(st.booleans()):
        data["eigenvalues"] = draw(st.lists(st.floats(1e-3, 1e3), min_size=d, max_size=d))
    return data


@PROPERTY
@given(valid_config())
def test_random_valid_config_validates_and_round_trips(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("rt")
    (folder / "user.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(LoopedGDConfig, folder / "user.yaml")
    assert cfg.d == data["d"] and cfg.train.steps == data["train"]["steps"]
    assert cfg.train.optimizer.lr == data["train"]["optimizer"]["lr"]
    (folder / "config.yaml").write_text(config_to_yaml(cfg))
    assert load_config(LoopedGDConfig, folder / "config.yaml") == cfg
    # the same values given as --set overrides give the same config
    overrides = [f"{k}={_yaml(v)}" for k, v in data.items() if k != "train"]
    overrides += [f"train.steps={data['train']['steps']}"]
    overrides += [f"train.optimizer.{k}={_yaml(v)}" for k, v in data["train"]["optimizer"].items()]
    assert apply_overrides(LoopedGDConfig(), overrides) == cfg
