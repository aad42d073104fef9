"""Softmax attention: He et al.'s closed form, masks, variants, hooks, init, config."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from icgd.core.prompts import build_prompt
from icgd.core.rng import make_generator
from icgd.models import SoftmaxAttention, SoftmaxAttentionConfig, StackedSoftmaxAttention
from icgd.models.hooks import caching_hook

F64 = torch.float64
KINDS = ["he", "full"]
MASKS = ["context", "causal"]


def random_prompts(B: int, n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = make_generator(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    y = torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    return build_prompt(X, y, x_q)


def make_model(kind="he", mask="context", heads=3, d=4, std=0.5, seed=1, dtype=F64):
    config = SoftmaxAttentionConfig(d=d, n_heads=heads, kind=kind, mask=mask, init_std=std)
    return SoftmaxAttention(config, generator=make_generator(seed), dtype=dtype)


def reference_forward(model: SoftmaxAttention, Z: torch.Tensor) -> torch.Tensor:
    """`z_j + Σ_h W_OV^h Σ_{i allowed} z_i softmax_i(z_iᵀ W_KQ^h z_j)`, one prompt and token at a
    time, written out literally."""
    W_KQ, W_OV = model.W_KQ.detach(), model.W_OV.detach()
    out = Z.clone()
    B, _, T = Z.shape
    for b in range(B):
        for j in range(T):
            keys = range(T - 1) if model.config.mask == "context" else range(j + 1)
            for h in range(W_KQ.shape[0]):
                logits = torch.stack([Z[b, :, i] @ W_KQ[h] @ Z[b, :, j] for i in keys])
                weights = torch.softmax(logits, dim=0)
                mixed = sum(w * Z[b, :, i] for w, i in zip(weights, keys, strict=True))
                out[b, :, j] += W_OV[h] @ mixed
    return out


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_explicit_formula(kind, mask):
    B, n, d, H = 3, 6, 4, 3
    model = make_model(kind, mask, heads=H, d=d)
    Z = random_prompts(B, n, d)
    with torch.no_grad():
        out = model(Z)
        reference = reference_forward(model, Z)
    assert out.shape == (B, d + 1, n + 1) and out.dtype == F64
    assert model.predict(Z).shape == (B,)
    assert model.W_KQ.shape == model.W_OV.shape == (H, d + 1, d + 1)
    assert (out - Z).abs().max() > 1e-2  # the layer really moves the tokens
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
    if kind == "he":
        torch.testing.assert_close(out[:, :d], Z[:, :d], rtol=0, atol=0)  # label row only


def test_he_closed_form_prediction():
    """ŷ = Σ_h o_hᵀ Σ_{ℓ≤n} z_ℓ softmax_ℓ(z_ℓᵀ W_KQ^h z_q), prompt by prompt."""
    B, n, d, H = 4, 9, 3, 4
    model = make_model("he", "context", heads=H, d=d)
    Z = random_prompts(B, n, d, seed=2)
    with torch.no_grad():
        y_hat = model.predict(Z)
    for b in range(B):
        z_q = Z[b, :, n]
        expected = torch.zeros((), dtype=F64)
        for h in range(H):
            logits = Z[b, :, :n].T @ model.KQ[h].detach() @ z_q  # (n,)
            expected += model.o[h].detach() @ (Z[b, :, :n] @ torch.softmax(logits, dim=0))
        torch.testing.assert_close(y_hat[b], expected, rtol=1e-12, atol=1e-12)
    # W_OV view: zero except the last row, which is o_hᵀ
    W_OV = model.W_OV.detach()
    assert (W_OV[:, :d] == 0).all()
    torch.testing.assert_close(W_OV[:, d], model.o.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_context_mask_query_is_not_a_key(kind):
    model = make_model(kind, "context")
    Z = random_prompts(2, 5, 4)
    Z2 = Z.clone()
    Z2[:, :, -1] = torch.randn(2, 5, generator=make_generator(9), dtype=F64)  # a new query token
    with torch.no_grad():
        out, out2 = model(Z), model(Z2)
        _, cache = model.run_with_cache(Z)
    # context tokens never see the query column
    torch.testing.assert_close(out[:, :, :-1], out2[:, :, :-1], rtol=0, atol=0)
    assert (cache["hook_pattern"][:, :, -1, :] == 0).all()  # the query's key row is empty
    assert torch.isinf(cache["hook_scores"][:, :, -1, :]).all()
    # With W_KQ's label column zero, the query's label enters ŷ only through the residual.
    with torch.no_grad():
        model.KQ[:, :, -1] = 0.0
        base = model.predict(Z)
        Z3 = Z.clone()
        Z3[:, -1, -1] = 2.5
        torch.testing.assert_close(model.predict(Z3) - 2.5, base, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_causal_mask_ignores_later_tokens(kind):
    model = make_model(kind, "causal")
    Z = random_prompts(2, 7, 4)
    j = 3
    Z2 = Z.clone()
    Z2[:, :, j + 1 :] = torch.randn(2, 5, 4, generator=make_generator(5), dtype=F64)
    with torch.no_grad():
        out, out2 = model(Z), model(Z2)
        _, cache = model.run_with_cache(Z)
    torch.testing.assert_close(out[:, :, : j + 1], out2[:, :, : j + 1], rtol=0, atol=0)
    pattern = cache["hook_pattern"]
    assert torch.equal(pattern.triu(), pattern)  # key i ≤ query j only
    torch.testing.assert_close(pattern.sum(-2), torch.ones(2, 3, 8, dtype=F64))


def test_any_context_length_and_stacking():
    model = make_model("full", "context", d=3)
    for n in (1, 4, 50):
        Z = random_prompts(2, n, 3)
        assert model(Z).shape == (2, 4, n + 1)
        assert model(model(Z)).shape == (2, 4, n + 1)  # full variant stacks
        assert torch.isfinite(model.predict(Z)).all()


def test_hooks_names_cache_and_patching():
    model = make_model("he", "context", heads=2)
    Z = random_prompts(3, 6, 4)
    out, cache = model.run_with_cache(Z)
    assert (
        list(cache) == model.hook_names() == ["hook_z.0", "hook_scores", "hook_pattern", "hook_z.1"]
    )
    assert cache["hook_scores"].shape == cache["hook_pattern"].shape == (3, 2, 7, 7)
    torch.testing.assert_close(cache["hook_z.1"], out.detach(), rtol=0, atol=0)
    torch.testing.assert_close(cache["hook_pattern"].sum(-2), torch.ones(3, 2, 7, dtype=F64))
    with torch.no_grad():
        # Uniform attention over the context (scores zero there): ŷ = Σ_h o_hᵀ mean_ℓ z_ℓ.
        def flat(t, name):
            return torch.where(torch.isinf(t), t, torch.zeros_like(t))

        with model.hooks([("hook_scores", flat)]):
            y_flat = model.predict(Z)
        expected = Z[:, :, :6].mean(-1) @ model.o.detach().sum(0)
        torch.testing.assert_close(y_flat, expected, rtol=1e-12, atol=1e-12)
        with model.hooks([("hook_pattern", lambda t, name: torch.zeros_like(t))]):
            torch.testing.assert_close(model(Z), Z, rtol=0, atol=0)
    assert len(model.hook_points) == 0


def test_stacked_hooks_are_each_layers_hooks():
    config = SoftmaxAttentionConfig(d=3, n_heads=2, kind="full", init_std=0.3)
    model = StackedSoftmaxAttention(config, 2, generator=make_generator(0), dtype=F64)
    Z, k = random_prompts(3, 5, 3), torch.tensor([5, 2, 3])  # with padding: k context tokens
    out, cache = model.run_with_cache(Z, k)
    layer1 = ["hook_z.0", "hook_scores.1", "hook_pattern.1", "hook_z.1"]
    assert (
        model.hook_names()
        == list(cache)
        == [*layer1, "hook_scores.2", "hook_pattern.2", "hook_z.2"]
    )
    torch.testing.assert_close(out, model(Z, k), rtol=0, atol=0)
    # Layer t's own hooks, fired under the stack's names.
    own1, own2 = {}, {}
    with model.layers[0].hooks([(lambda n: True, caching_hook(own1))]):
        first = model.layers[0](Z, k)
    with model.layers[1].hooks([(lambda n: True, caching_hook(own2))]):
        model.layers[1](first, k)
    pairs = [("hook_z.1", first), ("hook_scores.1", own1["hook_scores"])]
    pairs += [("hook_pattern.2", own2["hook_pattern"]), ("hook_scores.2", own2["hook_scores"])]
    for name, expected in pairs:
        torch.testing.assert_close(cache[name], expected, rtol=0, atol=0, msg=name)

    def zero(t, name):
        return torch.zeros_like(t)

    # Patching layer 2's pattern through the stack = patching it on the layer itself: Z passes.
    with torch.no_grad(), model.hooks([("hook_pattern.2", zero)]):
        patched = model(Z, k)
    with torch.no_grad(), model.layers[1].hooks([("hook_pattern", zero)]):
        expected = model(Z, k)
    torch.testing.assert_close(patched, expected, rtol=0, atol=0)
    torch.testing.assert_close(patched, first.detach(), rtol=0, atol=0)
    assert len(model.hook_points) == 0 and all(len(m.hook_points) == 0 for m in model.layers)


@pytest.mark.parametrize("kind", KINDS)
def test_init_deterministic_and_parameter_count(kind):
    config = SoftmaxAttentionConfig(d=5, n_heads=3, kind=kind, init_std=0.3)
    a = SoftmaxAttention(config, generator=make_generator(3))
    b = SoftmaxAttention(config, generator=make_generator(3))
    c = SoftmaxAttention(config, generator=make_generator(4))
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q) and not torch.equal(p, r), name
    D, H = 6, 3
    expected = H * D * D + (H * D if kind == "he" else H * D * D)
    assert sum(p.numel() for p in a.parameters()) == expected
    # every parameter gets a nonzero gradient
    model = make_model(kind, "context", std=0.3)
    model.predict(random_prompts(4, 5, 4)).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_float32():
    m32 = make_model("full", "causal", dtype=torch.float32)
    m64 = make_model("full", "causal")
    Z = random_prompts(2, 5, 4)
    out = m32.predict(Z.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), m64.predict(Z), rtol=1e-4, atol=1e-4)


def test_rejects_bad_prompt_shape():
    with pytest.raises(ValueError, match=r"\(B, d\+1, n\+1\)"):
        make_model()(torch.zeros(2, 6, 5, dtype=F64))


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", "linear"), ("mask", "none"), ("n_heads", 0), ("init_std", -1.0), ("d", 0)],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        SoftmaxAttentionConfig(**{field: value})
    with pytest.raises(ValidationError, match="extra"):
        SoftmaxAttentionConfig(extra=1)
