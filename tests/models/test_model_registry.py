"""`icgd.models.registry`: one spec class per family, chosen by `kind`; every kind builds the right
model at a depth; a spec is closed; switching `kind` by a dotted override keeps no old setting."""

from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter, ValidationError

from icgd.core.config import Config, apply_overrides, config_to_yaml, load_config
from icgd.core.errors import InputError
from icgd.models import (
    GPT,
    MODEL_KINDS,
    MODEL_SPECS,
    GPTSpec,
    LinearSelfAttention,
    LoopedSpec,
    LoopedTransformer,
    LSASpec,
    ModelSpec,
    SoftmaxSpec,
    StackedSoftmaxAttention,
    build_model,
    model_spec,
)


def build(kind: str, depth: int = 3, seed: int = 0, dtype=torch.float32, **fields):
    spec = model_spec(kind=kind, **fields)
    g = torch.Generator().manual_seed(seed)
    return build_model(spec, d=4, n_max=7, depth=depth, generator=g, dtype=dtype)


class Holder(Config):
    """A config holding a model spec, as an experiment's config does."""

    model: ModelSpec = LSASpec()


@pytest.mark.parametrize(
    ("kind", "cls", "depth_of"),
    [
        ("lsa", LinearSelfAttention, lambda m: m.config.n_layers),
        ("softmax", StackedSoftmaxAttention, lambda m: len(m.layers)),
        ("gpt", GPT, lambda m: m.config.n_layer),
        ("looped", LoopedTransformer, lambda m: m.config.n_loops),
    ],
)
def test_every_kind_builds_its_model_at_the_depth(kind, cls, depth_of):
    model = build(kind, depth=3, dtype=torch.float64)
    assert isinstance(model, cls) and depth_of(model) == 3
    assert all(p.dtype == torch.float64 for p in model.parameters())
    # Same generator seed, same weights; another seed, other weights.
    again, other = build(kind, dtype=torch.float64), build(kind, seed=1, dtype=torch.float64)
    params = list(zip(model.parameters(), again.parameters(), other.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b, _ in params)
    assert any(not torch.equal(a, c) for a, _, c in params)


def test_one_spec_class_per_kind_with_the_family_defaults():
    assert set(MODEL_KINDS) == set(MODEL_SPECS) == {"lsa", "softmax", "gpt", "looped"}
    assert all(type(model_spec(kind=k)) is MODEL_SPECS[k] for k in MODEL_KINDS)
    assert model_spec() == LSASpec() and LSASpec().parametrisation == "relaxed"
    assert set(LSASpec.model_fields) == {"kind", "n_heads", "init_std", "parametrisation"}
    assert set(SoftmaxSpec.model_fields) == {"kind", "n_heads", "init_std", "softmax_kind", "mask"}
    assert set(GPTSpec.model_fields) == {"kind", "size", "n_embd", "n_heads"}
    assert set(LoopedSpec.model_fields) == set(GPTSpec.model_fields) | {"n_blocks", "grad_last"}
    lsa = build("lsa")
    assert lsa.config.parametrisation == "relaxed" and lsa.config.init_std == 0.01
    soft = build("softmax")
    assert soft.config.kind == "full" and soft.config.mask == "context"
    gpt = build("gpt")  # "tiny": width 64, 2 heads; n_max + 1 points (the query is a point)
    assert (gpt.config.n_embd, gpt.config.n_head, gpt.config.max_points) == (64, 2, 8)
    looped = build("looped", depth=5)
    assert looped.config.grad_last == 3 and looped.config.n_blocks == 1  # T = ⌈b/2⌉
    assert build("looped", depth=2, grad_last=4).config.grad_last == 2  # capped at b
    assert build("gpt", n_heads=4, n_embd=32).config.n_head == 4
    assert GPTSpec().causal and LoopedSpec().causal and not SoftmaxSpec().causal
    assert GPTSpec(size="small").resolved() == {"size": "small", "n_embd": 128, "n_heads": 4}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "gpt", "parametrisation": "full"}, "parametrisation"),
        ({"kind": "lsa", "size": "small"}, "size"),
        ({"kind": "softmax", "grad_last": 2}, "grad_last"),
        ({"kind": "gpt", "n_embd": 30, "n_heads": 4}, "n_heads"),
        ({"kind": "gpt", "n_embd": 31}, "n_heads"),  # the 2 heads of "tiny"
        ({"kind": "rnn"}, "kind"),
        ({"kind": "lsa", "depth": 2}, "depth"),
        ({"kind": "lsa", "init_std": -1.0}, "init_std"),
    ],
)
def test_spec_rejects_fields_of_other_families_and_bad_values(fields, field):
    with pytest.raises(ValidationError, match=field):
        model_spec(**fields)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.kind=gpt", "model.init_std=0.1"], "model.init_std: unknown key"),
        (["model.size=small"], "model.size: unknown key"),
        (["model.kind=rnn"], "model: kind must be one of: lsa, softmax, gpt, looped"),
        (["model.n_heads=0"], "model.n_heads: Input should be greater than 0"),
        (["model.kind=gpt", "model.n_embd=30", "model.n_heads=4"], "model.n_heads: must divide"),
    ],
)
def test_errors_name_the_dotted_field(overrides, message):
    with pytest.raises(InputError) as info:
        apply_overrides(Holder(), overrides)
    assert str(info.value).startswith(message), str(info.value)


def test_switching_kind_keeps_no_setting_of_the_old_family():
    # The dump holds kind and the fields that were set: a new kind starts from its defaults.
    assert Holder().model_dump() == {"model": {"kind": "lsa"}}
    gpt = apply_overrides(Holder(), ["model.kind=gpt"]).model
    assert gpt == GPTSpec() and gpt.resolved()["n_heads"] == 2  # not LSA's 1 head
    tuned = apply_overrides(Holder(), ["model.init_std=0.1", "model.n_heads=2"])
    assert tuned.model == LSASpec(init_std=0.1, n_heads=2)
    soft = apply_overrides(tuned, ["model.kind=softmax"]).model  # shared fields carry over
    assert soft == SoftmaxSpec(init_std=0.1, n_heads=2)
    with pytest.raises(InputError, match="model.init_std"):
        apply_overrides(tuned, ["model.kind=gpt"])  # an LSA setting a GPT does not have
    looped = apply_overrides(Holder(), ["model.kind=looped", "model.grad_last=2"]).model
    assert looped == LoopedSpec(grad_last=2) and looped.loss_loops(8) == 2


def test_spec_round_trips_through_yaml_and_reads_old_null_fields(tmp_path):
    config = Holder(model=LoopedSpec(n_heads=4, n_blocks=2))
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    assert load_config(Holder, path) == config
    path.write_text("model: {kind: gpt}\n")  # laid over the default LSA spec
    assert load_config(Holder, path).model == GPTSpec()
    # Run folders written with the one flat spec stored every unused field as null.
    old = {"kind": "softmax", "n_heads": None, "init_std": None, "parametrisation": None}
    old |= {"softmax_kind": "he", "mask": None, "size": None, "n_embd": None}
    old |= {"n_blocks": None, "grad_last": None}
    assert TypeAdapter(ModelSpec).validate_python(old) == SoftmaxSpec(softmax_kind="he")
