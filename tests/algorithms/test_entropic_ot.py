"""Tests of the batched entropic-OT solvers (log-domain Sinkhorn, semi-dual ascent), in float64."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.algorithms import (
    OTResult,
    semi_dual,
    semi_dual_ascent,
    semi_dual_gradient,
    sinkhorn_log,
    squared_distances,
)

F64 = torch.float64
RULES = ["constant", "sink", "armijo"]


def clouds(B, n, m, d=2, seed=0):
    """Points uniform in the unit cube: costs in [0, d], so Sinkhorn converges fast."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(B, n, d, generator=g, dtype=F64)
    Y = torch.rand(B, m, d, generator=g, dtype=F64)
    return X, Y, squared_distances(X, Y)


def weights(B, k, seed):
    g = torch.Generator().manual_seed(seed)
    w = 0.5 + torch.rand(B, k, generator=g, dtype=F64)
    return w / w.sum(-1, keepdim=True)


def test_squared_distances():
    X, Y, C = clouds(3, 5, 7, d=4)
    brute = (X.unsqueeze(2) - Y.unsqueeze(1)).square().sum(-1)  # (B, n, m, d) → (B, n, m)
    assert C.shape == (3, 5, 7) and C.dtype == F64
    torch.testing.assert_close(C, brute, rtol=0, atol=1e-14)
    assert (squared_distances(X, X).diagonal(dim1=1, dim2=2) == 0).all()


@pytest.mark.parametrize("n,m,uniform", [(7, 7, True), (5, 8, False)])
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_sinkhorn_marginals_and_strong_duality(n, m, uniform, eps):
    _, _, C = clouds(4, n, m, seed=1)
    a, b = (None, None) if uniform else (weights(4, n, 2), weights(4, m, 3))
    res = sinkhorn_log(C, eps, a, b, tol=1e-12)
    assert isinstance(res, OTResult) and res.iterates is None
    assert res.plan.shape == (4, n, m) and res.f.shape == (4, n) and res.g.shape == (4, m)
    assert res.converged.all() and (res.iterations >= 1).all()
    a_ = torch.full((4, n), 1 / n, dtype=F64) if a is None else a
    b_ = torch.full((4, m), 1 / m, dtype=F64) if b is None else b
    torch.testing.assert_close(res.plan.sum(-1), a_, rtol=0, atol=1e-13)
    torch.testing.assert_close(res.plan.sum(-2), b_, rtol=0, atol=1e-12)
    assert (res.marginal_error <= 1e-12 + 1e-14).all()
    # plan = exp((f_i + g_j − C_ij)/ε), strong duality D(f, g) = F(g) = ⟨C, P⟩ − ε H(P)
    gibbs = torch.exp((res.f.unsqueeze(-1) + res.g.unsqueeze(-2) - C) / eps)
    torch.testing.assert_close(res.plan, gibbs, rtol=1e-14, atol=0)
    torch.testing.assert_close(res.dual, res.objective, rtol=0, atol=1e-10)
    torch.testing.assert_close(semi_dual(C, res.g, eps, a, b), res.objective, rtol=0, atol=1e-10)
    torch.testing.assert_close(res.value, (C * res.plan).sum((1, 2)))


@pytest.mark.parametrize("method", ["sinkhorn_log", "sinkhorn"])
@pytest.mark.parametrize("n,m,uniform", [(6, 6, True), (5, 9, False)])
def test_sinkhorn_matches_pot(method, n, m, uniform):
    ot = pytest.importorskip("ot")
    eps = 0.1
    _, _, C = clouds(3, n, m, seed=4)
    a, b = (None, None) if uniform else (weights(3, n, 5), weights(3, m, 6))
    res = sinkhorn_log(C, eps, a, b, tol=1e-13)
    for k in range(3):
        ak = torch.full((n,), 1 / n, dtype=F64) if a is None else a[k]
        bk = torch.full((m,), 1 / m, dtype=F64) if b is None else b[k]
        P = ot.sinkhorn(
            ak.numpy(), bk.numpy(), C[k].numpy(), eps, method=method, stopThr=1e-15,
            numItermax=100_000, warn=False,
        )  # fmt: skip
        P = torch.as_tensor(P)
        torch.testing.assert_close(res.plan[k], P, rtol=0, atol=1e-10)
        # POT's objective ⟨C, P⟩ + ε Σ P log P is ours (⟨C, P⟩ − ε H(P)) plus ε
        pot_obj = (C[k] * P).sum() + eps * (P * P.log()).sum()
        torch.testing.assert_close(res.objective[k] + eps, pot_obj, rtol=0, atol=1e-10)


