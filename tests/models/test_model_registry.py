"""`icgd.models.registry`: every kind builds the right model at a depth; the spec is closed."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from icgd.models import (
    GPT,
    MODEL_KINDS,
    LinearSelfAttention,
    LoopedTransformer,
    ModelSpec,
    StackedSoftmaxAttention,
    build_model,
)


def build(kind: str, depth: int = 3, seed: int = 0, dtype=torch.float32, **fields):
    spec = ModelSpec(kind=kind, **fields)
    g = torch.Generator().manual_seed(seed)
    return build_model(spec, d=4, n_max=7, depth=depth, generator=g, dtype=dtype)


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


def test_family_defaults_and_causal_models_hold_one_more_point():
    assert set(MODEL_KINDS) == {"lsa", "softmax", "gpt", "looped"}
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
    assert ModelSpec(kind="gpt").causal and not ModelSpec(kind="softmax").causal


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "gpt", "parametrisation": "full"}, "parametrisation"),
        ({"kind": "lsa", "size": "small"}, "size"),
        ({"kind": "softmax", "grad_last": 2}, "grad_last"),
        ({"kind": "gpt", "n_embd": 30, "n_heads": 4}, "n_embd"),
        ({"kind": "rnn"}, "kind"),
        ({"kind": "lsa", "depth": 2}, "depth"),
    ],
)
def test_spec_rejects_fields_of_other_families_and_bad_values(fields, field):
    with pytest.raises(ValidationError, match=field):
        ModelSpec(**fields)
