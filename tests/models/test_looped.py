"""Looped transformer (Yang et al.): loops by hand, no-grad loops, hooks, init, config."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from icgd.core.rng import make_generator
from icgd.models import GPT, Block, GPTConfig, LoopedConfig, LoopedTransformer

F64 = torch.float64


def make_model(seed=1, dtype=F64, **overrides):
    defaults = {"d_in": 4, "max_points": 6, "size": "tiny", "n_loops": 5, "grad_last": 2}
    config = LoopedConfig(**{**defaults, **overrides})
    return LoopedTransformer(config, generator=make_generator(seed), dtype=dtype)


def random_points(B=3, k=6, d=4, seed=0, dtype=F64):
    g = make_generator(seed)
    return torch.randn(B, k, d, generator=g, dtype=dtype), torch.randn(
        B, k, generator=g, dtype=dtype
    )


def by_hand(model: LoopedTransformer, X, y, b: int, detach_at: int | None = None):
    """z_{t+1} = Blocks(z_t + e), z_0 = 0; ŷ_t = read_out(LN_f(z_t)) at the x tokens."""
    io = model.io
    tokens = torch.stack([X, torch.cat([y[..., None], torch.zeros_like(X[..., 1:])], -1)], 2)
    tokens = tokens.reshape(X.shape[0], -1, X.shape[-1])  # (B, 2k, d)
    e = io.read_in(tokens) + io.wpe.weight[: tokens.shape[1]]
    z = torch.zeros_like(e)
    predictions = []
    for t in range(1, b + 1):
        if detach_at is not None and t - 1 == detach_at:
            z = z.detach()
        h = z + e
        for block in model.blocks:
            h = block(h)
        z = io.ln_f(h) if model.config.final_norm == "in_loop" else h
        x_tokens = z[:, ::2] if model.config.final_norm == "in_loop" else io.ln_f(z[:, ::2])
        predictions.append(io.read_out_head(x_tokens).squeeze(-1))
    return torch.stack(predictions)


@pytest.mark.parametrize("final_norm", ["readout", "in_loop"])
@pytest.mark.parametrize("n_blocks", [1, 2])
def test_loops_equal_applying_the_block_by_hand(n_blocks, final_norm):
    model = make_model(n_blocks=n_blocks, final_norm=final_norm)
    X, y = random_points()
    with torch.no_grad():
        for b in (1, 5, 9):  # 9 > config.n_loops: test-time looping
            out = model(X, y, n_loops=b)
            assert out.shape == (b, 3, 6) and out.dtype == F64
            torch.testing.assert_close(out, by_hand(model, X, y, b), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model(X, y), model(X, y, n_loops=5), rtol=0, atol=0)
    assert isinstance(model.blocks[0], Block)  # GPT's block class, not a copy


def test_loss_over_last_loops_gradient_matches_detached_reference():
    """First b − T loops without gradient ≡ detaching z at loop b − T."""
    b, T = 6, 2
    model = make_model(n_loops=b, grad_last=T)
    X, y = random_points()
    loss = model.loss_over_last_loops(X, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    reference_preds = by_hand(model, X, y, b, detach_at=b - T)[b - T :]  # (T, B, k)
    reference = (reference_preds - y).square().mean()
    ref_grads = torch.autograd.grad(reference, list(model.parameters()))
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads, strict=True):
        assert r.abs().sum() > 0, name
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12, msg=name)
    # without detaching, the gradient differs: the no_grad loops really cut the graph
    full = (by_hand(model, X, y, b)[b - T :] - y).square().mean()
    full_grads = torch.autograd.grad(full, list(model.parameters()))
    assert any(not torch.allclose(g, f) for g, f in zip(grads, full_grads, strict=True))


def test_forward_grad_last_detaches_early_predictions():
    model = make_model()
    X, y = random_points()
    out = model(X, y, n_loops=5, grad_last=2)
    with torch.no_grad():
        torch.testing.assert_close(out, model(X, y, n_loops=5), rtol=0, atol=0)
    params = list(model.parameters())
    early = torch.autograd.grad(out[:3].sum(), params, allow_unused=True, retain_graph=True)
    assert all(g is None or (g == 0).all() for g in early)  # the no_grad loops carry no gradient
    late = torch.autograd.grad(out[3:].sum(), params, retain_graph=True)
    assert all(g.abs().sum() > 0 for g in late)
    # loss helper = mean of the last T loops' errors
    torch.testing.assert_close(
        model.loss_over_last_loops(X, y, n_loops=5, last=2),
        (out[3:] - y).square().mean(),
        rtol=1e-12,
        atol=1e-12,
    )


def test_every_parameter_gets_gradient_and_parameter_count():
    model = make_model()
    model.loss_over_last_loops(*random_points()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    gpt = GPT(GPTConfig(d_in=4, max_points=6, size="tiny", n_layer=1))
    n_looped = sum(p.numel() for p in model.parameters())
    assert n_looped == sum(p.numel() for p in gpt.parameters())  # = a 1-layer GPT
    E = 64
    expected = (4 * E + E) + 12 * E + (12 * E * E + 13 * E) + 2 * E + (E + 1)
    assert n_looped == expected


def test_hooks_names_cache_and_patching():
    model = make_model()
    X, y = random_points()
    with torch.no_grad():
        out, cache = model.run_with_cache(X, y, n_loops=3)
        assert (
            list(cache) == model.hook_names(3) == ["hook_embed"] + [f"hook_z.{t}" for t in range(4)]
        )
        assert (cache["hook_z.0"] == 0).all() and cache["hook_z.3"].shape == (3, 12, 64)
        # Patching z_1 to 0 makes loop 2 equal to loop 1.
        with model.hooks([("hook_z.1", lambda t, name: torch.zeros_like(t))]):
            patched = model(X, y, n_loops=2)
        torch.testing.assert_close(patched[1], out[0], rtol=0, atol=0)
    assert len(model.hook_points) == 0


def test_init_deterministic_without_global_rng():
    state = torch.random.get_rng_state()
    a, b, c = make_model(seed=3), make_model(seed=3), make_model(seed=4)
    assert torch.equal(state, torch.random.get_rng_state())
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        if "ln" not in name and "bias" not in name:
            assert not torch.equal(p, r), name


def test_defaults_are_yang_linear_recipe():
    c = LoopedConfig()
    assert (c.n_embd, c.n_head, c.n_blocks, c.n_loops, c.grad_last) == (256, 8, 1, 30, 15)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"grad_last": 31}, "grad_last"),
        ({"n_loops": 0}, "n_loops"),
        ({"n_embd": 100}, "n_embd"),
        ({"final_norm": "none"}, "final_norm"),
        ({"n_blocks": 0}, "n_blocks"),
        ({"loops": 3}, "loops"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        LoopedConfig(**kwargs)


def test_rejects_bad_loop_arguments():
    model = make_model()
    X, y = random_points()
    with pytest.raises(ValueError, match="n_loops"):
        model(X, y, n_loops=0)
    with pytest.raises(ValueError, match="grad_last"):
        model(X, y, n_loops=3, grad_last=4)