def test_small_epsilon_approaches_exact_ot():
    """0 ≤ ⟨C, P_ε⟩ − W ≤ ε log m, W = `ot.emd2`: P_ε beats the exact plan P* on
    ⟨C, P⟩ + ε Σ P log P, and Shannon(P_ε) ≤ log(nm), Shannon(P*) ≥ Shannon(a) = log n; up to
    the marginal error of P_ε times max C. (Smaller ε is sound but Sinkhorn then needs > 50,000
    iterations on some of these problems.)"""
    ot = pytest.importorskip("ot")
    n = m = 6
    _, _, C = clouds(4, n, m, seed=24)
    a = torch.full((n,), 1 / n, dtype=F64)
    exact = torch.tensor([ot.emd2(a.numpy(), a.numpy(), C[k].numpy()) for k in range(4)])
    gaps = []
    for eps in [0.3, 0.1, 0.03]:
        res = sinkhorn_log(C, eps, tol=1e-11)
        assert res.converged.all()
        slack = C.amax((1, 2)) * res.marginal_error + 1e-12
        gap = res.value - exact
        assert (gap >= -slack).all(), gap
        assert (gap <= eps * math.log(m) + slack).all(), (gap, eps * math.log(m))
        gaps.append(gap)
    assert (gaps[-1] < 0.25 * gaps[0]).all(), gaps


@pytest.mark.parametrize("rule,step", [("constant", 1.0), ("sink", 1.0), ("armijo", 1.0)])
@pytest.mark.parametrize("n,m,uniform", [(6, 6, True), (5, 7, False)])
def test_semi_dual_ascent_converges_to_sinkhorn(rule, step, n, m, uniform):
    eps = 0.2
    _, _, C = clouds(3, n, m, seed=8)
    a, b = (None, None) if uniform else (weights(3, n, 9), weights(3, m, 10))
    ref = sinkhorn_log(C, eps, a, b, tol=1e-14)
    res = semi_dual_ascent(C, eps, steps=2000, step_rule=rule, step=step, a=a, b=b)
    assert res.iterations.eq(2000).all() and res.converged.all()
    torch.testing.assert_close(res.plan, ref.plan, rtol=0, atol=1e-10)
    torch.testing.assert_close(res.value, ref.value, rtol=0, atol=1e-10)
    torch.testing.assert_close(res.objective, ref.objective, rtol=0, atol=1e-10)
    torch.testing.assert_close(res.dual, ref.objective, rtol=0, atol=1e-10)
    center = lambda g: g - g.mean(-1, keepdim=True)  # noqa: E731 (potentials up to a constant)
    torch.testing.assert_close(center(res.g), center(ref.g), rtol=0, atol=1e-8)
    torch.testing.assert_close(res.plan.sum(-1), ref.plan.sum(-1), rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "rule,step",
    [("constant", None), ("sink", 0.5), ("armijo", 1.0), ("armijo", 8.0)],
)
def test_semi_dual_is_non_decreasing_within_the_step_bounds(rule, step):
    """constant: s ≤ 2 min_j b_j (L = 1/(2ε)); sink: s e^{2s} ≤ 2; armijo: by construction.
    From a far start g0 (the global regime, where the local step s = 1 is not guaranteed)."""
    n, m, eps = 8, 6, 0.05
    _, _, C = clouds(4, n, m, seed=11)
    b = weights(4, m, 12)
    step = 2 * float(b.min()) if step is None else step
    g0 = 0.5 * torch.randn(4, m, generator=torch.Generator().manual_seed(13), dtype=F64)
    res = semi_dual_ascent(
        C, eps, steps=300, step_rule=rule, step=step, b=b, g0=g0, return_iterates=True
    )
    assert res.iterates.shape == (301, 4, m)
    torch.testing.assert_close(res.iterates[0], g0)
    torch.testing.assert_close(res.iterates[-1], res.g)
    F = torch.stack([semi_dual(C, g, eps, b=b) for g in res.iterates])  # (301, 4)
    increments = F[1:] - F[:-1]
    assert increments.min() >= -1e-13, increments.min()
    assert (F[-1] - F[0] > 1e-3).all()  # and it does make progress


def test_gradient_matches_autograd():
    n, m, eps = 5, 7, 0.3
    _, _, C = clouds(3, n, m, seed=14)
    a, b = weights(3, n, 15), weights(3, m, 16)
    g = torch.randn(3, m, generator=torch.Generator().manual_seed(17), dtype=F64)
    g.requires_grad_(True)
    (auto,) = torch.autograd.grad(semi_dual(C, g, eps, a, b).sum(), g)
    torch.testing.assert_close(
        semi_dual_gradient(C, g.detach(), eps, a, b), auto, rtol=0, atol=1e-15
    )
    torch.autograd.gradcheck(lambda h: semi_dual(C, h, eps, a, b), (g,))


def test_batched_equals_per_problem():
    _, _, C = clouds(5, 6, 6, seed=18)
    eps = 0.1
    batch = sinkhorn_log(C, eps, tol=1e-12)
    assert batch.iterations.unique().numel() > 1  # problems stop at different iterations
    for k in range(5):
        one = sinkhorn_log(C[k : k + 1], eps, tol=1e-12)
        assert one.iterations.item() == batch.iterations[k].item()
        torch.testing.assert_close(one.plan[0], batch.plan[k], rtol=0, atol=1e-15)
        torch.testing.assert_close(one.g[0], batch.g[k], rtol=0, atol=1e-14)
    for rule in RULES:
        batch = semi_dual_ascent(C, eps, steps=50, step_rule=rule)
        for k in range(5):
            one = semi_dual_ascent(C[k : k + 1], eps, steps=50, step_rule=rule)
            torch.testing.assert_close(one.g[0], batch.g[k], rtol=0, atol=1e-14)
            torch.testing.assert_close(one.plan[0], batch.plan[k], rtol=0, atol=1e-15)


