"""GPT (Garg et al.): layout, causality, hooks, init, parameter count, config."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from icgd.core.rng import make_generator
from icgd.models import GPT, GPT_SIZES, GPTConfig
from icgd.models.gpt import interleave

F64 = torch.float64


def make_model(seed=1, dtype=F64, **overrides):
    config = GPTConfig(**{"d_in": 4, "max_points": 8, "size": "tiny", **overrides})
    return GPT(config, generator=make_generator(seed), dtype=dtype)


def random_points(B=3, k=8, d=4, seed=0, dtype=F64):
    g = make_generator(seed)
    return torch.randn(B, k, d, generator=g, dtype=dtype), torch.randn(
        B, k, generator=g, dtype=dtype
    )


def n_params_formula(d_in: int, E: int, L: int, max_points: int) -> int:
    read_in, positions, read_out, ln_f = d_in * E + E, 2 * max_points * E, E + 1, 2 * E
    block = (
        2 * E + (3 * E * E + 3 * E) + (E * E + E) + 2 * E + (4 * E * E + 4 * E) + (4 * E * E + E)
    )
    return read_in + positions + L * block + ln_f + read_out


def test_interleave_layout():
    X, y = random_points(B=2, k=3, d=4)
    tokens = interleave(X, y)
    assert tokens.shape == (2, 6, 4)
    torch.testing.assert_close(tokens[:, 0::2], X, rtol=0, atol=0)
    torch.testing.assert_close(tokens[:, 1::2, 0], y, rtol=0, atol=0)
    assert (tokens[:, 1::2, 1:] == 0).all()


@pytest.mark.parametrize("k", [1, 5, 8])
def test_shapes_and_dtypes(k):
    model = make_model()
    X, y = random_points(k=k)
    out = model(X, y)
    assert out.shape == (3, k) and out.dtype == F64
    out32 = make_model(dtype=torch.float32)(X.float(), y.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out, rtol=1e-4, atol=1e-4)


def test_prediction_i_ignores_later_tokens():
    model = make_model()
    X, y = random_points()
    base = model(X, y).detach()
    g = make_generator(7)
    for i in range(8):
        X2, y2 = X.clone(), y.clone()
        X2[:, i + 1 :] = torch.randn(X2[:, i + 1 :].shape, generator=g, dtype=F64)
        y2[:, i:] = torch.randn(y2[:, i:].shape, generator=g, dtype=F64)  # y_i comes after x_i
        out = model(X2, y2).detach()
        torch.testing.assert_close(out[:, : i + 1], base[:, : i + 1], rtol=0, atol=0)
        if i < 7:
            assert not torch.allclose(out[:, i + 1 :], base[:, i + 1 :])
    # a shorter prompt gives the same predictions as the prefix of a longer one
    torch.testing.assert_close(model(X[:, :5], y[:, :5]), base[:, :5], rtol=1e-12, atol=1e-12)


def test_hooks_names_cache_and_patching():
    model = make_model()
    X, y = random_points()
    with torch.no_grad():
        out, cache = model.run_with_cache(X, y)
        assert list(cache) == model.hook_names() == [f"hook_resid.{i}" for i in range(4)]
        assert all(v.shape == (3, 16, 64) for v in cache.values())
        torch.testing.assert_close(out, model(X, y), rtol=0, atol=0)
        # replacing the final residual stream with the embedding skips every block
        embed = cache["hook_resid.0"]
        with model.hooks([("hook_resid.3", lambda t, name: embed)]):
            skipped = model(X, y)
        expected = model.io.read_out_head(model.io.ln_f(embed[:, ::2])).squeeze(-1)
        torch.testing.assert_close(skipped, expected, rtol=0, atol=0)
        assert not torch.allclose(skipped, out)
        with model.hooks([("hook_resid.1", lambda t, name: None)]):
            torch.testing.assert_close(model(X, y), out, rtol=0, atol=0)
    assert len(model.hook_points) == 0


def test_init_deterministic_without_global_rng_and_gpt2_scales():
    state = torch.random.get_rng_state()
    a, b, c = make_model(seed=3), make_model(seed=3), make_model(seed=4)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        if "ln" not in name and "bias" not in name:
            assert not torch.equal(p, r), name
    big = GPT(GPTConfig(d_in=4, max_points=8, size="small"), generator=make_generator(0))
    w = big.blocks[0].attn.c_attn.weight.double()
    assert abs(w.std().item() - 0.02) < 0.002
    proj = big.blocks[0].mlp.c_proj.weight.double()
    assert abs(proj.std().item() - 0.02 / 12**0.5) < 0.001  # 0.02 / √(2·n_layer)
    assert (big.blocks[0].ln_1.weight == 1).all() and (big.blocks[0].attn.c_attn.bias == 0).all()


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_parameter_count_and_every_parameter_gets_gradient(size):
    model = make_model(size=size)
    preset = GPT_SIZES[size]
    expected = n_params_formula(4, preset["n_embd"], preset["n_layer"], 8)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.io.wpe.weight.shape == (16, preset["n_embd"])
    X, y = random_points()
    model(X, y).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_standard_parameter_count():
    config = GPTConfig(d_in=20, max_points=41)  # default size: standard 256/12/8
    assert (config.n_embd, config.n_layer, config.n_head) == (256, 12, 8)
    model = GPT(config)
    # 12·(12·256² + 13·256) + (20+1)·256 + 82·256 + 2·256 + (256+1)
    assert sum(p.numel() for p in model.parameters()) == n_params_formula(20, 256, 12, 41)
    assert n_params_formula(20, 256, 12, 41) == 9_504_257


def test_dropout_only_in_training_mode():
    model = make_model(dropout=0.5)
    X, y = random_points()
    model.eval()
    torch.testing.assert_close(model(X, y), model(X, y), rtol=0, atol=0)
    model.train()
    assert not torch.allclose(model(X, y), model(X, y))


def test_size_presets_and_overrides():
    assert GPTConfig(size="small").n_embd == 128
    c = GPTConfig(size="small", n_layer=2)
    assert (c.n_embd, c.n_layer, c.n_head) == (128, 2, 4)
    c = GPTConfig(size=None, n_embd=32, n_layer=1, n_head=4)
    assert GPTConfig.model_validate(c.model_dump()) == c  # round trip of the resolved config
    assert GPTConfig().dropout == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": "huge"}, "size"),
        ({"size": None, "n_embd": 32, "n_head": 4}, "n_layer"),
        ({"n_embd": 100, "n_head": 8}, "n_embd"),
        ({"dropout": 1.0}, "dropout"),
        ({"d_in": 0}, "d_in"),
        ({"max_points": -1}, "max_points"),
        ({"n_head": 0}, "n_head"),
        ({"layers": 3}, "layers"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        GPTConfig(**kwargs)


def test_rejects_bad_inputs():
    model = make_model()
    X, y = random_points(k=9)
    with pytest.raises(ValueError, match="max_points"):
        model(X, y)
    with pytest.raises(ValueError, match="d_in"):
        model(X[:, :4, :3], y[:, :4])
    with pytest.raises(ValueError, match=r"\(B, k\)"):
        model(X[:, :4], y[:, :3])


def test_read_in_and_out_keep_the_uniform_nn_linear_init():
    """Garg et al.'s read-in/out sit outside GPT-2's init: U(±1/√fan_in) for weight and bias."""
    model = GPT(GPTConfig(d_in=4, max_points=8, size="small"), generator=make_generator(0))
    for lin in (model.io.read_in, model.io.read_out_head):
        bound = 1 / lin.in_features**0.5
        for p in (lin.weight, lin.bias):
            assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound
    assert abs(model.io.wpe.weight.double().std().item() - 0.02) < 0.002
