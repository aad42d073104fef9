"""Linear self-attention: fast paths vs the explicit formula, GD semantics, looping, hooks, init."""

from __future__ import annotations

import pytest
import torch

from icgd.core.prompts import build_prompt
from icgd.core.rng import make_generator
from icgd.models import LinearSelfAttention, LSAConfig, hook_names

PARAMETRISATIONS = ["full", "sparse", "sparse_u", "relaxed"]
F64 = torch.float64


def random_prompts(B: int, n: int, d: int, seed: int = 0, dtype=F64) -> torch.Tensor:
    g = make_generator(seed)
    X = torch.randn(B, n, d, generator=g, dtype=dtype)
    y = torch.randn(B, n, generator=g, dtype=dtype)
    x_q = torch.randn(B, d, generator=g, dtype=dtype)
    return build_prompt(X, y, x_q)


def naive_forward(model: LinearSelfAttention, Z: torch.Tensor, n_steps: int) -> list[torch.Tensor]:
    """Every Z_t of `Z_{t} = Z_{t-1} + (1/n) Σ_h P_h Z M (Zᵀ Q_h Z)`, written out literally."""
    P, Q = model.layer_matrices()
    n = Z.shape[2] - 1
    M = torch.eye(n + 1, dtype=Z.dtype)
    M[n, n] = 0.0
    out = [Z]
    for t in range(n_steps):
        layer = 0 if model.config.looped else t
        Zt = out[-1]
        update = sum(
            P[layer, h] @ Zt @ M @ (Zt.transpose(1, 2) @ Q[layer, h] @ Zt)
            for h in range(P.shape[1])
        )
        out.append(Zt + update / n)
    return out


def make_model(
    parametrisation, *, looped=False, n_layers=3, heads=3, d=4, std=0.4, seed=1, dtype=F64
):
    config = LSAConfig(
        d=d,
        n_layers=n_layers,
        looped=looped,
        parametrisation=parametrisation,
        n_heads=heads,
        init_std=std,
    )
    return LinearSelfAttention(config, generator=make_generator(seed), dtype=dtype)