@pytest.mark.parametrize("rule", RULES)
def test_invariance_to_a_constant_shift_of_g(rule):
    _, _, C = clouds(3, 6, 5, seed=19)
    eps, kappa = 0.1, 3.7
    g = torch.randn(3, 5, generator=torch.Generator().manual_seed(20), dtype=F64)
    r0 = semi_dual_ascent(C, eps, steps=0, g0=g)
    r1 = semi_dual_ascent(C, eps, steps=0, g0=g + kappa)
    torch.testing.assert_close(r0.plan, r1.plan, rtol=1e-13, atol=0)
    torch.testing.assert_close(r0.f, r1.f + kappa, rtol=0, atol=1e-13)
    torch.testing.assert_close(semi_dual(C, g, eps), semi_dual(C, g + kappa, eps))
    # the whole trajectory shifts by κ (∇F is shift invariant)
    t0 = semi_dual_ascent(C, eps, steps=20, step_rule=rule, g0=g, return_iterates=True)
    t1 = semi_dual_ascent(C, eps, steps=20, step_rule=rule, g0=g + kappa, return_iterates=True)
    torch.testing.assert_close(t1.iterates, t0.iterates + kappa, rtol=0, atol=1e-12)


def test_step_rules_are_the_documented_recurrences():
    """One step from a random g, against the formulas written out for a = b = 1/n."""
    n, eps, s = 6, 0.1, 0.7
    _, _, C = clouds(2, n, n, seed=21)
    g = torch.randn(2, n, generator=torch.Generator().manual_seed(22), dtype=F64)
    pi = torch.softmax((g.unsqueeze(-2) - C) / eps, dim=-1)  # (B, n, n) softmax over j
    col = pi.sum(-2)  # (B, n) s_j = n Σ_i a_i π_ij = Σ_i π_ij
    constant = semi_dual_ascent(C, eps, steps=1, step_rule="constant", step=s, g0=g).g
    torch.testing.assert_close(constant, g + s * eps * n * (1 / n - col / n), rtol=0, atol=1e-14)
    sink = semi_dual_ascent(C, eps, steps=1, step_rule="sink", step=s, g0=g).g
    expected = g + s * eps * n / (1 + col) * (1 / n - col / n)
    torch.testing.assert_close(sink, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(sink, g + s * eps * (1 - col) / (1 + col), rtol=0, atol=1e-14)
    # armijo: the accepted step is the constant one scaled by a power of 1/2
    armijo = semi_dual_ascent(C, eps, steps=1, step_rule="armijo", step=s, g0=g).g
    ratio = (armijo - g) / (constant - g)  # (B, n), constant per problem
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=0, atol=1e-10)
    assert torch.allclose(torch.log2(ratio[:, 0]), torch.log2(ratio[:, 0]).round())


def test_max_iter_and_float32():
    _, _, C = clouds(3, 6, 6, seed=23)
    res = sinkhorn_log(C, 0.01, tol=0.0, max_iter=5)
    assert (~res.converged).all() and res.iterations.eq(5).all()
    res32 = sinkhorn_log(C.float(), 0.1, tol=1e-5)
    assert res32.plan.dtype == torch.float32 and res32.converged.all()
    ref = sinkhorn_log(C, 0.1, tol=1e-12)
    torch.testing.assert_close(res32.plan.double(), ref.plan, rtol=0, atol=1e-5)
    asc32 = semi_dual_ascent(C.float(), 0.1, steps=200, step_rule="sink")
    assert asc32.g.dtype == torch.float32 and torch.isfinite(asc32.plan).all()


def test_bad_inputs():
    _, _, C = clouds(2, 4, 3)
    with pytest.raises(ValueError, match="step_rule"):
        semi_dual_ascent(C, 0.1, steps=1, step_rule="newton")
    with pytest.raises(ValueError, match="eps"):
        sinkhorn_log(C, 0.0)
    with pytest.raises(ValueError, match="step"):
        semi_dual_ascent(C, 0.1, steps=1, step=-1.0)
    with pytest.raises(ValueError, match="C"):
        sinkhorn_log(C[0], 0.1)
    with pytest.raises(ValueError, match="b must"):
        sinkhorn_log(C, 0.1, b=torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="a must have shape"):
        sinkhorn_log(C, 0.1, a=torch.full((3,), 1 / 3, dtype=F64))
    with pytest.raises(ValueError, match="g0"):
        semi_dual_ascent(C, 0.1, steps=1, g0=torch.zeros(2, 4, dtype=F64))