@pytest.mark.parametrize("looped", [False, True])
@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_fast_path_equals_explicit_formula(parametrisation, looped):
    model = make_model(parametrisation, looped=looped)
    Z = random_prompts(B=6, n=9, d=4)
    with torch.no_grad():
        _, cache = model.run_with_cache(Z, names_filter=lambda name: name.startswith("hook_z"))
        reference = naive_forward(model, Z, 3)
    for t, Z_ref in enumerate(reference):
        got = cache[f"hook_z.{t}"]
        scale = Z_ref.abs().max().item()
        assert scale > 1.0 or t == 0  # parameters are not small: the layers really move Z
        torch.testing.assert_close(got, Z_ref, rtol=1e-10, atol=1e-10 * scale)
    torch.testing.assert_close(model.predict(Z), -reference[-1][:, -1, -1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_layer_matrices_block_structure(parametrisation):
    d = 3
    model = make_model(parametrisation, heads=2, d=d)
    P, Q = model.layer_matrices()
    assert P.shape == Q.shape == (3, 2, d + 1, d + 1)
    if parametrisation == "full":
        assert P is model.P and Q is model.Q
        return
    A = model.A
    torch.testing.assert_close(Q[..., :d, :d], -A, rtol=0, atol=0)
    assert (Q[..., d, :] == 0).all() and (Q[..., :, d] == 0).all()
    assert (P[..., d, d] == 1).all() and (P[..., :d, d] == 0).all()
    top_left = {"sparse": torch.zeros_like(A), "sparse_u": torch.zeros_like(A), "relaxed": None}
    expected_tl = model.B if parametrisation == "relaxed" else top_left[parametrisation]
    torch.testing.assert_close(P[..., :d, :d], expected_tl, rtol=0, atol=0)
    expected_u = model.u if parametrisation == "sparse_u" else torch.zeros_like(A[..., 0, :])
    torch.testing.assert_close(P[..., d, :d], expected_u, rtol=0, atol=0)


@pytest.mark.parametrize("looped", [False, True])
def test_sparse_multi_head_is_preconditioned_gd(looped):
    """Label row = residuals of w_{t+1} = w_t − (Σ_h A_hᵀ) ∇R(w_t), query entry = −x_qᵀ w_t."""
    d, n = 4, 11
    model = make_model("sparse", looped=looped, heads=2, d=d, std=0.15)
    Z = random_prompts(B=5, n=n, d=d)
    X, y, x_q = Z[:, :d, :n].transpose(1, 2), Z[:, d, :n], Z[:, :d, n]
    with torch.no_grad():
        _, cache = model.run_with_cache(Z)
    w = torch.zeros(5, d, dtype=F64)
    for t in range(4):
        layer = 0 if looped else min(t, 2)
        label = cache[f"hook_z.{t}"][:, d, :]
        torch.testing.assert_close(
            label[:, :n], y - torch.einsum("bnd,bd->bn", X, w), rtol=0, atol=1e-12
        )
        torch.testing.assert_close(label[:, n], -(x_q * w).sum(-1), rtol=0, atol=1e-12)
        torch.testing.assert_close(cache[f"hook_z.{t}"][:, :d], Z[:, :d], rtol=0, atol=0)
        grad = torch.einsum("bnd,bn->bd", X, torch.einsum("bnd,bd->bn", X, w) - y) / n
        gamma = model.A[layer].detach().sum(0).T  # Σ_h A_hᵀ
        w = w - grad @ gamma.T


def test_looped_n_loops_override():
    model = make_model("sparse_u", looped=True, n_layers=2, heads=2, std=0.3)
    Z = random_prompts(B=4, n=8, d=4)
    with torch.no_grad():
        reference = naive_forward(model, Z, 5)
        for k in (0, 1, 2, 5):
            torch.testing.assert_close(model(Z, n_loops=k), reference[k], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(model(Z), reference[2], rtol=1e-10, atol=1e-10)
        _, cache = model.run_with_cache(Z, n_loops=5)
    assert list(cache) == hook_names(5) == model.hook_names(5)
    with pytest.raises(ValueError, match="n_loops"):
        model(Z, n_loops=-1)


def test_stacked_rejects_n_loops():
    model = make_model("sparse")
    Z = random_prompts(B=2, n=5, d=4)
    torch.testing.assert_close(model(Z, n_loops=3), model(Z))
    with pytest.raises(ValueError, match="stacked"):
        model(Z, n_loops=2)
    with pytest.raises(ValueError, match="stacked"):
        model.predict(Z, n_loops=4)


def test_rejects_bad_prompt_shape():
    model = make_model("sparse")
    with pytest.raises(ValueError, match=r"\(B, d\+1, n\+1\)"):
        model(torch.zeros(2, 6, 5, dtype=F64))
    with pytest.raises(ValueError):
        model(torch.zeros(5, 9, dtype=F64))


def test_hooks_removed_after_exception():
    model = make_model("full")
    Z = random_prompts(B=2, n=5, d=4)
    expected = model(Z).detach()
    with pytest.raises(RuntimeError, match="inside"):
        with model.hooks([("hook_z.1", lambda t, name: torch.zeros_like(t))]):
            assert len(model.hook_points) == 1
            raise RuntimeError("inside")
    assert len(model.hook_points) == 0
    torch.testing.assert_close(model(Z).detach(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_run_with_cache_names_shapes_and_scores(parametrisation):
    B, n, d, H = 3, 7, 4, 2
    model = make_model(parametrisation, heads=H, d=d)
    Z = random_prompts(B=B, n=n, d=d)
    out, cache = model.run_with_cache(Z)
    assert list(cache) == hook_names(3)
    torch.testing.assert_close(cache["hook_z.3"], out.detach(), rtol=0, atol=0)
    torch.testing.assert_close(out, model(Z), rtol=0, atol=0)  # inspection does not change output
    assert all(not v.requires_grad for v in cache.values())
    _, Q = model.layer_matrices()
    for t in range(1, 4):
        assert cache[f"hook_z.{t}"].shape == (B, d + 1, n + 1)
        S = cache[f"hook_scores.{t}"]
        assert S.shape == (B, H, n + 1, n + 1)
        Zp = cache[f"hook_z.{t - 1}"]
        for h in range(H):
            full = Zp.transpose(1, 2) @ Q[t - 1, h].detach() @ Zp  # (B, n+1, n+1): z_iᵀ Q z_j
            torch.testing.assert_close(S[:, h, :n], full[:, :n], rtol=1e-12, atol=1e-12)
            assert (S[:, h, n] == 0).all()  # the query is not a key
    _, only = model.run_with_cache(Z, names_filter=["hook_z.0", "hook_z.2"])
    assert list(only) == ["hook_z.0", "hook_z.2"]


def test_scores_computed_only_when_requested(monkeypatch):
    model = make_model("sparse")
    calls = []
    original = LinearSelfAttention.scores

    def counting(Z, Q):
        calls.append(1)
        return original(Z, Q)

    monkeypatch.setattr(LinearSelfAttention, "scores", staticmethod(counting))
    Z = random_prompts(B=2, n=5, d=4)
    model.run_with_cache(Z, names_filter=lambda name: name.startswith("hook_z"))
    model(Z)
    assert calls == []
    model.run_with_cache(Z, names_filter="hook_scores.2")
    assert calls == [1]


@pytest.mark.parametrize("parametrisation", ["sparse", "full"])
def test_replacing_hooks_change_the_output(parametrisation):
    model = make_model(parametrisation)
    Z = random_prompts(B=3, n=6, d=4)
    with torch.no_grad():
        base = model(Z)
        with model.hooks([("hook_z.0", lambda t, name: 2 * t)]):
            doubled = model(Z)
        torch.testing.assert_close(doubled, model(2 * Z), rtol=0, atol=0)
        assert not torch.allclose(doubled, base)
        # Patching the scores of layer 1 to zero makes layer 1 the identity.
        with model.hooks([("hook_scores.1", lambda t, name: torch.zeros_like(t))]):
            _, cache = model.run_with_cache(Z)
        torch.testing.assert_close(cache["hook_z.1"], Z, rtol=0, atol=0)
        assert not torch.allclose(cache["hook_z.3"], base)
        # Patching the scores with an equal copy goes through the explicit path: same function.
        with model.hooks(
            [(lambda name: name.startswith("hook_scores"), lambda t, name: t.clone())]
        ):
            explicit = model(Z)
        torch.testing.assert_close(explicit, base, rtol=1e-10, atol=1e-10)
        # A hook returning None only observes.
        with model.hooks([("hook_z.2", lambda t, name: None)]):
            torch.testing.assert_close(model(Z), base, rtol=0, atol=0)


def test_init_deterministic_under_seed_and_scaled():
    config = LSAConfig(d=6, n_layers=4, parametrisation="relaxed", n_heads=2, init_std=0.5)
    a = LinearSelfAttention(config, generator=make_generator(3))
    b = LinearSelfAttention(config, generator=make_generator(3))
    c = LinearSelfAttention(config, generator=make_generator(4))
    for name, p in a.named_parameters():
        torch.testing.assert_close(p, dict(b.named_parameters())[name], rtol=0, atol=0)
        assert not torch.equal(p, dict(c.named_parameters())[name])
    assert dict(a.named_parameters()).keys() == {"A", "B"}
    A = a.A.detach().double()
    assert A.shape == (4, 2, 6, 6)
    assert abs(A.std().item() - 0.5) < 0.1 and abs(A.mean().item()) < 0.1
    # default generator: deterministic too, and the default std is 1e-4
    d1 = LinearSelfAttention(LSAConfig())
    d2 = LinearSelfAttention(LSAConfig())
    torch.testing.assert_close(d1.A, d2.A, rtol=0, atol=0)
    assert 0 < d1.A.abs().max().item() < 1e-3


@pytest.mark.parametrize(
    ("parametrisation", "names"),
    [("full", {"P", "Q"}), ("sparse", {"A"}), ("sparse_u", {"A", "u"}), ("relaxed", {"A", "B"})],
)
@pytest.mark.parametrize("looped", [False, True])
def test_gradients_reach_every_parameter(parametrisation, names, looped):
    model = make_model(parametrisation, looped=looped, heads=2, std=0.1)
    assert {name for name, _ in model.named_parameters()} == names
    Z = random_prompts(B=8, n=6, d=4)
    loss = model.predict(Z).square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
        n_unique = 1 if looped else 3
        assert p.shape[:2] == (n_unique, 2), name


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_float32_and_float64(parametrisation):
    m64 = make_model(parametrisation, std=0.2, dtype=torch.float64)
    m32 = make_model(parametrisation, std=0.2, dtype=torch.float32)
    Z = random_prompts(B=4, n=6, d=4)
    out64 = m64.predict(Z)
    out32 = m32.predict(Z.float())
    assert out64.dtype == torch.float64 and out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)


def test_checkpoint_roundtrip_rebuilds_from_config():
    model = make_model("sparse_u", looped=True, heads=2)
    clone = LinearSelfAttention(model.config, dtype=F64)
    clone.load_state_dict(model.state_dict())
    Z = random_prompts(B=2, n=5, d=4)
    torch.testing.assert_close(clone(Z, n_loops=4), model(Z, n_loops=4), rtol=0, atol=0)
    assert clone.config == model.config


def test_config_validation():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        LSAConfig(init_std=-1.0)
    with pytest.raises(ValidationError):
        LSAConfig(parametrisation="dense")
    with pytest.raises(ValidationError):
        LSAConfig(n_layers=0)
    with pytest.raises(ValidationError):
        LSAConfig(extra_field=1)


@pytest.mark.parametrize("parametrisation", ["sparse", "sparse_u"])
@pytest.mark.parametrize("looped", [False, True])
def test_label_row_training_path_equals_the_hooked_path(parametrisation, looped):
    """Without hooks the sparse models carry (X, label row) apart; with any hook attached they
    rebuild Z every layer. Both must be the same function, values and gradients."""
    config = LSAConfig(
        d=4, n_layers=3, looped=looped, parametrisation=parametrisation, n_heads=2, init_std=0.3
    )
    model = LinearSelfAttention(
        config, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    Z = torch.randn(7, 5, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    fast = model(Z)
    (grad_fast,) = torch.autograd.grad(fast[:, -1, -1].sum(), model.A)
    with model.hooks([("hook_z.1", lambda t, name: None)]):
        hooked = model(Z)
        (grad_hooked,) = torch.autograd.grad(hooked[:, -1, -1].sum(), model.A)
    torch.testing.assert_close(fast, hooked, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_fast, grad_hooked, rtol=0, atol=1e-12)
